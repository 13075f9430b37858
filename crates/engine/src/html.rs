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
use wsiseg_report::SlideReport;

use crate::report::{absolute, utc, write_atomic};
use crate::{EngineError, SummaryRow};

/// The page's style and behaviour (vanilla JavaScript, no library).
const STYLE: &str = include_str!("html/index.css");
const SCRIPT: &str = include_str!("html/index.js");
/// Written beside the page by a running `wsiseg view` (its URL, token
/// included; readable by the owner only) and removed when it stops: the
/// page then links each slide to its deep-zoom view.
pub const VIEW_SCRIPT: &str = ".wsiseg-view.js";

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// One row of the table from a slide's report (and its summary line).
fn row(out: &Path, stem: &str, report: &SlideReport, status: &str, error: Option<&str>) -> Value {
    let file = |suffix: &str| {
        let name = format!("{stem}.{suffix}");
        out.join(&name).is_file().then_some(name)
    };
    let overlay = file("overlay.png");
    let slide = &report.slide;
    // µm per overlay pixel, for the scale bar.
    let um_per_px = overlay.as_ref().and_then(|o| {
        let (w, _) = image::image_dimensions(out.join(o)).ok()?;
        let mpp = slide.mpp?.x;
        Some(f64::from(slide.level0.width) * mpp / f64::from(w))
    });
    // The tumor colour of the model that made the overlay.
    let tumor_colour = crate::outputs::report_classes(Some(report))
        .get(1)
        .map_or(crate::outputs::CLASS_COLOURS[1], |c| c.1);
    let stats = &report.statistics;
    let probability = stats.probability.as_ref();
    let run = &report.run;
    json!({
        "name": stem,
        "tumor_colour": tumor_colour,
        "slide": slide.path,
        "status": status,
        "error": error,
        "tumor_pct": report.areas.tumor_fraction * 100.0,
        "tumor_mm2": report.areas.tumor_mm2,
        "tissue_pct": stats.tumor_share_of_tissue.map(|f| f * 100.0),
        "regions": stats.regions.count,
        "largest_mm2": stats.regions.largest_mm2,
        "uncertain_pct": probability.and_then(|p| p.uncertain_fraction).map(|f| f * 100.0),
        "seconds": report.timings_s.total,
        "device": (!run.devices.is_empty()).then(|| run.devices.join(",")),
        "precision": run.precision,
        "overlay": overlay,
        "heatmap": file("heatmap.png"),
        "mask": file("mask.png"),
        "um_per_px": um_per_px,
        "report": format!("{stem}.report.json"),
        "numbers": {
            "format": slide.format,
            "level 0": format!("{} × {}", slide.level0.width, slide.level0.height),
            "mpp": slide.mpp.map(|m| m.x),
            "working level µm/px": report.working_level.mpp,
            "tissue mm²": report.areas.tissue_mm2,
            "tumor mm²": report.areas.tumor_mm2,
            "regions by size": stats.regions.by_size,
            "P(tumor) histogram (tenths)": probability.map(|p| p.histogram_tenths),
            "model": report.model.name,
            "model sha256": report.model.sha256,
            "tiles run": report.tiles.run,
            "started (UTC)": run.started_utc,
            "host": run.host,
            "versions": run.versions,
        },
    })
}

/// The page's rows: those of the folder's merged summary.
fn rows(out: &Path, summary: &[SummaryRow]) -> Vec<Value> {
    summary
        .iter()
        .map(|r| {
            let status = r.status.name();
            let report = r.report.as_deref().and_then(|p| wsiseg_report::read::<SlideReport>(p).ok());
            match report {
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
        "folder": absolute(out),
        "generated_utc": utc(std::time::SystemTime::now()),
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
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline' file:\">\n\
         <title>wsiseg — {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>wsiseg — <span id=\"folder\"></span></h1><p id=\"counts\"></p></header>\n\
         <section id=\"failures\"></section>\n\
         <section id=\"run\"><h2>Slides</h2>\
         <input id=\"filter\" type=\"search\" placeholder=\"filter by name, status or error\">\
         <table id=\"slides\"><thead></thead><tbody></tbody></table></section>\n\
         <section id=\"eval\"></section>\n<section id=\"views\"></section>\n\
         <script id=\"data\" type=\"application/json\">{embedded}</script>\n\
         <script src=\"{VIEW_SCRIPT}\"></script>\n\
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
