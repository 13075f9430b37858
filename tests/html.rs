//! index.html in a real browser (issue 15): Debian's Chromium, headless,
//! without a network (`unshare -rn`), loads the page of a folder run of three
//! synthetic slides and one broken one from file://. The DOM lists every
//! slide with its status and tumor %, the failure on top with its error,
//! clicking a column header re-orders the rows, the eval table is there, the
//! page asks for nothing outside the machine (Chromium's network log — with
//! a control page that does ask, to show the check can fail), and a
//! screenshot is kept for people to look at.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{json, run, run_ok, stderr, synth, unet};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium headless in a network namespace of its own, with a fresh
/// profile; `extra` before the URL.
fn chromium(profile: &Path, extra: &[&str], url: &str) -> std::process::Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium for this test"
    );
    let o = Command::new("timeout")
        .args(["60", "unshare", "-rn", CHROMIUM])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium: {}", stderr(&o));
    o
}

fn dom(profile: &Path, url: &str) -> String {
    String::from_utf8(chromium(profile, &["--dump-dom"], url).stdout).unwrap()
}

/// The table's rows as (slide, status, tumor % cell), top to bottom.
fn table_rows(dom: &str) -> Vec<(String, String, String)> {
    let body = &dom[dom.find("<tbody>").unwrap()..dom.find("</tbody>").unwrap()];
    body.split("<tr data-slide=\"")
        .skip(1)
        .map(|tr| {
            let name = tr.split('"').next().unwrap().to_string();
            let status = tr
                .split("data-status=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string();
            let tumor = tr
                .split("<td data-key=\"tumor_pct\">")
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .to_string();
            (name, status, tumor)
        })
        .collect()
}

/// A folder run of three synthetic slides and a broken one, evaluated;
/// the page's path.
fn folder_run(d: &Path) -> PathBuf {
    let slides = d.join("slides");
    for seed in ["211", "212", "213"] {
        synth(d, seed, "2048x2048");
    }
    let good = std::fs::read(slides.join("synth-211.svs")).unwrap();
    std::fs::write(slides.join("broken.svs"), &good[..5000]).unwrap();
    let o = run(
        d,
        &args![
            "segment",
            "slides",
            "--model",
            unet(),
            "--device",
            "cpu",
            "--probabilities",
            "--out",
            "out"
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    run_ok(d, &["eval", "--pred", "out", "--truth", "slides/truth"]);
    // The merged summary and the page again (with eval.json now); a failed
    // slide in the folder makes it exit 1 and name the slide.
    let o = run(d, &args!["summary", "out"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/slides/broken.svs: ")
            && stderr(&o).contains("4 slide(s): 3 done, 1 failed, 0 missing"),
        "{}",
        stderr(&o)
    );
    let page = d.join("out/index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for scheme in ["http://", "https://", "//cdn", "src=\"//"] {
        assert!(!html.contains(scheme), "the page names {scheme}");
    }
    page
}

/// Every slide with its status and the report's tumor %, the failure first
/// and its error on top, the eval table; the slides by tumor %, largest first.
fn check_table(d: &Path, first: &str) -> Vec<String> {
    let rows = table_rows(first);
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        ["broken", "synth-211", "synth-212", "synth-213"],
        "{rows:?}"
    );
    assert_eq!(rows[0].1, "failed");
    assert_eq!(rows[0].2, "—");
    let mut tumor = Vec::new();
    for (name, status, cell) in &rows[1..] {
        assert_eq!(status, "done");
        let report = json(&d.join(format!("out/{name}.report.json")));
        let pct = report["areas"]["tumor_fraction"].as_f64().unwrap() * 100.0;
        assert_eq!(cell, &format!("{pct:.2}"), "{name}");
        tumor.push((pct, name.clone()));
    }
    let summary = json(&d.join("out/summary.json"));
    let error = summary["slides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["status"] == "failed")
        .unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    let failures = &first[first.find("<section id=\"failures\">").unwrap()..];
    let failures = &failures[..failures.find("</section>").unwrap()];
    assert!(
        failures.contains("1 slide(s) failed") && failures.contains(&error),
        "{failures}"
    );
    assert!(first.contains("Evaluation against ground truth"));
    assert_eq!(
        first.matches("<tr data-slide=\"synth-21").count(),
        3 + 3,
        "table and eval rows"
    );
    tumor.sort_by(|a, b| b.0.total_cmp(&a.0));
    tumor.into_iter().map(|t| t.1).collect()
}

/// Nothing leaves the machine: the page asks for no URL; a control page
/// that does is caught by the same check.
fn check_network(d: &Path, profile: &Path, url: &str) {
    let netlog = d.join("net.json");
    let arg = format!("--log-net-log={}", netlog.display());
    chromium(profile, &[&arg, "--dump-dom"], url);
    assert_eq!(common::page_requests(&netlog), Vec::<String>::new());
    let control = d.join("out/control.html");
    std::fs::write(&control, "<img src=\"http://192.0.2.1/x.png\">").unwrap();
    chromium(
        profile,
        &[&arg, "--dump-dom"],
        &format!("file://{}", control.display()),
    );
    assert_eq!(common::page_requests(&netlog), ["http://192.0.2.1/x.png"]);
}

#[test]
fn index_html_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let page = folder_run(d);
    let url = format!("file://{}", page.display());
    let profile = d.join("profile");
    let first = dom(&profile, &url);
    let by_tumor = check_table(d, &first);

    // A click on "tumor %" orders by it, largest first; a second click flips it.
    let sorted = table_rows(&dom(&profile, &format!("{url}#click=tumor_pct")));
    let got: Vec<&str> = sorted.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(got[..3], by_tumor[..], "{sorted:?}");
    assert_eq!(got[3], "broken", "no tumor % sorts last");
    assert_ne!(got[0], "broken", "the order changed");
    let twice = table_rows(&dom(&profile, &format!("{url}#click=tumor_pct,tumor_pct")));
    let got: Vec<&str> = twice.iter().map(|r| r.0.as_str()).collect();
    let ascending: Vec<&str> = by_tumor.iter().rev().map(String::as_str).collect();
    assert_eq!(got[..3], ascending[..]);

    check_network(d, &profile, &url);

    // A slide of the input with no result yet: `wsiseg summary --input`
    // lists it on the page as it does in summary.json.
    std::fs::copy(d.join("slides/synth-211.svs"), d.join("slides/later.svs")).unwrap();
    let o = run(d, &args!["summary", "out", "--input", "slides"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("5 slide(s): 3 done, 1 failed, 1 missing"),
        "{}",
        stderr(&o)
    );
    let later = dom(&profile, &url);
    let rows = table_rows(&later);
    assert!(
        rows.iter().any(|r| r.0 == "later" && r.1 == "missing"),
        "{rows:?}"
    );
    let failures = &later[later.find("<section id=\"failures\">").unwrap()..];
    let failures = &failures[..failures.find("</section>").unwrap()];
    assert!(
        failures.contains("1 slide(s) failed")
            && failures.contains("1 slide(s) have no result yet")
            && failures.contains("later.svs"),
        "{failures}"
    );

    // A screenshot to look at.
    let shot = screenshot_path();
    let arg = format!("--screenshot={}", shot.display());
    chromium(&profile, &[&arg, "--window-size=1400,1800"], &url);
    let png = image::open(&shot).unwrap();
    assert_eq!((png.width(), png.height()), (1400, 1800));
    eprintln!("screenshot: {}", shot.display());
}

/// Kept after the test: target/tmp/index-html.png.
fn screenshot_path() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("index-html.png")
}
