//! `index.html`: one self-contained offline page per output folder — the
//! run's table (thumbnail with overlay, tumor %, tumor % of tissue, regions,
//! uncertain %, time, device, status, error), sortable and filterable, the
//! failures on top, a view of each slide (overlay and heat map with a legend,
//! a colour bar and a scale bar, and the report's numbers), and the eval
//! metrics when `wsiseg eval` was run in the folder. No network: the styles
//! and script are inline, the pictures are the folder's own PNGs, the data
//! is embedded as JSON.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::outputs::report::write_atomic;
use crate::{EngineError, SummaryRow};

/// The page's style and behaviour (vanilla JavaScript, no library).
const STYLE: &str = include_str!("html/index.css");
const SCRIPT: &str = include_str!("html/index.js");

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// One row of the table from a slide's report (and its summary line).
fn row(out: &Path, stem: &str, report: &Value, status: &str, error: Option<&str>) -> Value {
    let file = |suffix: &str| {
        let name = format!("{stem}.{suffix}");
        out.join(&name).is_file().then_some(name)
    };
    let overlay = file("overlay.png");
    // µm per overlay pixel, for the scale bar.
    let um_per_px = overlay.as_ref().and_then(|o| {
        let (w, _) = image::image_dimensions(out.join(o)).ok()?;
        let l0 = report["slide"]["level0"]["width"].as_f64()?;
        let mpp = report["slide"]["mpp"]["x"].as_f64()?;
        Some(l0 * mpp / f64::from(w))
    });
    // The tumor colour of the model that made the overlay.
    let tumor_colour =
        serde_json::from_value::<wsiseg_infer::Manifest>(report["model"]["manifest"].clone())
            .ok()
            .and_then(|m| m.class_colours().get(1).copied())
            .unwrap_or(crate::outputs::CLASS_COLOURS[1]);
    json!({
        "name": stem,
        "tumor_colour": tumor_colour,
        "slide": report["slide"]["path"],
        "status": status,
        "error": error,
        "tumor_pct": report["areas"]["tumor_fraction"].as_f64().map(|f| f * 100.0),
        "tumor_mm2": report["areas"]["tumor_mm2"],
        "tissue_pct": report["statistics"]["tumor_share_of_tissue"].as_f64().map(|f| f * 100.0),
        "regions": report["statistics"]["regions"]["count"],
        "largest_mm2": report["statistics"]["regions"]["largest_mm2"],
        "uncertain_pct": report["statistics"]["probability"]["uncertain_fraction"].as_f64().map(|f| f * 100.0),
        "seconds": report["timings_s"]["total"],
        "device": report["run"]["devices"].as_array().map(|d| d.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
        "precision": report["run"]["precision"],
        "overlay": overlay,
        "heatmap": file("heatmap.png"),
        "mask": file("mask.png"),
        "um_per_px": um_per_px,
        "report": format!("{stem}.report.json"),
        "numbers": {
            "format": report["slide"]["format"],
            "level 0": format!("{} × {}", report["slide"]["level0"]["width"], report["slide"]["level0"]["height"]),
            "mpp": report["slide"]["mpp"]["x"],
            "working level µm/px": report["working_level"]["mpp"],
            "tissue mm²": report["areas"]["tissue_mm2"],
            "tumor mm²": report["areas"]["tumor_mm2"],
            "regions by size": report["statistics"]["regions"]["by_size"],
            "P(tumor) histogram (tenths)": report["statistics"]["probability"]["histogram_tenths"],
            "model": report["model"]["name"],
            "model sha256": report["model"]["sha256"],
            "tiles run": report["tiles"]["run"],
            "started (UTC)": report["run"]["started_utc"],
            "host": report["run"]["host"],
            "versions": report["run"]["versions"],
        },
    })
}

/// The page's rows: those of the folder's merged summary.
fn rows(out: &Path, summary: &[SummaryRow]) -> Vec<Value> {
    summary
        .iter()
        .map(|r| {
            let status = r.status.name();
            match r.report.as_deref().and_then(read_json) {
                Some(report) => row(out, &r.name, &report, status, r.error.as_deref()),
                None => json!({"name": r.name, "slide": r.slide, "status": status, "error": r.error,
                               "seconds": r.figures.as_ref().map(|f| f.seconds),
                               "tumor_pct": r.figures.as_ref().map(|f| f.tumor_fraction * 100.0),
                               "mask": out.join(format!("{}.mask.png", r.name)).is_file().then(|| format!("{}.mask.png", r.name)),
                               "device": (!r.devices.is_empty()).then(|| r.devices.join(","))}),
            }
        })
        .collect()
}

/// Writes (or refreshes) `out/index.html` from the folder's merged summary
/// (every finished slide, in subfolders too, and the recorded failures).
pub fn write_index(out: &Path) -> Result<PathBuf, EngineError> {
    write_index_of(out, &crate::summary::merge(out, Vec::new()))
}

/// Writes `out/index.html` with the rows of a merged summary already made
/// ([`crate::merge_summary`]).
pub fn write_index_of(out: &Path, summary: &[SummaryRow]) -> Result<PathBuf, EngineError> {
    let data = json!({
        "folder": crate::outputs::report::absolute(out),
        "generated_utc": crate::outputs::report::utc(std::time::SystemTime::now()),
        "wsiseg_version": env!("CARGO_PKG_VERSION"),
        "slides": rows(out, summary),
        "eval": read_json(&out.join("eval.json")),
    });
    // Inside <script>, "</" would end the element.
    let embedded = data.to_string().replace("</", "<\\/");
    let title = out
        .file_name()
        .map_or("wsiseg".into(), |n| n.to_string_lossy().into_owned());
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
         <title>wsiseg — {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>wsiseg — <span id=\"folder\"></span></h1><p id=\"counts\"></p></header>\n\
         <section id=\"failures\"></section>\n\
         <section id=\"run\"><h2>Slides</h2>\
         <input id=\"filter\" type=\"search\" placeholder=\"filter by name, status or error\">\
         <table id=\"slides\"><thead></thead><tbody></tbody></table></section>\n\
         <section id=\"eval\"></section>\n<section id=\"views\"></section>\n\
         <script id=\"data\" type=\"application/json\">{embedded}</script>\n\
         <script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        html_escape(&title)
    );
    let path = out.join("index.html");
    write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
