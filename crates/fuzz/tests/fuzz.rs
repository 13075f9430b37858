//! The fuzzer in CI: a short seeded run over the committed corpus executes
//! thousands of inputs with no crash, hang or memory blow-up, and every
//! input a run once found (tests/fuzz/regressions) is handled.

use std::path::PathBuf;
use std::process::Command;

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(p)
}

fn fuzz(args: &[&str]) -> (bool, serde_json::Value, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_wsiseg-fuzz"))
        .args(args)
        .output()
        .expect("run wsiseg-fuzz");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let last = stdout.lines().last().unwrap_or_default().to_string();
    let v = serde_json::from_str(&last).unwrap_or(serde_json::Value::Null);
    (
        o.status.success(),
        v,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// 45 seconds of mutated slides, images and manifests (5 s per input at
/// most, 4 GiB of address space per child): at least 3000 inputs, none a
/// crash or a hang. Seeded, so a failure here reproduces.
#[test]
fn a_short_fuzz_run_finds_no_crash_hang_or_blow_up() {
    let out = tempfile::tempdir().unwrap();
    let corpus = repo("tests/fuzz/corpus");
    let (ok, v, err) = fuzz(&[
        "run",
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--seconds",
        "45",
        "--seed",
        "1",
    ]);
    eprintln!("{v}");
    assert!(ok, "{err}\n{v}");
    assert_eq!(v["problems"], 0, "{err}");
    let execs = v["executions"].as_u64().unwrap();
    assert!(execs >= 3000, "only {execs} inputs in 45 s");
    assert!(v["seeds"].as_u64().unwrap() >= 20, "{v}");
}

/// Every saved input (hostile files found by hand or by the fuzzer) is read
/// or refused, never a crash.
#[test]
fn every_regression_input_is_handled() {
    let (ok, v, err) = fuzz(&["replay", repo("tests/fuzz/regressions").to_str().unwrap()]);
    assert!(ok, "{err}\n{v}");
    assert!(v["replayed"].as_u64().unwrap() >= 6, "{v}");
}
