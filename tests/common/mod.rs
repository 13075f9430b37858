//! What the integration tests share: the real `wsiseg` binary run in a
//! folder, the repository's test data and models, and readers of outputs.
//!
//! Every test states its device: commands that run a model pass
//! `--device cpu` (the default `auto` would pick a GPU where there is one);
//! tests/cuda.rs runs the CUDA cases.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::GrayImage;
use serde_json::Value;

/// Command-line arguments from anything path- or string-like.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        Vec::<std::ffi::OsString>::from([$(std::ffi::OsString::from(AsRef::<std::ffi::OsStr>::as_ref(&$a))),*])
    };
}

/// A file or folder of the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The shipped model (models/unet).
pub fn unet() -> PathBuf {
    repo("models/unet")
}

/// The test model that labels a pixel 1 where its green byte is below 128.
pub fn threshold_model() -> PathBuf {
    repo("tests/data/models/green-threshold")
}

/// The `wsiseg` binary, ready to run in `dir`.
pub fn command(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wsiseg"));
    c.current_dir(dir);
    c
}

/// Runs `wsiseg ARGS` in `dir`.
pub fn run<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Output {
    command(dir).args(args).output().expect("run wsiseg")
}

/// Runs `wsiseg ARGS` in `dir` and fails the test unless it succeeds.
pub fn run_ok<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Output {
    let o = run(dir, args);
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert!(o.status.success(), "wsiseg {shown:?}: {}", stderr(&o));
    o
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `error:` lines a run printed.
pub fn error_lines(o: &Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_owned)
        .collect()
}

/// Names in `dir`, sorted (none when it does not exist).
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An 8-bit mask (PNG or TIFF) as gray pixels.
pub fn read_mask(path: &Path) -> GrayImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_luma8()
}

/// `wsiseg synth` of one slide into `dir/slides` (truth in `dir/slides/truth`).
pub fn synth(dir: &Path, seed: &str, size: &str) -> PathBuf {
    run_ok(
        dir,
        &["synth", "--out", "slides", "--seed", seed, "--size", size],
    );
    dir.join(format!("slides/synth-{seed}.svs"))
}

/// `wsiseg bench --json ARGS --model MODEL` with its scratch files in `dir`
/// (which it must leave empty); its figures.
pub fn bench(dir: &Path, args: &[&str], model: &Path) -> Value {
    let o = command(dir)
        .args(["bench", "--json"])
        .args(args)
        .arg("--model")
        .arg(model)
        .env("TMPDIR", dir)
        .output()
        .expect("run wsiseg bench");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        files_in(dir),
        Vec::<String>::new(),
        "bench leaves nothing behind"
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&v).unwrap());
    v
}

/// Pixels where two equally long masks differ.
pub fn differing(a: &[u8], b: &[u8]) -> usize {
    assert_eq!(a.len(), b.len(), "masks of different sizes");
    a.iter().zip(b).filter(|(p, q)| p != q).count()
}

/// Polls `ready` every millisecond while `child` runs (at most a minute).
pub fn wait_until(child: &mut std::process::Child, what: &str, ready: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "wsiseg ended before {what}"
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{what} never came"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The Python of the environment scripts/setup.sh makes ($WSISEG_VENV, or
/// ~/.cache/wsiseg/venv), with torch and scripts/export-requirements.txt.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("WSISEG_VENV").map_or_else(
        || Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/wsiseg/venv"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{}: no Python environment; run scripts/setup.sh",
        python.display()
    );
    python
}

/// `wsiseg segment SLIDE --model MODEL --out OUT EXTRA…` run in `dir`
/// (EXTRA names the device: every test states its own).
pub fn segment(dir: &Path, slide: &Path, model: &Path, out: &str, extra: &[&str]) -> Output {
    command(dir)
        .arg("segment")
        .arg(slide)
        .arg("--model")
        .arg(model)
        .args(["--out", out])
        .args(extra)
        .output()
        .expect("run wsiseg")
}

/// URLs a page asked for, from Chromium's network log (`--log-net-log`;
/// Chromium's own background requests have the initiator "not an origin").
pub fn page_requests(netlog: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(netlog).unwrap();
    // A log cut short by the exit lacks its closing brackets.
    let log: serde_json::Value = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(&format!("{}]}}", text.trim_end().trim_end_matches(','))))
        .unwrap();
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].clone();
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == start_job)
        .filter(|e| e["params"]["initiator"] != "not an origin")
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .collect()
}

/// The byte range of tile `n` of page `page` of the TIFF at `path` (to
/// corrupt a stored tile in place).
pub fn tile_bytes(path: &Path, page: usize, n: usize) -> std::ops::Range<usize> {
    use tiff::tags::Tag;
    let mut d = tiff::decoder::Decoder::new(std::fs::File::open(path).unwrap()).unwrap();
    for _ in 0..page {
        d.next_image().unwrap();
    }
    let offsets = d.get_tag_u64_vec(Tag::TileOffsets).unwrap();
    let counts = d.get_tag_u64_vec(Tag::TileByteCounts).unwrap();
    offsets[n] as usize..(offsets[n] + counts[n]) as usize
}
