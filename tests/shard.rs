//! Sharding a folder over the tasks of an array job (issue 16, first part):
//! `--shard I/N` and the scheduler's environment choose the same slides,
//! every slide is segmented by exactly one shard, each shard writes its own
//! summary and leaves the others' alone.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{command, json, segment, stderr, threshold_model};
use image::{Rgb, RgbImage};

/// Seven small PNG slides the threshold model segments in milliseconds.
fn slides(d: &Path) {
    std::fs::create_dir_all(d.join("in")).unwrap();
    for i in 0..7u32 {
        RgbImage::from_fn(96, 80, |x, y| {
            Rgb([(x * 2) as u8, ((x + y + i * 20) % 256) as u8, 90])
        })
        .save(d.join(format!("in/slide-{i}.png")))
        .unwrap();
    }
}

/// The slides a shard summary lists.
fn listed(summary: &Path) -> BTreeSet<String> {
    json(summary)["slides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["status"], "done", "{s}");
            assert_eq!(s["this_run"], "segmented", "{s}");
            Path::new(s["slide"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn shards_cover_the_folder_once_and_keep_their_own_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    slides(d);
    let model = threshold_model();
    let mut union = BTreeSet::new();
    let mut total = 0;
    for i in 0..3 {
        let shard = format!("{i}/3");
        let o = segment(
            d,
            Path::new("in"),
            &model,
            "out",
            &[
                "--device",
                "cpu",
                "--formats",
                "png,report",
                "--shard",
                &shard,
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("shard {i} of 3 (0 to 2; from --shard {i}/3)")),
            "{}",
            stderr(&o)
        );
        let mine = listed(&d.join(format!("out/summary.shard-{i}-of-3.json")));
        total += mine.len();
        union.extend(mine);
    }
    assert_eq!(total, 7, "no slide in two shards");
    assert_eq!(union.len(), 7, "every slide in one shard: {union:?}");
    assert!(
        !d.join("out/summary.json").exists(),
        "shards write only their own summaries"
    );
    for i in 0..7 {
        assert!(d.join(format!("out/slide-{i}.report.json")).exists());
    }
    // Slurm's array variables choose the same shard as --shard; a second
    // run resumes (skips) it.
    let o = command(d)
        .args(["segment", "in", "--model"])
        .arg(&model)
        .args(["--out", "out", "--device", "cpu", "--formats", "png,report"])
        .env("SLURM_ARRAY_TASK_ID", "5")
        .env("SLURM_ARRAY_TASK_MIN", "4")
        .env("SLURM_ARRAY_TASK_MAX", "6")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("shard 1 of 3 (0 to 2; from SLURM_ARRAY_TASK_ID=5 (tasks 4 to 6))"),
        "{}",
        stderr(&o)
    );
    let again = json(&d.join("out/summary.shard-1-of-3.json"));
    assert!(again["slides"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "done" && s["this_run"] == "skipped"));
    // A Kubernetes index without the job's size is a clear error.
    let o = command(d)
        .args(["segment", "in", "--model"])
        .arg(&model)
        .args(["--out", "out", "--device", "cpu"])
        .env("JOB_COMPLETION_INDEX", "2")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .contains("JOB_COMPLETION_INDEX=2 (a Kubernetes Indexed Job): give --shard-count N"),
        "{}",
        stderr(&o)
    );
}
