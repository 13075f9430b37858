//! NAME.report.json (issue 15): every field present and typed, checked
//! against the committed JSON schema (crates/report/report.schema.json);
//! what actually ran (device, precision, versions, command line, host, a
//! quick hash of the slide); the mask's own statistics, checked against the
//! mask and probability map themselves; and two runs of the same command
//! differ only in timestamps, durations and the process's memory peaks.

mod common;

use std::path::Path;

use common::{json, python, read_mask, repo, run_ok, unet};
use serde_json::Value;

fn validate(report: &Path) {
    let o = std::process::Command::new(python())
        .arg("-c")
        .arg(
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             jsonschema.Draft202012Validator.check_schema(schema)\n\
             errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.load(open(sys.argv[2]))))\n\
             for e in errors: print(e.json_path, e.message[:200])\n\
             sys.exit(1 if errors else 0)",
        )
        .arg(repo("crates/report/report.schema.json"))
        .arg(report)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{} does not match the schema:\n{}{}",
        report.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// SHA-256 of the file's size (8 bytes LE), its first MiB and its last MiB
/// (the bytes after the first MiB when the file is under 2 MiB).
fn quick_hash(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap();
    let mib = 1 << 20;
    let mut h = Sha256::new();
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(&bytes[..mib.min(bytes.len())]);
    if bytes.len() > mib {
        h.update(&bytes[(bytes.len() - mib).max(mib)..]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// 8-connected tumor regions of a label image, by flood fill: their areas.
fn regions(labels: &[u8], w: usize, h: usize) -> Vec<u64> {
    let mut seen = vec![false; labels.len()];
    let mut areas = Vec::new();
    for start in 0..labels.len() {
        if labels[start] == 0 || seen[start] {
            continue;
        }
        let mut stack = vec![start];
        seen[start] = true;
        let mut area = 0;
        while let Some(i) = stack.pop() {
            area += 1;
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if labels[j] != 0 && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        areas.push(area);
    }
    areas.sort_unstable_by(|a, b| b.cmp(a));
    areas
}

/// Without the fields that measure the run itself.
fn stable(mut report: Value) -> Value {
    let run = report["run"].as_object_mut().unwrap();
    run.remove("started_utc");
    run.remove("finished_utc");
    let top = report.as_object_mut().unwrap();
    for k in ["timings_s", "peak_rss_mib", "peak_rust_heap_mib"] {
        top.remove(k);
    }
    report
}

#[test]
fn reports_are_complete_typed_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = repo("tests/data/default.svs");
    let args = |out: &str| {
        vec![
            "segment".to_string(),
            slide.display().to_string(),
            "--model".into(),
            unet().display().to_string(),
            "--device".into(),
            "cpu".into(),
            "--probabilities".into(),
            "--out".into(),
            out.into(),
        ]
    };
    run_ok(d, &args("out"));
    let path = d.join("out/default.report.json");
    validate(&path);
    let first = json(&path);

    // What ran, where, with what.
    let run = &first["run"];
    assert_eq!(run["devices"], serde_json::json!(["cpu"]));
    assert_eq!(run["precision"], "f32");
    assert_eq!(run["command_line"][1], "segment");
    assert!(run["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(run["versions"]["libtorch"]
        .as_str()
        .unwrap()
        .starts_with("2.11."));
    assert!(run["versions"]["openslide"]
        .as_str()
        .unwrap()
        .starts_with("4."));
    assert_eq!(first["slide"]["quick_sha256"], quick_hash(&slide));

    // The statistics, against the mask and the probability map.
    let mask = read_mask(&d.join("out/default.mask.png"));
    let (w, h) = mask.dimensions();
    let areas = regions(mask.as_raw(), w as usize, h as usize);
    let st = &first["statistics"];
    assert_eq!(st["regions"]["count"], areas.len(), "{st}");
    assert_eq!(st["regions"]["largest_pixels"], areas[0]);
    let by_size: u64 = st["regions"]["by_size"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(by_size, areas.len() as u64);
    let prob = wsiseg_slide::open(&d.join("out/default.prob.tiff")).unwrap();
    let p = prob
        .read_inside(0, wsiseg_slide::Rect::new(0, 0, w, h))
        .unwrap();
    let uncertain = p
        .pixels()
        .filter(|px| (77..=178).contains(&px.0[0]))
        .count() as f64
        / f64::from(w * h);
    let reported = st["probability"]["uncertain_fraction"].as_f64().unwrap();
    assert!(
        (reported - uncertain).abs() < 1e-12,
        "{reported} vs {uncertain}"
    );
    let tenths: u64 = st["probability"]["histogram_tenths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(tenths, u64::from(w * h));
    let share = st["tumor_share_of_tissue"].as_f64().unwrap();
    let want = first["areas"]["tumor_fraction"].as_f64().unwrap()
        / first["areas"]["tissue_fraction"].as_f64().unwrap();
    assert!((share - want.min(1.0)).abs() < 1e-12);

    // The same command again: the same report but for timestamps,
    // durations and the memory peaks.
    std::fs::rename(&path, d.join("first.json")).unwrap();
    std::fs::remove_dir_all(d.join("out")).unwrap();
    run_ok(d, &args("out"));
    let second = json(&path);
    assert_ne!(first["timings_s"], Value::Null);
    assert_eq!(stable(first), stable(second));
}
