//! What `wsiseg segment` takes (issue 16): folders with --recursive (outputs
//! keep the subfolder, so equal file names never collide), glob patterns,
//! .txt and .csv lists (relative to the list's folder, a per-slide `mpp`, a
//! missing entry reported with its list and line while the others run), and
//! the merged summary: two runs into one folder add up, `wsiseg summary
//! --input` lists what has no result and exits 1 until all is done.

mod common;

use std::path::Path;

use common::{error_lines, files_in, json, run, segment, stderr, threshold_model};
use image::{Rgb, RgbImage};

/// A small PNG slide (the threshold model finds tumor where green < 128).
fn slide(path: &Path, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_fn(64, 48, |x, y| {
        Rgb([(x * 3) as u8, ((x + 2 * y + seed * 37) % 256) as u8, 90])
    })
    .save(path)
    .unwrap();
}

/// The summary's rows as (name, status, this_run).
fn rows(summary: &Path) -> Vec<(String, String, String)> {
    json(summary)["slides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (s("name"), s("status"), s("this_run"))
        })
        .collect()
}

/// (name, status) of every slide the page `index.html` embeds.
fn page_slides(page: &Path) -> Vec<(String, String)> {
    let html = std::fs::read_to_string(page).unwrap();
    let start = html
        .find(r#"<script id="data" type="application/json">"#)
        .unwrap();
    let data = &html[start..];
    let data = &data[data.find('>').unwrap() + 1..data.find("</script>").unwrap()];
    let data: serde_json::Value = serde_json::from_str(&data.replace("<\\/", "</")).unwrap();
    data["slides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (s("name"), s("status"))
        })
        .collect()
}

fn seg(d: &Path, input: &str, out: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--device", "cpu", "--formats", "png,report"];
    args.extend(extra);
    segment(d, Path::new(input), &threshold_model(), out, &args)
}

#[test]
fn recursive_folders_keep_subfolders_and_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    slide(&d.join("in/a/x.png"), 1);
    slide(&d.join("in/b/x.png"), 2);
    slide(&d.join("in/b/deeper/y.png"), 3);
    slide(&d.join("in/top.png"), 4);

    // Without --recursive the subfolders are named as not searched.
    let o = seg(d, "in", "flat", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("in: 1 slide(s), 2 subfolder(s) not searched (--recursive to descend)"),
        "{}",
        stderr(&o)
    );

    let o = seg(d, "in", "out", &["--recursive"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("in: 4 slide(s)"), "{}", stderr(&o));
    for name in ["a/x", "b/x", "b/deeper/y", "top"] {
        assert!(d.join(format!("out/{name}.mask.png")).is_file(), "{name}");
        let report = json(&d.join(format!("out/{name}.report.json")));
        assert!(
            report["slide"]["path"]
                .as_str()
                .unwrap()
                .ends_with(&format!("in/{name}.png")),
            "{name}: {}",
            report["slide"]["path"]
        );
    }
    // Each x's mask is its own slide's.
    let (ax, bx) = (
        common::read_mask(&d.join("out/a/x.mask.png")),
        common::read_mask(&d.join("out/b/x.mask.png")),
    );
    assert_ne!(ax.as_raw(), bx.as_raw());
    assert_eq!(
        rows(&d.join("out/summary.json")),
        [
            ("a/x", "done", "segmented"),
            ("b/deeper/y", "done", "segmented"),
            ("b/x", "done", "segmented"),
            ("top", "done", "segmented")
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );
    // The page links the subfolders' pictures.
    let page = std::fs::read_to_string(d.join("out/index.html")).unwrap();
    assert!(page.contains("\"b/deeper/y.mask.png\""), "{page}");

    let finished = |summary: &serde_json::Value| -> Vec<String> {
        summary["slides"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["finished_utc"].as_str().unwrap().to_string())
            .collect()
    };
    let first = finished(&json(&d.join("out/summary.json")));
    // A second run (a second later at least) skips all four; the summary
    // keeps their figures and when they were made.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = seg(d, "in", "out", &["-r"]);
    assert!(
        stderr(&o).contains("4 slides: 0 segmented, 4 skipped, 0 failed"),
        "{}",
        stderr(&o)
    );
    let summary = json(&d.join("out/summary.json"));
    assert_eq!(finished(&summary), first);
    for r in summary["slides"].as_array().unwrap() {
        assert_eq!(r["this_run"], "skipped");
        assert!(r["tumor_fraction"].as_f64().unwrap() > 0.0, "{r}");
    }

    // The slides moved (the same files): skipped, one row each, the new path.
    std::fs::rename(d.join("in"), d.join("moved")).unwrap();
    let o = seg(d, "moved", "out", &["-r"]);
    assert!(
        stderr(&o).contains("4 slides: 0 segmented, 4 skipped, 0 failed"),
        "{}",
        stderr(&o)
    );
    let summary = json(&d.join("out/summary.json"));
    let slides = summary["slides"].as_array().unwrap();
    assert_eq!(slides.len(), 4, "{summary}");
    assert!(slides
        .iter()
        .all(|r| r["slide"].as_str().unwrap().contains("/moved/")));
}

#[test]
fn lists_and_patterns_name_slides() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    slide(&d.join("data/s1.png"), 1);
    slide(&d.join("data/sub/s2.png"), 2);
    slide(&d.join("data/sub/s3.png"), 3);
    std::fs::write(
        d.join("data/list.csv"),
        "case,path,mpp\nc1,s1.png,0.5\nc2,\"sub/s2.png\",\nc9,gone.png,\n",
    )
    .unwrap();
    std::fs::write(d.join("data/list.txt"), "# slides\n\n../data/sub/s3.png\n").unwrap();

    // A missing entry is one error line naming the list and its line; the
    // others run; the run fails.
    let o = seg(d, "data/list.csv", "out", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        error_lines(&o),
        ["error: data/gone.png: no such file (listed in data/list.csv, line 4)"]
    );
    assert!(
        stderr(&o).contains(
            "data/list.csv: 2 slide(s), 1 listed path(s) that do not exist (reported below)"
        ),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("column(s) case not used"));
    // The list's mpp is the slide's resolution: areas in mm² for s1 only.
    let s1 = json(&d.join("out/s1.report.json"));
    assert_eq!(s1["slide"]["mpp"]["x"].as_f64(), Some(0.5));
    assert!(s1["areas"]["tumor_mm2"].as_f64().unwrap() > 0.0);
    let s2 = json(&d.join("out/sub/s2.report.json"));
    assert!(s2["areas"]["tumor_mm2"].is_null(), "{s2}");
    assert_eq!(
        rows(&d.join("out/summary.json")),
        [
            ("gone", "failed", "failed"),
            ("s1", "done", "segmented"),
            ("sub/s2", "done", "segmented")
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );

    // A second run into the same folder from another list adds to the
    // summary instead of erasing it; the failure stays listed.
    let o = seg(d, "data/list.txt", "out", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        rows(&d.join("out/summary.json")),
        [
            ("gone", "failed", ""),
            ("s1", "done", ""),
            ("s3", "done", "segmented"),
            ("sub/s2", "done", "")
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())),
        "a path leaving the list's folder is named by its file name"
    );
    assert!(d.join("out/s3.mask.png").is_file());

    // A pattern: names under its fixed folders.
    let o = seg(d, "data/sub/*.png", "globbed", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("data/sub/*.png: 2 slide(s)"));
    assert_eq!(
        files_in(&d.join("globbed")),
        [
            "index.html",
            "s2.mask.png",
            "s2.report.json",
            "s2.run.json",
            "s3.mask.png",
            "s3.report.json",
            "s3.run.json",
            "summary.csv",
            "summary.json"
        ]
    );
    let o = seg(d, "data/none-*.svs", "nothing", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("data/none-*.svs: no slides in this pattern"),
        "{}",
        stderr(&o)
    );
    assert!(!d.join("nothing").exists());

    // Bad lists are one clear error.
    std::fs::write(d.join("bad.csv"), "file,mpp\nx.svs,1\n").unwrap();
    let o = seg(d, "bad.csv", "x", &[]);
    assert_eq!(
        error_lines(&o),
        ["error: bad.csv: no \"path\" column in the header (columns: file, mpp); the first line names the columns, e.g. path,mpp"]
    );
    std::fs::write(d.join("bad.csv"), "path,mpp\ndata/s1.png,fast\n").unwrap();
    let o = seg(d, "bad.csv", "x", &[]);
    assert!(
        stderr(&o).contains("error: bad.csv, line 2: mpp \"fast\" is not a resolution"),
        "{}",
        stderr(&o)
    );
    assert!(!d.join("x").exists());
}

/// `wsiseg summary OUT --input IN`: the slides with no result are listed
/// and make it exit 1; after the rest is done, 0.
#[test]
fn summary_lists_missing_slides_until_done() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for i in 0..7 {
        slide(&d.join(format!("in/slide-{i}.png")), i);
    }
    // Shards 0 and 1 of 3 ran; shard 2 did not (an interrupted array).
    for shard in ["0/3", "1/3"] {
        let o = seg(d, "in", "out", &["--shard", shard]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let done: Vec<String> = (0..7)
        .map(|i| format!("slide-{i}"))
        .filter(|n| d.join(format!("out/{n}.run.json")).exists())
        .collect();
    assert!(!done.is_empty() && done.len() < 7, "{done:?}");
    let o = run(d, &["summary", "out", "--input", "in"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let rows = rows(&d.join("out/summary.json"));
    let missing: Vec<&str> = rows
        .iter()
        .filter(|r| r.1 == "missing")
        .map(|r| r.0.as_str())
        .collect();
    let expected: Vec<String> = (0..7)
        .map(|i| format!("slide-{i}"))
        .filter(|n| !done.contains(n))
        .collect();
    assert_eq!(missing, expected);
    assert_eq!(rows.len(), 7);
    // The page lists the same slides, the missing ones with their status.
    let page = page_slides(&d.join("out/index.html"));
    assert_eq!(page.len(), 7, "{page:?}");
    for name in &expected {
        assert!(
            page.iter().any(|(n, s)| n == name && s == "missing"),
            "{name}: {page:?}"
        );
    }
    for name in &expected {
        assert!(
            stderr(&o).contains(&format!(
                "missing: {}",
                d.join("in")
                    .canonicalize()
                    .unwrap()
                    .join(format!("{name}.png"))
                    .display()
            )),
            "{}",
            stderr(&o)
        );
    }
    // Without --input nothing is known to be missing.
    let o = run(d, &["summary", "out"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = seg(d, "in", "out", &["--shard", "2/3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(d, &["summary", "out", "--input", "in"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("7 slide(s): 7 done, 0 failed, 0 missing"),
        "{}",
        stderr(&o)
    );
    let csv = std::fs::read_to_string(d.join("out/summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 8, "{csv}");
}

/// Slides overlapped (the next one opened, planned and read while this
/// one's last batches run; the default) give byte for byte the outputs of
/// slides run one at a time.
#[test]
fn overlapped_slides_give_the_outputs_of_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::run_ok(
        d,
        &[
            "synth",
            "--out",
            "in",
            "--count",
            "4",
            "--size",
            "2048x1536",
            "--seed",
            "70",
        ],
    );
    let unet = common::unet();
    for (out, extra) in [
        ("overlapped", None),
        ("sequential", Some("--one-at-a-time")),
    ] {
        let mut args = vec!["--device", "cpu", "--formats", "png,tiff,geojson,report"];
        args.extend(extra);
        let o = segment(d, Path::new("in"), &unet, out, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("4 slides: 4 segmented"),
            "{}",
            stderr(&o)
        );
    }
    for seed in 70..74 {
        for suffix in ["mask.png", "mask.tiff", "geojson"] {
            let name = format!("synth-{seed}.{suffix}");
            assert_eq!(
                std::fs::read(d.join("overlapped").join(&name)).unwrap(),
                std::fs::read(d.join("sequential").join(&name)).unwrap(),
                "{name}"
            );
        }
    }
}

/// A DICOM series of default.svs (scripts/make_dicom.py: VOLUME levels,
/// label, overview; files named by their UIDs) in `folder`.
fn dicom_series(folder: &Path, levels: &str) {
    let o = std::process::Command::new(common::python())
        .arg(common::repo("scripts/make_dicom.py"))
        .arg(common::repo("tests/data/default.svs"))
        .arg(folder)
        .args(["--levels", levels])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The files of `folder` whose header says they hold `kind` (VOLUME,
/// LABEL, OVERVIEW).
fn instances(folder: &Path, kind: wsiseg_slide::DicomImage) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            wsiseg_slide::DicomInstance::read(p)
                .unwrap()
                .is_some_and(|i| i.image() == kind)
        })
        .collect();
    files.sort();
    files
}

/// Issue 27: a DICOM slide is a series of files (levels, label, overview).
/// Each series is one slide, named after its folder, its label and overview
/// never segmented; its mask is the SVS's it was converted from.
#[test]
fn dicom_series_are_one_slide_each_named_after_their_folder() {
    use wsiseg_slide::DicomImage;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dicom_series(&d.join("in/case-1"), "1");
    dicom_series(&d.join("in/case-2"), "1");
    let svs = common::segment(
        d,
        &common::repo("tests/data/default.svs"),
        &common::unet(),
        "svs",
        &["--device", "cpu", "--formats", "png"],
    );
    assert!(svs.status.success(), "{}", stderr(&svs));
    let svs_mask = common::read_mask(&d.join("svs/default.mask.png"));

    let mut args = vec![
        "segment",
        "in",
        "--recursive",
        "--out",
        "out",
        "--device",
        "cpu",
    ];
    args.extend(["--formats", "png,report"]);
    let unet = common::unet();
    let unet = unet.to_str().unwrap();
    args.extend(["--model", unet]);
    let o = run(d, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("in: 2 slide(s), 4 more DICOM file(s) read as parts of those series"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        files_in(&d.join("out")),
        [
            "case-1.mask.png",
            "case-1.report.json",
            "case-1.run.json",
            "case-2.mask.png",
            "case-2.report.json",
            "case-2.run.json",
            "index.html",
            "summary.csv",
            "summary.json"
        ]
    );
    let names: Vec<String> = rows(&d.join("out/summary.json"))
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(names, ["case-1", "case-2"]);
    for case in ["case-1", "case-2"] {
        let report = json(&d.join(format!("out/{case}.report.json")));
        assert_eq!(report["slide"]["format"], "dicom");
        let volume = &instances(&d.join("in").join(case), DicomImage::Volume)[0];
        let opened = report["slide"]["path"].as_str().unwrap();
        assert!(
            opened.ends_with(volume.file_name().unwrap().to_str().unwrap()),
            "{case}: opened from {opened}, not its level-0 instance"
        );
        let mask = common::read_mask(&d.join(format!("out/{case}.mask.png")));
        assert_eq!(mask.dimensions(), svs_mask.dimensions());
        let agree = 1.0
            - common::differing(mask.as_raw(), svs_mask.as_raw()) as f64
                / svs_mask.as_raw().len() as f64;
        assert!(agree >= 0.999, "{case}: {agree} of the SVS mask");
    }
    // Done means done: a second run skips both.
    let o = run(d, &args);
    assert!(
        stderr(&o).contains("2 slides: 0 segmented, 2 skipped, 0 failed"),
        "{}",
        stderr(&o)
    );
}

/// Issue 27: `info` on any file of a DICOM series (its label here) shows
/// the series' levels, its associated images and the name its outputs take.
#[test]
fn info_on_any_file_of_a_dicom_series_describes_the_series() {
    use wsiseg_slide::DicomImage;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dicom_series(&d.join("pyramid"), "3");
    let label = &instances(&d.join("pyramid"), DicomImage::Label)[0];
    let o = common::run_ok(d, &args!["info", label]);
    let info = String::from_utf8_lossy(&o.stdout).into_owned();
    for want in [
        "format   dicom",
        "levels   3",
        "  1     1110 × 1483",
        "images   label 387×463, macro 1280×431",
        "series   5 files",
        "(outputs named pyramid)",
    ] {
        assert!(info.contains(want), "{want}: {info}");
    }
}

/// Issue 27: DICOM series that share a folder are named after themselves; a series of
/// only a label is passed over; a list naming three files of one series
/// is one slide.
#[test]
fn dicom_series_share_folders_and_lists() {
    use wsiseg_slide::DicomImage;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dicom_series(&d.join("in/case-1"), "1");
    dicom_series(&d.join("in/case-2"), "1");
    // Several series in one folder: each under the folder's name.
    let mixed = d.join("more/mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    for case in ["case-1", "case-2"] {
        for f in std::fs::read_dir(d.join("in").join(case)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, mixed.join(f.file_name().unwrap())).unwrap();
        }
    }
    dicom_series(&d.join("more/labels"), "1");
    for f in instances(&d.join("more/labels"), DicomImage::Volume)
        .into_iter()
        .chain(instances(&d.join("more/labels"), DicomImage::Overview))
    {
        std::fs::remove_file(f).unwrap();
    }
    let o = seg(d, "more", "mixed-out", &["-r"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1 DICOM series with only a label, overview or thumbnail ignored"),
        "{}",
        stderr(&o)
    );
    let names: Vec<String> = rows(&d.join("mixed-out/summary.json"))
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    for n in &names {
        assert!(
            n.starts_with("mixed/series-") && n.len() == "mixed/series-".len() + 8,
            "{n}"
        );
        assert!(d.join(format!("mixed-out/{n}.mask.png")).is_file(), "{n}");
    }
    assert_ne!(names[0], names[1]);
    let case1 = d.join("in/case-1");
    let listed: Vec<String> = std::fs::read_dir(&case1)
        .unwrap()
        .map(|e| format!("in/case-1/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    std::fs::write(d.join("list.txt"), listed.join("\n")).unwrap();
    let o = seg(d, "list.txt", "list-out", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        rows(&d.join("list-out/summary.json")),
        [(
            "in/case-1".to_string(),
            "done".to_string(),
            "segmented".to_string()
        )]
    );
}
