//! The output contract, end to end with the real binary: several workers,
//! a full disk, two processes on one slide, resume by fingerprint, and
//! Ctrl-C / SIGTERM.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{command, files_in, json, stderr, synth, threshold_model, unet, wait_until};

/// `wsiseg segment SLIDE --model MODEL --out OUT --device cpu EXTRA…` in `dir`.
fn segment(dir: &Path, slide: &Path, model: &Path, out: &str, extra: &[&str]) -> Command {
    on_devices(dir, slide, model, out, "cpu", extra)
}

/// [`segment`] on `--device DEVICES`.
fn on_devices(
    dir: &Path,
    slide: &Path,
    model: &Path,
    out: &str,
    devices: &str,
    extra: &[&str],
) -> Command {
    let mut c = command(dir);
    c.arg("segment")
        .arg(slide)
        .arg("--model")
        .arg(model)
        .args(["--out", out, "--device", devices])
        .args(extra);
    c
}

/// The bytes of `NAME.mask.png` and `NAME.mask.tiff` in `out`.
fn masks(out: &Path, name: &str) -> (Vec<u8>, Vec<u8>) {
    let read = |s: &str| {
        std::fs::read(out.join(format!("{name}.{s}"))).unwrap_or_else(|e| panic!("{name}.{s}: {e}"))
    };
    (read("mask.png"), read("mask.tiff"))
}

/// No temporary file and no lock in `out`.
fn assert_clean(out: &Path) {
    let left: Vec<String> = files_in(out)
        .into_iter()
        .filter(|f| f.ends_with(".partial") || f.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn two_cpu_workers_write_the_same_mask_bytes_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "61", "4096x4096");
    for (out, device) in [("one", "cpu"), ("two", "cpu,cpu")] {
        let o = on_devices(d, &slide, &unet(), out, device, &["--batch", "4"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert!(masks(&d.join("one"), "synth-61") == masks(&d.join("two"), "synth-61"));
    let report = json(&d.join("two/synth-61.report.json"));
    let per_worker: Vec<u64> = report["tiles"]["per_worker"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(per_worker.len(), 2, "{per_worker:?}");
    assert_eq!(
        per_worker.iter().sum::<u64>(),
        report["tiles"]["run"].as_u64().unwrap()
    );
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both workers ran tiles: {per_worker:?}"
    );
    assert_eq!(report["parameters"]["device"], "cpu,cpu");
}

/// Runs `wsiseg segment` with its output folder on a tmpfs of `kib` KiB
/// (a private mount namespace: no root needed); returns the exit status,
/// stderr and the names left in the folder.
fn segment_on_small_disk(
    dir: &Path,
    slide: &Path,
    kib: u64,
    formats: &str,
) -> (bool, String, Vec<String>) {
    let out = dir.join(format!("disk-{kib}"));
    std::fs::create_dir_all(&out).unwrap();
    let script = format!(
        "mount -t tmpfs -o size={kib}k wsiseg-test \"$OUT\" || exit 99; \"$WSISEG\" -q segment \"$SLIDE\" --model \"$MODEL\" --out \"$OUT\" --device cpu --formats {formats} --probabilities; rc=$?; ls -A \"$OUT\" >&2; echo \"listed\" >&2; exit $rc"
    );
    let o = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .env("WSISEG", env!("CARGO_BIN_EXE_wsiseg"))
        .env("SLIDE", slide)
        .env("MODEL", unet())
        .env("OUT", &out)
        .output()
        .expect("unshare (util-linux) runs");
    assert_ne!(
        o.status.code(),
        Some(99),
        "cannot mount a tmpfs in a user namespace here: {}",
        stderr(&o)
    );
    let err = stderr(&o);
    let listing: Vec<String> = err
        .lines()
        .take_while(|l| *l != "listed")
        .filter(|l| !l.starts_with("error:") && !l.contains("WARN") && !l.is_empty())
        .map(str::to_owned)
        .collect();
    (o.status.success(), err, listing)
}

#[test]
fn a_full_disk_fails_naming_the_file_and_leaves_no_final_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 3072² at 0.25 µm/px: a 768×768 mask at the model's 1 µm/px.
    let slide = synth(d, "62", "3072x3072");
    let formats = "png,tiff,geojson,overlay,report";
    // Room for everything: the run succeeds (and says how much it needs).
    let (ok, err, listing) = segment_on_small_disk(d, &slide, 65536, formats);
    assert!(ok, "{err}");
    assert_eq!(
        listing.len(),
        9,
        "7 outputs, the run record and index.html: {listing:?}"
    );
    // Less room than the outputs need, down to almost none: an error that
    // names the file, and nothing under a final name.
    for kib in [4, 16, 64, 256, 1024] {
        let (ok, err, listing) = segment_on_small_disk(d, &slide, kib, formats);
        assert!(!ok, "{kib} KiB: the run must fail");
        let line = err
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        assert!(
            line.contains("synth-62.") && line.contains("No space left on device"),
            "{kib} KiB: {err}"
        );
        assert!(listing.is_empty(), "{kib} KiB: files left: {listing:?}");
    }
}

#[test]
fn a_second_process_on_the_same_slide_is_refused_and_the_first_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "63", "8192x8192");
    let out = d.join("out");
    let mut first = segment(d, &slide, &unet(), "out", &["--readers", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = out.join("synth-63.lock");
    wait_until(&mut first, "the first process takes the lock", || {
        std::fs::read_to_string(&lock).is_ok_and(|s| s.ends_with('\n'))
    });
    let second = segment(d, &slide, &unet(), "out", &[]).output().unwrap();
    assert!(
        !second.status.success(),
        "the second process must not write"
    );
    assert!(
        stderr(&second).contains(&format!("already being segmented by PID {}", first.id())),
        "{}",
        stderr(&second)
    );
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert_clean(&out);
    // Every final file complete and valid.
    let png = image::open(out.join("synth-63.mask.png"))
        .unwrap()
        .into_luma8();
    let tiff = wsiseg_slide::open(&out.join("synth-63.mask.tiff")).unwrap();
    assert_eq!(tiff.levels()[0].size.w, png.width());
    common::json(&out.join("synth-63.report.json"));
    // In a folder, the locked slide fails alone and the others go on.
    std::fs::write(&lock, format!("{}\n", std::process::id())).unwrap();
    let other = synth(d, "64", "2048x2048");
    let o = command(d)
        .args([
            "segment", "slides", "--out", "out", "--device", "cpu", "--model",
        ])
        .arg(unet())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("synth-63.svs: already being segmented by PID"),
        "{}",
        stderr(&o)
    );
    assert!(
        out.join("synth-64.mask.png").exists(),
        "{}",
        other.display()
    );
    std::fs::remove_file(&lock).unwrap();
}

#[test]
fn a_rerun_skips_only_what_the_same_model_and_settings_made() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "65", "2048x2048");
    let out = d.join("out");
    let o = segment(d, &slide, &unet(), "out", &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let before = masks(&out, "synth-65");
    let modified = |f: &str| std::fs::metadata(out.join(f)).unwrap().modified().unwrap();
    let stamp = modified("synth-65.mask.png");

    // Same model and settings: skipped, nothing touched.
    let o = segment(d, &slide, &unet(), "out", &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipped"), "{}", stderr(&o));
    assert_eq!(modified("synth-65.mask.png"), stamp);

    // Another model, another resolution, another slide of the same name:
    // an error that says what differs, and nothing overwritten.
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let other_slide: PathBuf = {
        let s = synth(&elsewhere, "66", "2048x2048");
        let renamed = elsewhere.join("slides/synth-65.svs");
        std::fs::rename(&s, &renamed).unwrap();
        renamed
    };
    for (what, model, slide, extra) in [
        ("model", threshold_model(), slide.clone(), vec![]),
        ("mpp", unet(), slide.clone(), vec!["--mpp", "2"]),
        ("slide", unet(), other_slide, vec![]),
    ] {
        let o = segment(d, &slide, &model, "out", &extra).output().unwrap();
        assert!(!o.status.success(), "{what}: must not skip nor overwrite");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("were made with another {what} ("))
                && err.contains("--overwrite"),
            "{what}: {err}"
        );
        assert!(
            masks(&out, "synth-65") == before,
            "{what}: outputs untouched"
        );
        assert_clean(&out);
    }

    // --overwrite redoes it, with the new settings recorded.
    let o = segment(d, &slide, &unet(), "out", &["--mpp", "2", "--overwrite"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(masks(&out, "synth-65").0, before.0, "a mask at 2 µm/px");
    let record = json(&out.join("synth-65.run.json"));
    assert_eq!(record["fingerprint"]["settings"]["mpp"], 2.0);
    let o = segment(d, &slide, &unet(), "out", &["--mpp", "2"])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("skipped"), "{}", stderr(&o));

    // An output damaged since: not skipped.
    std::fs::write(out.join("synth-65.geojson"), "{}").unwrap();
    let o = segment(d, &slide, &unet(), "out", &["--mpp", "2"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("synth-65.geojson has 2 bytes, the recorded run wrote"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn sigint_and_sigterm_stop_cleanly_and_the_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "67", "8192x8192");
    let o = segment(d, &slide, &unet(), "ref", &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = masks(&d.join("ref"), "synth-67");
    for (signal, code, name) in [
        (libc_sigint(), 130, "SIGINT"),
        (libc_sigterm(), 143, "SIGTERM"),
    ] {
        let out_name = format!("out-{code}");
        let out = d.join(&out_name);
        let mut child = segment(d, &slide, &unet(), &out_name, &["--readers", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_until(&mut child, "rows reach the PNG mask", || {
            std::fs::metadata(out.join("synth-67.mask.png.partial")).is_ok_and(|m| m.len() > 0)
        });
        let killed = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(code), "{name}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("interrupted by {name}")),
            "{}",
            stderr(&o)
        );
        assert_eq!(files_in(&out), Vec::<String>::new(), "{name}: nothing left");
        let o = segment(d, &slide, &unet(), &out_name, &[])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            masks(&out, "synth-67") == reference,
            "{name}: resumed run's masks"
        );
    }
}

fn libc_sigint() -> &'static str {
    "INT"
}

fn libc_sigterm() -> &'static str {
    "TERM"
}
