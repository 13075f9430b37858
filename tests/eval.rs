//! `wsiseg eval` on small hand-made masks.

mod common;

use std::path::Path;
use std::process::Output;

use common::json;
use image::GrayImage;

fn wsiseg(args: &[&str], dir: &Path) -> Output {
    common::run(dir, args)
}

fn save(dir: &Path, name: &str, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

fn close(v: &serde_json::Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

#[test]
fn scores_of_hand_made_masks_match_hand_computed_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // a: truth = left 4 columns of 10×10 (40 px); prediction = columns 2..7 (50 px):
    //    TP 20, FP 30, FN 20 → Dice 40/90, IoU 20/70, precision 0.4, recall 0.5.
    save(d, "pred/a.mask.png", 10, 10, |x, _| {
        u8::from((2..7).contains(&x))
    });
    save(d, "truth/a.png", 10, 10, |x, _| u8::from(x < 4));
    // b: no tumor in either: perfect by convention.
    save(d, "pred/b.mask.png", 10, 10, |_, _| 0);
    save(d, "truth/b.png", 10, 10, |_, _| 0);
    // c: tumor everywhere in truth (saved 0/255), none predicted.
    save(d, "pred/c.mask.png", 10, 10, |_, _| 0);
    save(d, "truth/c.png", 10, 10, |_, _| 255);
    // d: truth at twice the prediction's resolution (a pyramid level apart):
    //    nearest neighbour brings it down exactly.
    save(d, "pred/d.mask.png", 8, 6, |x, y| u8::from(x >= 4 && y < 3));
    save(d, "truth/d.png", 16, 12, |x, y| u8::from(x >= 8 && y < 6));

    let o = wsiseg(&["eval", "--pred", "pred", "--truth", "truth"], d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("mean of 4"), "{table}");

    let v = json(&d.join("pred/eval.json"));
    let tumor = |i: usize| &v["slides"][i]["classes"]["tumor"];
    assert_eq!(v["slides"][0]["slide"], "a");
    assert!(close(&tumor(0)["dice"], 40.0 / 90.0), "{}", tumor(0));
    assert!(close(&tumor(0)["iou"], 20.0 / 70.0));
    assert!(close(&tumor(0)["precision"], 0.4) && close(&tumor(0)["recall"], 0.5));
    assert!(close(&tumor(1)["dice"], 1.0) && tumor(1)["precision"].is_null());
    assert!(close(&tumor(2)["dice"], 0.0) && close(&tumor(2)["recall"], 0.0));
    assert!(tumor(2)["precision"].is_null());
    assert!(close(&tumor(3)["dice"], 1.0), "{}", tumor(3));
    let mean = (40.0 / 90.0 + 1.0 + 0.0 + 1.0) / 4.0;
    assert!(close(&v["mean"]["tumor"]["dice"], mean), "{}", v["mean"]);

    let csv = std::fs::read_to_string(d.join("pred/eval.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 + 1, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("\"a\",\"tumor\",0.4444"),
        "{csv}"
    );

    // Results exist now: not overwritten without --overwrite.
    let o = wsiseg(&["eval", "--pred", "pred", "--truth", "truth"], d);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("eval.csv: already exists"));
}

#[test]
fn mismatched_sizes_and_missing_partners_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    save(d, "pred/a.mask.png", 10, 10, |_, _| 1);
    save(d, "truth/a.png", 13, 10, |_, _| 1);
    let o = wsiseg(
        &[
            "eval",
            "--pred",
            "pred/a.mask.png",
            "--truth",
            "truth/a.png",
        ],
        d,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("a.mask.png (10×10) and truth/a.png (13×10) do not match"),
        "{err}"
    );
    assert!(!d.join("pred/eval.csv").exists() && !d.join("pred/eval.json").exists());

    save(d, "pred/b.mask.png", 10, 10, |_, _| 1);
    let o = wsiseg(&["eval", "--pred", "pred", "--truth", "truth"], d);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("truth: no truth mask for b"), "{err}");
}

/// A prediction folder missing slides of the truth folder is an error
/// naming them; `--allow-missing` scores the others, warns, and lists the
/// missing ones in eval.json.
#[test]
fn missing_predictions_are_an_error_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in ["a", "b", "c"] {
        save(d, &format!("truth/{name}.png"), 10, 10, |x, _| {
            u8::from(x < 5)
        });
    }
    save(d, "pred/a.mask.png", 10, 10, |x, _| u8::from(x < 5));
    let o = wsiseg(&["eval", "--pred", "pred", "--truth", "truth"], d);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pred: no prediction for 2 of the 3 truth masks (b, c); --allow-missing"),
        "{err}"
    );
    assert!(!d.join("pred/eval.json").exists());

    let o = wsiseg(
        &[
            "eval",
            "--pred",
            "pred",
            "--truth",
            "truth",
            "--allow-missing",
        ],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not scored: b, c"), "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("pred/eval.json")).unwrap()).unwrap();
    assert_eq!(report["missing_predictions"], serde_json::json!(["b", "c"]));
    assert_eq!(report["slides"].as_array().unwrap().len(), 1);
}
