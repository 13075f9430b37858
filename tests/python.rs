//! `import wsiseg`: the wheel of this checkout, built by maturin, installed
//! with `pip install --no-index` into a fresh virtual environment, then
//! python/tests run in it by pytest — so `cargo test` runs the Python tests
//! too, against this build, next to the `wsiseg` binary they compare with.
//!
//! The fresh environment sees the setup environment's packages (PyTorch,
//! numpy, OpenSlide, onnxruntime) through a `.pth` file, as a researcher's
//! environment has them installed already; wsiseg itself is installed from
//! the wheel alone, offline.

mod common;

use std::path::Path;
use std::process::Command;

fn ok(what: &str, o: std::process::Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// `site-packages` of the environment at `root`.
fn site(root: &Path) -> std::path::PathBuf {
    let lib = root.join("lib");
    let py = std::fs::read_dir(&lib)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .expect("lib/python3.*");
    py.path().join("site-packages")
}

/// Builds this checkout's wheel into `dir/wheels` and installs it offline
/// into a fresh environment `dir/venv`; returns its python.
fn fresh_environment_with_the_wheel(dir: &Path) -> std::path::PathBuf {
    let python = common::python();
    let venv = python.parent().unwrap().parent().unwrap().to_path_buf();
    let wheels = dir.join("wheels");
    // The wheel of this checkout (maturin reuses the release build).
    ok(
        "maturin build",
        Command::new(venv.join("bin/maturin"))
            .current_dir(common::repo(""))
            .args(["build", "--release", "--locked", "--quiet", "--out"])
            .arg(&wheels)
            .output()
            .unwrap(),
    );
    let fresh = dir.join("venv");
    ok(
        "python -m venv",
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&fresh)
            .output()
            .unwrap(),
    );
    std::fs::write(
        site(&fresh).join("setup-environment.pth"),
        format!("{}\n", site(&venv).display()),
    )
    .unwrap();
    let fresh_python = fresh.join("bin/python");
    let pip = |extra: &[&str]| {
        Command::new(&fresh_python)
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .args(["--no-index", "--find-links"])
            .arg(&wheels)
            .args(extra)
            .arg("wsiseg")
            .output()
            .unwrap()
    };
    // The setup environment (seen through the .pth) has an installed wsiseg
    // of its own: install this wheel over it into the fresh environment,
    ok(
        "pip install --no-index",
        pip(&["--force-reinstall", "--no-deps"]),
    );
    // then let pip resolve its dependencies offline (torch, numpy,
    // openslide-bin: found installed).
    let resolved = ok("pip install --no-index (dependencies)", pip(&[]));
    for dependency in ["torch", "numpy", "openslide-bin"] {
        assert!(
            resolved.contains(&format!("Requirement already satisfied: {dependency}")),
            "{resolved}"
        );
    }
    fresh_python
}

#[test]
fn python_package_installs_offline_and_passes_its_tests() {
    let dir = tempfile::tempdir().unwrap();
    let fresh_python = fresh_environment_with_the_wheel(dir.path());
    let fresh = fresh_python.parent().unwrap().parent().unwrap();
    let located = ok(
        "import wsiseg",
        Command::new(&fresh_python)
            .current_dir(dir.path())
            .args(["-c", "import wsiseg; print(wsiseg.__file__)"])
            .output()
            .unwrap(),
    );
    assert!(
        located.trim().starts_with(fresh.to_str().unwrap()),
        "wsiseg was imported from {located}, not the fresh environment"
    );
    let o = Command::new(&fresh_python)
        .current_dir(dir.path())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(common::repo("python/tests"))
        .env("WSISEG_BIN", env!("CARGO_BIN_EXE_wsiseg"))
        .env("WSISEG_REPO", common::repo(""))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    eprintln!("{out}");
    assert!(
        o.status.success(),
        "pytest failed ({}):\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}
