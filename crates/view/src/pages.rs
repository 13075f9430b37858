//! The page, its assets (OpenSeadragon built in), and the JSON it reads.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::catalog::{Catalog, Entry};
use crate::http::Reply;
use crate::render::{OVERLAP, TILE};

const PAGE: &str = include_str!("../web/view.html");
const SCRIPT: &str = include_str!("../web/view.js");
const STYLE: &str = include_str!("../web/view.css");
const OSD: &str = include_str!(concat!(env!("OUT_DIR"), "/openseadragon.min.js"));
/// OpenSeadragon's licence (BSD-3-Clause), served beside it.
pub const OSD_LICENSE: &str = include_str!(concat!(env!("OUT_DIR"), "/openseadragon-LICENSE.txt"));
const OSD_PACKAGE: &str = include_str!(concat!(env!("OUT_DIR"), "/openseadragon-package.json"));

/// The page's policy: nothing but this server, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The OpenSeadragon version built in.
pub fn osd_version() -> String {
    serde_json::from_str::<Value>(OSD_PACKAGE)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The page.
pub fn page() -> Reply {
    let mut r = Reply::ok("text/html; charset=utf-8", PAGE.as_bytes().to_vec());
    r.headers.push(("Content-Security-Policy", CSP));
    r.headers.push(("X-Frame-Options", "DENY"));
    r
}

/// A built-in file the page loads.
pub fn asset(name: &str) -> Option<Reply> {
    let (ty, body) = match name {
        "openseadragon.min.js" => ("text/javascript; charset=utf-8", OSD),
        "openseadragon-LICENSE.txt" => ("text/plain; charset=utf-8", OSD_LICENSE),
        "view.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "view.css" => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    Some(Reply::ok(ty, body.as_bytes().to_vec()).cached())
}

/// The folder's slides for the list.
pub fn slides_json(c: &Catalog) -> Value {
    json!({
        "folder": c.out,
        "wsiseg_version": env!("CARGO_PKG_VERSION"),
        "openseadragon_version": osd_version(),
        "eval": c.eval,
        "slides": c.entries.iter().enumerate().map(|(i, e)| json!({
            "id": i,
            "name": e.name,
            "status": e.status,
            "error": e.error,
            "figures": e.figures,
        })).collect::<Vec<_>>(),
    })
}

/// The classes' names and colours of the model that made the slide's mask.
fn classes(e: &Entry) -> Vec<Value> {
    wsiseg_engine::report_classes(e.report.as_ref())
        .into_iter()
        .map(|(n, c)| json!({"name": n, "colour": c}))
        .collect()
}

/// One slide: its size and resolution, the layers that can be shown (or
/// why one cannot), its figures.
pub fn slide_json(c: &Catalog, id: usize) -> Value {
    let e = &c.entries[id];
    let opened = c.open(id);
    let layer =
        |p: Option<&Result<crate::render::Pyramid, String>>, kind: &str, format: &str| match p {
            None => Value::Null,
            Some(Err(err)) => json!({"error": err}),
            Some(Ok(p)) => json!({
                "width": p.width, "height": p.height, "tile": TILE, "overlap": OVERLAP,
                "url": format!("tile/{id}/{kind}/"), "format": format,
                "overview_pending": p.overview_pending(),
            }),
        };
    let (width, height) = match &opened.slide {
        Ok(p) => (Some(p.width), Some(p.height)),
        Err(_) => e.report.as_ref().map_or((None, None), |r| {
            (Some(r.slide.level0.width), Some(r.slide.level0.height))
        }),
    };
    let mpp = match &opened.slide {
        Ok(p) => p.slide.mpp().map(|m| m.x),
        Err(_) => None,
    }
    .or_else(|| {
        e.report
            .as_ref()
            .and_then(|r| r.slide.mpp.as_ref().map(|m| m.x))
    });
    json!({
        "id": id,
        "count": c.entries.len(),
        "name": e.name,
        "slide": e.slide,
        "status": e.status,
        "error": e.error,
        "width": width,
        "height": height,
        "mpp": mpp,
        "figures": e.figures,
        "eval": e.eval,
        "classes": classes(e),
        "layers": {
            "slide": layer(Some(&opened.slide), "slide", "jpeg"),
            "mask": layer(opened.mask.as_ref(), "mask", "png"),
            "heat": layer(opened.prob.as_ref(), "heat", "png"),
        },
        "heatmap_png": (opened.prob.is_none() && e.heatmap.is_some()).then(|| format!("heatmap/{id}.png")),
        "truth": e.truth.as_ref().map(|_| format!("truth/{id}.png")),
        "regions": e.geojson.as_ref().map(|_| format!("api/regions/{id}")),
    })
}

/// Vertices drawn at most (the regions past them are listed, not drawn).
const MAX_VERTICES: usize = 2_000_000;

/// The regions of NAME.geojson, largest first: name, class, colour, area,
/// bounding box and rings (level-0 pixels).
fn regions_json(e: &Entry) -> Result<Vec<u8>, String> {
    let path = e.geojson.as_ref().ok_or("no regions")?;
    let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|err| format!("{}: not JSON: {err}", path.display()))?;
    let mut out: Vec<Value> = Vec::new();
    let mut vertices = 0usize;
    for f in doc["features"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let props = &f["properties"];
        let polys: Vec<&Value> = match f["geometry"]["type"].as_str() {
            Some("Polygon") => vec![&f["geometry"]["coordinates"]],
            Some("MultiPolygon") => f["geometry"]["coordinates"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            _ => continue,
        };
        let mut rings: Vec<Vec<[f64; 2]>> = Vec::new();
        for poly in polys {
            for ring in poly.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let pts: Vec<[f64; 2]> = ring
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(|p| Some([p[0].as_f64()?, p[1].as_f64()?]))
                    .collect();
                if !pts.is_empty() {
                    rings.push(pts);
                }
            }
        }
        let Some(shell) = rings.first() else { continue };
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for p in shell {
            x0 = x0.min(p[0]);
            y0 = y0.min(p[1]);
            x1 = x1.max(p[0]);
            y1 = y1.max(p[1]);
        }
        let n: usize = rings.iter().map(Vec::len).sum();
        vertices += n;
        let m = &props["measurements"];
        out.push(json!({
            "name": props["name"],
            "class": props["classification"]["name"],
            "colour": props["classification"]["color"],
            "area_mm2": m["Area mm^2"],
            "area_px": m["Area (level-0 px^2)"],
            "bbox": [x0, y0, x1, y1],
            "rings": if vertices <= MAX_VERTICES { json!(rings) } else { Value::Null },
        }));
    }
    let area = |v: &Value| v["area_px"].as_f64().unwrap_or(0.0);
    out.sort_by(|a, b| area(b).total_cmp(&area(a)));
    Ok(json!({"regions": out}).to_string().into_bytes())
}

/// The reply with the regions of `e` (read once).
pub fn regions(e: &Entry) -> Reply {
    if e.geojson.is_none() {
        return Reply::error(404, "no NAME.geojson for this slide");
    }
    match e.regions.get_or_init(|| regions_json(e).map(Arc::new)) {
        Ok(b) => Reply::ok("application/json", b.clone()),
        Err(err) => Reply::error(502, err),
    }
}
