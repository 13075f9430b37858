//! `wsiseg doctor` (issue 14): on this machine it finds libtorch, OpenSlide
//! and the shipped model and says the machine is ready; with the CUDA
//! library made unavailable or no model it gives the right one-line
//! diagnosis and exit status; its JSON parses.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{command, error_lines, repo, run, stderr};
use serde_json::Value;

fn doctor_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(o)
        )
    })
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

/// The folder libtorch is loaded from in this process.
fn libtorch_dir() -> PathBuf {
    let _ = wsiseg_infer::cuda_device_count();
    wsiseg_infer::libtorch_dir().expect("libtorch is loaded")
}

/// A folder that stands in for libtorch's lib/: hard links to its libraries
/// (so that /proc/self/maps names this folder, as for a real install) and to
/// the CUDA runtime and CUPTI libtorch_cpu needs, but not `left_out`.
fn libtorch_copy(dir: &Path, left_out: &[&str]) -> PathBuf {
    let src = libtorch_dir();
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    // libtorch_cpu.so of PyTorch's CUDA wheel needs the CUDA runtime and
    // CUPTI (found through its RPATH into the nvidia-* packages).
    let nvidia = src.join("../../nvidia/cu13/lib");
    for name in ["libcudart.so.13", "libcupti.so.13"] {
        if nvidia.join(name).exists() {
            files.push(nvidia.join(name));
        }
    }
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        if left_out.contains(&name.as_str()) {
            continue;
        }
        let to = lib.join(&name);
        if std::fs::hard_link(&f, &to).is_err() {
            std::fs::copy(&f, &to).unwrap();
        }
    }
    std::fs::write(dir.join("version.py"), "__version__ = '2.11.0'\n").unwrap();
    lib
}

/// Segments tests/data/default.svs with the libraries in `lib` first on the
/// library path; the mask must be written.
fn segment_with(lib: &Path, device: &str, dir: &Path) {
    let out = dir.join("out");
    let o = command(&repo(""))
        .env("LD_LIBRARY_PATH", lib)
        .args([
            "segment",
            "tests/data/default.svs",
            "--model",
            "models/unet",
        ])
        .args(["--device", device, "--formats", "png", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("default.mask.png").exists());
}

fn tmp() -> tempfile::TempDir {
    // Beside target/ so that hard links to the virtual environment work.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Here: libtorch, OpenSlide 4 and the shipped model are found; the model
/// runs on the CPU; every check has a status; the machine is ready.
#[test]
fn doctor_finds_everything_on_this_machine() {
    let o = run(&repo(""), &["doctor", "--json"]);
    let report = doctor_json(&o);
    assert!(o.status.success(), "{report:#}\n{}", stderr(&o));
    assert_eq!(report["ready"], true);
    let torch = check(&report, "libtorch");
    assert_eq!(torch["status"], "ok", "{torch:#}");
    assert!(torch["data"]["version"]
        .as_str()
        .unwrap()
        .starts_with("2.11."));
    assert_eq!(
        Path::new(torch["data"]["dir"].as_str().unwrap()),
        libtorch_dir()
    );
    let slide = check(&report, "OpenSlide");
    let version = slide["data"]["version"].as_str().unwrap();
    assert_eq!(slide["status"], "ok");
    assert!(version.starts_with("4."), "OpenSlide {version}");
    assert!(slide["data"]["formats"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f.as_str().unwrap().starts_with("dicom")));
    let model = check(&report, "model");
    assert_eq!(model["status"], "ok", "{model:#}");
    assert_eq!(model["data"]["name"], "wsiseg-unet-16");
    assert!(model["data"]["tiles_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(model["data"]["sha256"].as_str().unwrap().len(), 64);
    for c in report["checks"].as_array().unwrap() {
        assert!(
            ["ok", "note", "fail"].contains(&c["status"].as_str().unwrap()),
            "{c:#}"
        );
    }
    // The table says the same.
    let o = run(&repo(""), &["doctor"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(table.contains("ready: wsiseg can run here"), "{table}");
}

/// No model beside the binary or in the current folder: one error line
/// naming where it looked and how to fix it, exit 1; JSON says not ready.
#[test]
fn doctor_without_a_model_says_where_it_looked() {
    let dir = tmp();
    let o = run(dir.path(), &["doctor"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("error: model: no model found")
            && errors[0].contains("./models")
            && errors[0].contains("fix: pass --model DIR"),
        "{}",
        errors[0]
    );
    let o = run(dir.path(), &["doctor", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let report = doctor_json(&o);
    assert_eq!(report["ready"], false);
    assert_eq!(check(&report, "model")["status"], "fail");
    // A model given on the command line is found.
    let o = run(
        dir.path(),
        &["doctor", "--model", repo("models/unet").to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A CPU-only libtorch (no libtorch_cuda.so beside libtorch_cpu.so): the
/// binary still starts and runs on the CPU; doctor notes it (exit 0), and
/// `--device cuda` makes it a failure with the fix.
#[test]
fn doctor_on_a_cpu_only_libtorch() {
    let dir = tmp();
    let lib = libtorch_copy(dir.path(), &["libtorch_cuda.so"]);
    let doctor = |extra: &[&str]| {
        command(&repo(""))
            .env("LD_LIBRARY_PATH", &lib)
            .args(["doctor", "--json"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = doctor(&[]);
    let report = doctor_json(&o);
    assert!(o.status.success(), "{report:#}");
    assert_eq!(
        Path::new(check(&report, "libtorch")["data"]["dir"].as_str().unwrap()),
        lib,
        "LD_LIBRARY_PATH overrides the RUNPATH"
    );
    let cuda = check(&report, "CUDA support");
    assert_eq!(cuda["status"], "note", "{cuda:#}");
    assert!(cuda["detail"]
        .as_str()
        .unwrap()
        .contains("has no libtorch_cuda.so"));
    assert_eq!(check(&report, "model")["status"], "ok");

    let o = doctor(&["--device", "cuda"]);
    assert_eq!(o.status.code(), Some(1));
    let errors = error_lines(&o);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("error: CUDA support: none — CPU only")
                && e.contains("fix: use the CUDA bundle")),
        "{errors:?}"
    );
    // And a slide is segmented on this libtorch, on the CPU.
    segment_with(&lib, "auto", dir.path());
}

/// libtorch_cuda.so is there but a CUDA library it needs is not (a broken
/// or partly copied install): doctor names the missing library and fails,
/// even without `--device cuda`; `segment --device cpu` still runs.
#[test]
fn doctor_with_a_cuda_library_missing() {
    let lib_dir = libtorch_dir();
    if !lib_dir.join("libtorch_cuda.so").exists() {
        eprintln!("skipped: this libtorch has no CUDA half");
        return;
    }
    let dir = tmp();
    // libtorch_cuda.so without the nvidia-* libraries it links to.
    let lib = libtorch_copy(dir.path(), &[]);
    let o = command(&repo(""))
        .env("LD_LIBRARY_PATH", &lib)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report = doctor_json(&o);
    let cuda = check(&report, "CUDA support");
    assert_eq!(cuda["status"], "fail", "{cuda:#}");
    let detail = cuda["detail"].as_str().unwrap();
    assert!(
        detail.contains("does not load")
            && detail.contains("cannot open shared object file")
            && detail.contains(".so"),
        "{detail}"
    );
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("error: CUDA support: libtorch_cuda.so is there but does not load")
            && errors[0].contains("fix: a CUDA library libtorch needs is missing"),
        "{}",
        errors[0]
    );
    segment_with(&lib, "cpu", dir.path());
}
