//! The outputs of `segment`: pyramidal TIFF mask, GeoJSON, overlays, report,
//! PNG at another level, and what an interrupted run leaves.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{Rgb, RgbImage};
use serde_json::Value;
use wsiseg_slide::{open, PyramidOptions, PyramidWriter, Rect, Reduce, Size, TileCompression};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn wsiseg(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wsiseg"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("run wsiseg")
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A 2000×1400 slide at 0.5 µm/px, 2 levels (4× apart), white with a dark-green
/// (green < 128: "tumor" for the threshold model) rectangle at level-0
/// x 400..800, y 200..600, and a dark square with a white hole at x 1200..1600, y 800..1200.
fn known_slide(path: &Path) {
    let (w, h) = (2000u32, 1400u32);
    let img = RgbImage::from_fn(w, h, |x, y| {
        let rect = (400..800).contains(&x) && (200..600).contains(&y);
        let ring = (1200..1600).contains(&x)
            && (800..1200).contains(&y)
            && !((1340..1460).contains(&x) && (940..1060).contains(&y));
        if rect || ring {
            Rgb([90, 40, 120])
        } else {
            Rgb([240, 235, 240])
        }
    });
    let opts = PyramidOptions {
        channels: 3,
        tile: 256,
        step: 4,
        smallest: 600,
        compression: TileCompression::Jpeg { quality: 95 },
        reduce: Reduce::Average,
        mpp: Some(0.5),
        description: Some(
            "Aperio Image Library test\r\n2000x1400 JPEG/RGB Q=95|AppMag = 20|MPP = 0.5".into(),
        ),
    };
    let mut writer = PyramidWriter::create(path, Size::new(w, h), opts).unwrap();
    writer.push_rows(img.as_raw()).unwrap();
    writer.finish().unwrap();
}

type Polygon = Vec<Vec<(f64, f64)>>;

fn polygons(geojson: &Value) -> Vec<Polygon> {
    assert_eq!(geojson["type"], "FeatureCollection");
    geojson["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["properties"]["objectType"], "annotation");
            assert_eq!(f["properties"]["classification"]["name"], "tumor");
            assert_eq!(f["geometry"]["type"], "Polygon");
            f["geometry"]["coordinates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ring| {
                    ring.as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn segments_meet(a: (f64, f64), b: (f64, f64), c: (f64, f64), d: (f64, f64)) -> bool {
    let cross = |o: (f64, f64), p: (f64, f64), q: (f64, f64)| {
        (p.0 - o.0) * (q.1 - o.1) - (p.1 - o.1) * (q.0 - o.0)
    };
    let on = |p: (f64, f64), q: (f64, f64), r: (f64, f64)| {
        r.0 >= p.0.min(q.0) && r.0 <= p.0.max(q.0) && r.1 >= p.1.min(q.1) && r.1 <= p.1.max(q.1)
    };
    let (d1, d2, d3, d4) = (
        cross(c, d, a),
        cross(c, d, b),
        cross(a, b, c),
        cross(a, b, d),
    );
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    (d1 == 0.0 && on(c, d, a))
        || (d2 == 0.0 && on(c, d, b))
        || (d3 == 0.0 && on(a, b, c))
        || (d4 == 0.0 && on(a, b, d))
}

fn inside(ring: &[(f64, f64)], p: (f64, f64)) -> bool {
    let mut c = false;
    for i in 0..ring.len() - 1 {
        let (a, b) = (ring[i], ring[i + 1]);
        if (a.1 > p.1) != (b.1 > p.1) && p.0 < a.0 + (p.1 - a.1) * (b.0 - a.0) / (b.1 - a.1) {
            c = !c;
        }
    }
    c
}

/// OGC validity of a polygon: closed simple rings that neither cross nor
/// touch one another, holes inside the shell.
fn assert_valid(poly: &Polygon) {
    let mut segs = Vec::new();
    for (r, ring) in poly.iter().enumerate() {
        assert!(ring.len() >= 4, "ring with {} points", ring.len());
        assert_eq!(ring.first(), ring.last(), "ring not closed");
        for i in 0..ring.len() - 1 {
            segs.push((r, i, ring.len() - 1, ring[i], ring[i + 1]));
        }
        if r > 0 {
            assert!(inside(&poly[0], ring[0]), "hole outside its shell");
        }
    }
    for (i, s) in segs.iter().enumerate() {
        for t in &segs[i + 1..] {
            let adjacent = s.0 == t.0 && ((s.1 + 1) % s.2 == t.1 || (t.1 + 1) % t.2 == s.1);
            if adjacent {
                continue;
            }
            assert!(
                !segments_meet(s.3, s.4, t.3, t.4),
                "segments meet: {s:?} {t:?}"
            );
        }
    }
}

/// Even-odd fill of the polygons at pixel centres of a `w×h` grid whose
/// pixels are `scale` level-0 pixels wide.
fn rasterize(polys: &[Polygon], w: u32, h: u32, scale: f64) -> Vec<u8> {
    let mut out = vec![0u8; (w * h) as usize];
    for poly in polys {
        for y in 0..h {
            let cy = (f64::from(y) + 0.5) * scale;
            let mut xs: Vec<f64> = Vec::new();
            for ring in poly {
                for i in 0..ring.len() - 1 {
                    let (a, b) = (ring[i], ring[i + 1]);
                    if (a.1 > cy) != (b.1 > cy) {
                        xs.push(a.0 + (cy - a.1) * (b.0 - a.0) / (b.1 - a.1));
                    }
                }
            }
            xs.sort_by(f64::total_cmp);
            for pair in xs.chunks(2) {
                let x0 = (pair[0] / scale - 0.5).ceil().max(0.0) as u32;
                let x1 = ((pair[1] / scale - 0.5).floor() as i64).min(i64::from(w) - 1);
                for x in x0 as i64..=x1 {
                    out[(y * w + x as u32) as usize] = 1;
                }
            }
        }
    }
    out
}

fn iou(a: &[u8], b: &[u8]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x > 0 && **y > 0).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x > 0 || **y > 0).count();
    inter as f64 / union.max(1) as f64
}

#[test]
fn outputs_of_a_slide_with_known_tumor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    known_slide(&d.join("known.svs"));
    let model = repo("tests/data/models/green-threshold")
        .display()
        .to_string();
    let o = wsiseg(
        &[
            "segment",
            "known.svs",
            "--model",
            &model,
            "--out",
            "out",
            "--level",
            "1",
            "--probabilities",
        ],
        d,
        &[],
    );
    ok(&o);
    let out = d.join("out");

    // PNG and pyramidal TIFF mask: the working level (level 1: 500×350, 2 µm/px).
    let png = image::open(out.join("known.mask.png"))
        .unwrap()
        .into_luma8();
    assert_eq!(png.dimensions(), (500, 350));
    let tiff = open(&out.join("known.mask.tiff")).unwrap();
    assert_eq!(tiff.format(), "generic-tiff");
    assert_eq!(tiff.levels()[0].size, Size::new(500, 350));
    assert_eq!(tiff.levels()[1].size, Size::new(125, 88));
    assert!(
        (tiff.mpp().unwrap().x - 2.0).abs() < 1e-6,
        "{:?}",
        tiff.mpp()
    );
    let level0 = tiff.read_inside(0, Rect::new(0, 0, 500, 350)).unwrap();
    let tiff_labels: Vec<u8> = level0.pixels().map(|p| p.0[0]).collect();
    assert!(
        tiff_labels == *png.as_raw(),
        "TIFF level 0 differs from the PNG mask"
    );
    // The rectangle at level-0 (400..800, 200..600) is level-1 (100..200, 50..150).
    assert_eq!(png.get_pixel(150, 100).0[0], 1);
    assert_eq!(png.get_pixel(99, 100).0[0], 0);
    assert_eq!(png.get_pixel(100, 100).0[0], 1);
    let prob = open(&out.join("known.prob.tiff")).unwrap();
    let p = prob.read_inside(0, Rect::new(150, 100, 1, 1)).unwrap();
    assert!(
        p.get_pixel(0, 0).0[0] > 128,
        "tumor probability inside the rectangle"
    );

    // GeoJSON in level-0 pixels: one rectangle, one square with a hole.
    let gj = json(&out.join("known.geojson"));
    let polys = polygons(&gj);
    assert_eq!(polys.len(), 2, "{gj}");
    for poly in &polys {
        assert_valid(poly);
    }
    let bbox = |ring: &Vec<(f64, f64)>| {
        ring.iter()
            .fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |b, p| {
                (b.0.min(p.0), b.1.min(p.1), b.2.max(p.0), b.3.max(p.1))
            })
    };
    let rect = polys
        .iter()
        .find(|p| p.len() == 1)
        .expect("rectangle without hole");
    let (x0, y0, x1, y1) = bbox(&rect[0]);
    for (got, want) in [(x0, 400.0), (y0, 200.0), (x1, 800.0), (y1, 600.0)] {
        assert!(
            (got - want).abs() <= 4.0,
            "rectangle bbox {:?}",
            (x0, y0, x1, y1)
        );
    }
    let ring = polys
        .iter()
        .find(|p| p.len() == 2)
        .expect("square with a hole");
    let (hx0, hy0, hx1, hy1) = bbox(&ring[1]);
    assert!(
        (hx0 - 1340.0).abs() <= 4.0 && (hy1 - 1060.0).abs() <= 4.0,
        "hole {:?}",
        (hx0, hy0, hx1, hy1)
    );
    let area = gj["features"][0]["properties"]["measurements"]["Area µm^2"]
        .as_f64()
        .unwrap();
    assert!(area > 0.0);

    // Overlay and heat map: thumbnail-sized pictures.
    let overlay = image::open(out.join("known.overlay.png")).unwrap();
    let heat = image::open(out.join("known.heatmap.png")).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (2000, 1400));
    assert_eq!((heat.width(), heat.height()), (2000, 1400));
    let px = overlay.to_rgb8().get_pixel(600, 400).0;
    assert!(
        px[0] > px[1] + 20,
        "tumor is tinted red in the overlay: {px:?}"
    );

    // Report.
    let r = json(&out.join("known.report.json"));
    assert_eq!(r["slide"]["format"], "aperio");
    assert_eq!(r["slide"]["level0"]["width"], 2000);
    assert_eq!(r["working_level"]["source_level"], 1);
    assert_eq!(r["working_level"]["mpp"], 2.0);
    assert_eq!(r["model"]["name"], "green-threshold");
    assert_eq!(r["model"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(r["parameters"]["tile"], 64);
    assert_eq!(
        r["tiles"]["run"], r["tiles"]["with_tissue"],
        "only tissue tiles are run"
    );
    // Level 1 is 500×350: 64-px tiles, stride 56 → 9 × 7 = 63 tiles; the
    // white background has no tissue, so only tiles over the two dark shapes count.
    assert_eq!(r["tiles"]["planned"], 63);
    let with_tissue = r["tiles"]["with_tissue"].as_u64().unwrap();
    assert!(
        (12..=24).contains(&with_tissue),
        "{with_tissue} tiles with tissue"
    );
    // Tumor: 400×400 + (400² − 120²) level-0 px of 0.25 µm² = 0.0764 mm².
    let mm2 = r["areas"]["tumor_mm2"].as_f64().unwrap();
    assert!((mm2 - 0.0764).abs() < 0.002, "tumor area {mm2} mm²");
    assert_eq!(r["areas"]["geojson_regions"], 2);
    for stage in [
        "read_decode_thread_sum",
        "inference",
        "stitch_and_write",
        "total",
    ] {
        assert!(r["timings_s"][stage].as_f64().unwrap() >= 0.0, "{stage}");
    }
    let listed: Vec<&str> = r["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 7, "{listed:?}");
    for f in &listed {
        assert!(Path::new(f).exists(), "{f}");
    }
    assert_eq!(r["wsiseg_version"], env!("CARGO_PKG_VERSION"));

    // A PNG mask at another level, as 0/255.
    let o = wsiseg(
        &[
            "segment",
            "known.svs",
            "--model",
            &model,
            "--out",
            "l0",
            "--level",
            "1",
            "--formats",
            "png",
            "--mask-level",
            "0",
            "--mask-values",
            "0255",
        ],
        d,
        &[],
    );
    ok(&o);
    let l0 = image::open(d.join("l0/known.mask.png"))
        .unwrap()
        .into_luma8();
    assert_eq!(l0.dimensions(), (2000, 1400));
    assert_eq!(l0.get_pixel(600, 400).0[0], 255);
    assert_eq!(l0.get_pixel(100, 100).0[0], 0);
    assert!(l0.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
}

#[test]
fn geojson_of_a_synthetic_prediction_rasterizes_back_to_the_mask() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&wsiseg(
        &[
            "synth",
            "--out",
            "s",
            "--seed",
            "303",
            "--size",
            "8192x8192",
        ],
        d,
        &[],
    ));
    let model = repo("models/unet").display().to_string();
    ok(&wsiseg(
        &[
            "segment",
            "s/synth-303.svs",
            "--model",
            &model,
            "--out",
            "o",
            "--formats",
            "png,geojson",
            "--min-area",
            "0",
        ],
        d,
        &[],
    ));
    let mask = image::open(d.join("o/synth-303.mask.png"))
        .unwrap()
        .into_luma8();
    let (w, h) = mask.dimensions();
    let polys = polygons(&json(&d.join("o/synth-303.geojson")));
    assert!(!polys.is_empty());
    for p in &polys {
        assert_valid(p);
    }
    // The working level is 1.0 µm/px = 4 level-0 pixels per mask pixel.
    let raster = rasterize(&polys, w, h, 4.0);
    let score = iou(&raster, mask.as_raw());
    eprintln!(
        "GeoJSON ({} polygons) rasterized vs mask: IoU {score:.5}",
        polys.len()
    );
    assert!(score >= 0.98, "GeoJSON vs mask IoU {score}");
}

#[test]
fn an_interrupted_run_leaves_no_file_with_a_final_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = repo("models/unet").display().to_string();
    let slide = repo("tests/data/default.svs").display().to_string();
    let o = wsiseg(
        &[
            "segment",
            &slide,
            "--model",
            &model,
            "--out",
            "out",
            "--probabilities",
        ],
        d,
        &[("WSISEG_FAIL_AFTER_TILES", "9")],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("stopped on purpose after"));
    let left: Vec<_> = std::fs::read_dir(d.join("out")).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // Outputs from an earlier run that stopped between files are not taken for finished.
    ok(&wsiseg(
        &[
            "segment",
            &slide,
            "--model",
            &model,
            "--out",
            "out",
            "--formats",
            "png",
        ],
        d,
        &[],
    ));
    let o = wsiseg(
        &["segment", &slide, "--model", &model, "--out", "out"],
        d,
        &[],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("default.mask.png exists but") && err.contains("--overwrite"),
        "{err}"
    );
}
