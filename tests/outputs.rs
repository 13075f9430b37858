//! The outputs of `segment`: pyramidal TIFF mask (and its tags), GeoJSON,
//! overlays, report, PNG at another level; what a failing run and a killed
//! run leave behind.

// Test functions read as one scenario each.
#![allow(clippy::too_many_lines)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{
    command, differing, json, read_mask, run, run_ok, stderr, synth, threshold_model, unet,
};
use image::{Rgb, RgbImage};
use serde_json::Value;
use wsiseg_slide::{open, Rect, Size};
use wsiseg_write::{PyramidOptions, PyramidWriter, Reduce, TileCompression};

/// A 2000×1400 slide at 0.5 µm/px, 2 levels (4× apart), white with three
/// dark (green < 128: "tumor" for the threshold model) shapes, all on
/// multiples of 4 level-0 pixels so that they are exact at level 1:
/// a rectangle at x 400..800, y 200..600; a square at x 1200..1600,
/// y 800..1200 with a white hole at x 1340..1460, y 940..1060; and a
/// 40×40 speck at x 1600..1640, y 200..240 (400 µm², under the default
/// `--min-area` of 500 µm²).
fn known_slide(path: &Path) {
    let (w, h) = (2000u32, 1400u32);
    let img = RgbImage::from_fn(w, h, |x, y| {
        let rect = (400..800).contains(&x) && (200..600).contains(&y);
        let ring = (1200..1600).contains(&x)
            && (800..1200).contains(&y)
            && !((1340..1460).contains(&x) && (940..1060).contains(&y));
        let speck = (1600..1640).contains(&x) && (200..240).contains(&y);
        if rect || ring || speck {
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

/// Signed area (shoelace) of a closed ring, in the ring's units².
fn ring_area(ring: &[(f64, f64)]) -> f64 {
    ring.windows(2)
        .map(|p| p[0].0 * p[1].1 - p[1].0 * p[0].1)
        .sum::<f64>()
        / 2.0
}

/// The tags of every page of a pyramidal TIFF, read with the `tiff` crate.
struct Page {
    new_subfile_type: u32,
    size: (u32, u32),
    tile: (u32, u32),
    compression: u16,
    bits: u16,
    samples: u16,
    resolution_ppcm: f64,
    resolution_unit: u16,
    description: Option<String>,
}

fn tiff_pages(path: &Path) -> Vec<Page> {
    use tiff::decoder::Decoder;
    use tiff::tags::Tag;
    let mut d = Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap())).unwrap();
    let mut pages = Vec::new();
    loop {
        let u = |d: &mut Decoder<_>, t| d.get_tag_u32(t).unwrap();
        let rational = d.get_tag(Tag::XResolution).unwrap();
        let resolution_ppcm = match rational {
            tiff::decoder::ifd::Value::Rational(n, dd) => f64::from(n) / f64::from(dd),
            other => panic!("XResolution {other:?}"),
        };
        pages.push(Page {
            new_subfile_type: u(&mut d, Tag::NewSubfileType),
            size: (u(&mut d, Tag::ImageWidth), u(&mut d, Tag::ImageLength)),
            tile: (u(&mut d, Tag::TileWidth), u(&mut d, Tag::TileLength)),
            compression: u(&mut d, Tag::Compression) as u16,
            bits: u(&mut d, Tag::BitsPerSample) as u16,
            samples: u(&mut d, Tag::SamplesPerPixel) as u16,
            resolution_ppcm,
            resolution_unit: u(&mut d, Tag::ResolutionUnit) as u16,
            description: d.get_tag_ascii_string(Tag::ImageDescription).ok(),
        });
        if !d.more_images() {
            break;
        }
        d.next_image().unwrap();
    }
    pages
}

#[test]
fn outputs_of_a_slide_with_known_tumor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    known_slide(&d.join("known.svs"));
    let model = threshold_model().display().to_string();
    let o = run_ok(
        d,
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
            "--device",
            "cpu",
        ],
    );
    let out = d.join("out");

    // PNG and pyramidal TIFF mask: the working level (level 1: 500×350, 2 µm/px).
    let png = read_mask(&out.join("known.mask.png"));
    assert_eq!(png.dimensions(), (500, 350));
    // Exactly the shapes, at level 1: 100² + (100² − 30²) + 10² pixels.
    let want: Vec<u8> = (0..350u32)
        .flat_map(|y| (0..500u32).map(move |x| (x, y)))
        .map(|(x, y)| {
            let tumor = ((100..200).contains(&x) && (50..150).contains(&y))
                || ((300..400).contains(&x)
                    && (200..300).contains(&y)
                    && !((335..365).contains(&x) && (235..265).contains(&y)))
                || ((400..410).contains(&x) && (50..60).contains(&y));
            u8::from(tumor)
        })
        .collect();
    assert_eq!(differing(png.as_raw(), &want), 0, "the mask is the shapes");
    let tiff = open(&out.join("known.mask.tiff")).unwrap();
    assert_eq!(tiff.format(), "generic-tiff");
    assert_eq!(tiff.levels()[0].size, Size::new(500, 350));
    assert_eq!(tiff.levels()[1].size, Size::new(125, 88));
    assert!(
        (tiff.mpp().unwrap().x - 2.0).abs() < 1e-6,
        "{:?}",
        tiff.mpp()
    );
    // A palette image: the stored values are the labels, and OpenSlide (as
    // QuPath, ASAP) shows them in the class colours — background black,
    // tumor red — so its thumbnail is not all black.
    let palette = wsiseg_slide::tiff_palette(&out.join("known.mask.tiff")).expect("a palette TIFF");
    assert_eq!(palette[0], [0, 0, 0]);
    assert_eq!(palette[1], wsiseg_engine::CLASS_COLOURS[1]);
    let level0 = tiff.read_inside(0, Rect::new(0, 0, 500, 350)).unwrap();
    let tiff_labels = wsiseg_slide::PaletteLookup::new(&palette).labels(&level0);
    assert!(
        tiff_labels == *png.as_raw(),
        "TIFF level 0 differs from the PNG mask"
    );
    let smallest = tiff.levels().len() as u32 - 1;
    let size = tiff.levels()[smallest as usize].size;
    let thumb = tiff
        .read_inside(smallest, Rect::new(0, 0, size.w, size.h))
        .unwrap();
    let red = thumb
        .pixels()
        .filter(|p| p.0 == wsiseg_engine::CLASS_COLOURS[1])
        .count();
    let tumor_share = png.as_raw().iter().filter(|&&v| v == 1).count() as f64 / (500.0 * 350.0);
    let red_share = red as f64 / f64::from(size.w * size.h);
    assert!(
        red > 0 && (red_share - tumor_share).abs() < 0.05,
        "thumbnail: {red_share:.3} tumor red against {tumor_share:.3} tumor in the mask"
    );
    let prob = open(&out.join("known.prob.tiff")).unwrap();
    let p = prob.read_inside(0, Rect::new(0, 0, 500, 350)).unwrap();
    // The threshold model's P(tumor) is 1 / (1 + e^-(1 - 2g)), g = green / 255.
    let (inside, outside) = (p.get_pixel(150, 100).0[0], p.get_pixel(20, 20).0[0]);
    assert!(
        inside > 160 && outside < 70,
        "P(tumor) {inside} inside, {outside} outside"
    );

    // The TIFF tags the README names: BigTIFF, levels in the main chain
    // (NewSubfileType 1 for reduced levels), 512-px Deflate tiles, the
    // working level's resolution and the exact downsample.
    let bytes = std::fs::read(out.join("known.mask.tiff")).unwrap();
    assert_eq!(&bytes[..4], b"II\x2b\x00", "little-endian BigTIFF");
    let pages = tiff_pages(&out.join("known.mask.tiff"));
    assert_eq!(pages.len(), 2);
    for (i, page) in pages.iter().enumerate() {
        assert_eq!(page.new_subfile_type, u32::from(i > 0), "page {i}");
        assert_eq!(page.tile, (512, 512));
        assert_eq!(page.compression, 8, "Deflate");
        assert_eq!((page.bits, page.samples), (8, 1));
        assert_eq!(page.resolution_unit, 3, "centimetre");
    }
    assert_eq!(pages[0].size, (500, 350));
    assert_eq!(pages[1].size, (125, 88));
    assert_eq!(pages[0].resolution_ppcm, 5000.0, "2 µm/px");
    assert_eq!(pages[1].resolution_ppcm, 1250.0, "8 µm/px");
    assert_eq!(
        pages[0].description.as_deref(),
        Some(
            format!(
                "wsiseg {} tumor mask of known.svs: level 0 of this file is the slide's level 0 \
                 downsampled by 4.000000; 0 = background, k = class k (background, tumor)",
                env!("CARGO_PKG_VERSION")
            )
            .as_str()
        )
    );
    assert!(pages[1].description.is_none());

    // GeoJSON in level-0 pixels: one rectangle, one square with a hole; the
    // speck is under the default --min-area (500 µm²) and left out.
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
        .position(|p| p.len() == 1)
        .expect("rectangle without hole");
    let (x0, y0, x1, y1) = bbox(&polys[rect][0]);
    for (got, want) in [(x0, 400.0), (y0, 200.0), (x1, 800.0), (y1, 600.0)] {
        assert!(
            (got - want).abs() <= 4.0,
            "rectangle bbox {:?}",
            (x0, y0, x1, y1)
        );
    }
    let ring = polys
        .iter()
        .position(|p| p.len() == 2)
        .expect("square with a hole");
    let (hx0, hy0, hx1, hy1) = bbox(&polys[ring][1]);
    assert!(
        (hx0 - 1340.0).abs() <= 4.0 && (hy1 - 1060.0).abs() <= 4.0,
        "hole {:?}",
        (hx0, hy0, hx1, hy1)
    );
    // Areas: the region's pixels (16 level-0 px² each, 0.25 µm² per
    // level-0 pixel), exactly: 400² and 400² − 120² level-0 px².
    for (i, px2) in [(rect, 160_000.0), (ring, 145_600.0)] {
        let m = &gj["features"][i]["properties"]["measurements"];
        assert_eq!(m["Area (level-0 px^2)"].as_f64(), Some(px2), "{m}");
        assert_eq!(m["Area µm^2"].as_f64(), Some(px2 / 4.0), "{m}");
        assert_eq!(m["Area mm^2"].as_f64(), Some(px2 / 4.0 / 1e6), "{m}");
        // The outline is smoothed, within 0.7 mask pixels of the pixels' edges.
        let drawn: f64 = polys[i].iter().map(|r| ring_area(r)).sum::<f64>().abs();
        assert!(
            (drawn - px2).abs() <= 0.7 * 16.0 * 1600.0,
            "{drawn} vs {px2}"
        );
    }

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
    let glass = overlay.to_rgb8().get_pixel(100, 100).0;
    assert!(
        glass
            .iter()
            .zip([240, 235, 240])
            .all(|(a, b)| a.abs_diff(b) <= 3),
        "glass is left as it is (JPEG aside): {glass:?}"
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
    assert_eq!(r["parameters"]["device"], "cpu");
    assert_eq!(
        r["tiles"]["run"], r["tiles"]["with_tissue"],
        "only tissue tiles are run"
    );
    // Level 1 is 500×350: 64-px tiles, stride 56 → 9 × 7 = 63 tiles; the
    // white background has no tissue, so only tiles over the dark shapes count.
    assert_eq!(r["tiles"]["planned"], 63);
    let with_tissue = r["tiles"]["with_tissue"].as_u64().unwrap();
    assert!(
        (12..=26).contains(&with_tissue),
        "{with_tissue} tiles with tissue"
    );
    // Tumor: 19200 pixels of 4 µm² = 0.0768 mm².
    assert_eq!(r["areas"]["classes"]["tumor"]["pixels"], 19_200);
    let mm2 = r["areas"]["tumor_mm2"].as_f64().unwrap();
    assert!((mm2 - 0.0768).abs() < 1e-12, "tumor area {mm2} mm²");
    assert_eq!(r["areas"]["geojson_regions"], 2);
    // Timings: every stage took time, and the parts fit in the whole.
    let t = |k: &str| r["timings_s"][k].as_f64().unwrap();
    for stage in [
        "open_and_thumbnail",
        "read_decode_thread_sum",
        "inference",
        "stitch_and_write",
        "pipeline_wall",
        "outputs",
        "total",
    ] {
        assert!(t(stage) > 0.0, "{stage}: {}", t(stage));
    }
    assert!(t("inference") <= t("pipeline_wall") && t("stitch_and_write") <= t("pipeline_wall"));
    // Stitching and each format's writer run side by side: the stage's
    // time is its busiest thread's.
    let writers = r["timings_s"]["write"].as_object().unwrap();
    assert!(!writers.is_empty());
    let busiest = writers
        .values()
        .map(|v| v.as_f64().unwrap())
        .fold(t("stitch"), f64::max);
    assert_eq!(busiest, t("stitch_and_write"), "{}", r["timings_s"]);
    assert!(t("waiting_for_model") >= 0.0);
    assert!(
        t("open_and_thumbnail") + t("waiting_for_model") + t("pipeline_wall") + t("outputs")
            <= t("total")
    );
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
    assert!(
        stderr(&o).contains("63 tiles of 64 px, overlap 8"),
        "{}",
        stderr(&o)
    );

    // --min-area 0 keeps the speck: 10 × 10 pixels of 2 µm, 400 µm².
    run_ok(
        d,
        &[
            "segment",
            "known.svs",
            "--model",
            &model,
            "--out",
            "all",
            "--level",
            "1",
            "--formats",
            "geojson",
            "--min-area",
            "0",
            "--device",
            "cpu",
        ],
    );
    let gj = json(&d.join("all/known.geojson"));
    assert_eq!(polygons(&gj).len(), 3, "{gj}");
    let mut areas: Vec<f64> = gj["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["properties"]["measurements"]["Area µm^2"]
                .as_f64()
                .unwrap()
        })
        .collect();
    areas.sort_by(f64::total_cmp);
    assert_eq!(areas, [400.0, 36_400.0, 40_000.0]);

    // A PNG mask at another level, as 0/255.
    run_ok(
        d,
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
            "--device",
            "cpu",
        ],
    );
    let l0 = read_mask(&d.join("l0/known.mask.png"));
    assert_eq!(l0.dimensions(), (2000, 1400));
    assert_eq!(l0.get_pixel(600, 400).0[0], 255);
    assert_eq!(l0.get_pixel(100, 100).0[0], 0);
    assert!(l0.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    // Each level-0 pixel is its level-1 pixel.
    let up: Vec<u8> = (0..1400)
        .flat_map(|y| (0..2000).map(move |x| (x, y)))
        .map(|(x, y)| png.get_pixel(x / 4, y / 4).0[0] * 255)
        .collect();
    assert_eq!(differing(l0.as_raw(), &up), 0);
}

#[test]
fn geojson_of_a_synthetic_prediction_rasterizes_back_to_the_mask() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "303", "8192x8192");
    let model = unet().display().to_string();
    run_ok(
        d,
        &[
            "segment",
            slide.to_str().unwrap(),
            "--model",
            &model,
            "--out",
            "o",
            "--formats",
            "png,geojson",
            "--min-area",
            "0",
            "--device",
            "cpu",
        ],
    );
    let mask = read_mask(&d.join("o/synth-303.mask.png"));
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

/// The final names a default `segment` (with `--probabilities`) of slide
/// NAME writes, report last.
fn final_names(name: &str) -> Vec<String> {
    [
        "mask.png",
        "mask.tiff",
        "prob.tiff",
        "overlay.png",
        "heatmap.png",
        "geojson",
        "report.json",
    ]
    .iter()
    .map(|s| format!("{name}.{s}"))
    .collect()
}

/// Every file under a final name in `out` is complete: it decodes, and it
/// is byte for byte the file of an uninterrupted run in `reference` (the
/// report, which holds timings and paths, is complete JSON with the same
/// slide and areas). Returns the final names present.
fn assert_final_files_complete(out: &Path, reference: &Path, name: &str) -> Vec<String> {
    let mut present = Vec::new();
    for f in final_names(name) {
        let path = out.join(&f);
        if !path.exists() {
            continue;
        }
        if f.ends_with(".png") {
            image::open(&path).unwrap_or_else(|e| panic!("{f} does not decode: {e}"));
        } else if f.ends_with(".tiff") {
            let t = open(&path).unwrap_or_else(|e| panic!("{f} does not open: {e}"));
            let s = t.levels()[0].size;
            t.read_inside(0, Rect::new(0, 0, s.w, s.h)).unwrap();
        }
        if f.ends_with("report.json") {
            let (got, want) = (json(&path), json(&reference.join(&f)));
            assert_eq!(got["slide"], want["slide"], "{f}");
            assert_eq!(got["areas"], want["areas"], "{f}");
        } else {
            let (got, want) = (
                std::fs::read(&path).unwrap(),
                std::fs::read(reference.join(&f)).unwrap(),
            );
            assert!(
                got == want,
                "{f}: {} bytes under its final name, the complete file has {}",
                got.len(),
                want.len()
            );
        }
        present.push(f);
    }
    present
}

/// Waits for `ready` while `child` runs, then kills `child` with SIGKILL,
/// as a crash or the OOM killer would.
fn kill_when(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    common::wait_until(child, what, ready);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed while {what}");
}

/// `wsiseg segment SLIDE --out OUT` of the crash test: the shipped model,
/// every output and the probability map, on the CPU.
fn segment_command(dir: &Path, slide: &Path, out: &str, extra: &[&str]) -> Command {
    let mut c = command(dir);
    c.arg("segment")
        .arg(slide)
        .arg("--model")
        .arg(unet())
        .args(["--out", out, "--probabilities", "--device", "cpu"])
        .args(extra);
    c
}

/// [`segment_command`] started in the background, its output discarded.
fn segment_child(dir: &Path, slide: &Path, out: &str) -> Child {
    segment_command(dir, slide, out, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A real crash: `wsiseg segment` killed with SIGKILL (no cleanup code runs)
/// while tiles stream into its masks, and again in the output phase, as
/// soon as its first final file appears. Temporary `.partial` files may be
/// left; every file under a final name is complete (the uninterrupted run's
/// bytes). Re-running finishes the slide with the same masks: after the
/// first kill as it is (the dead run's lock and temporary files are taken
/// over); after the second, a plain re-run resumes if the run record was
/// renamed before the kill, and otherwise refuses until `--overwrite`
/// (some outputs exist without a record, so it does not guess).
#[test]
fn killed_runs_leave_no_incomplete_file_under_a_final_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 8192² at 0.25 µm/px → 2048² at 1 µm/px: 64 tiles of the shipped model, a few seconds.
    let slide = synth(d, "808", "8192x8192");
    let mut reference = segment_child(d, &slide, "ref");
    assert!(reference.wait().unwrap().success());
    let reference = d.join("ref");
    assert_eq!(
        assert_final_files_complete(&reference, &reference, "synth-808").len(),
        7
    );

    // 1. Killed mid-run: rows of the mask are being written.
    let out = d.join("out");
    let mut child = segment_child(d, &slide, "out");
    // (Under whichever name the mask is being written: a writer that wrote
    // straight to the final name must be caught by the checks below.)
    kill_when(&mut child, "rows reach the PNG mask", || {
        ["synth-808.mask.png.partial", "synth-808.mask.png"]
            .iter()
            .any(|f| std::fs::metadata(out.join(f)).is_ok_and(|m| m.len() > 0))
    });
    assert_eq!(
        assert_final_files_complete(&out, &reference, "synth-808"),
        Vec::<String>::new()
    );
    assert!(
        common::files_in(&out)
            .iter()
            .any(|f| f.ends_with(".partial")),
        "a killed process leaves its temporary files"
    );
    let o = segment_command(d, &slide, "out", &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        assert_final_files_complete(&out, &reference, "synth-808").len(),
        7
    );

    // 2. Killed in the output phase: the first final file has appeared.
    let out = d.join("out2");
    let mut child = segment_child(d, &slide, "out2");
    kill_when(&mut child, "the first final file appears", || {
        final_names("synth-808")
            .iter()
            .any(|f| out.join(f).exists())
    });
    // Every output is finished under a temporary name before the first
    // rename, so the kill lands among the renames or after the last.
    let present = assert_final_files_complete(&out, &reference, "synth-808");
    assert!(!present.is_empty(), "killed after the first rename");
    let recorded = out.join("synth-808.run.json").exists();
    assert!(
        !recorded || present.len() == 7,
        "the run record is renamed last: {present:?}"
    );
    let o = segment_command(d, &slide, "out2", &[]).output().unwrap();
    if recorded {
        assert!(
            o.status.success(),
            "a recorded run is resumed: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("skipped"), "{}", stderr(&o));
    } else {
        assert!(
            !o.status.success(),
            "a plain re-run does not take a half-renamed slide for done"
        );
        assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
        let o = segment_command(d, &slide, "out2", &["--overwrite"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(
        assert_final_files_complete(&out, &reference, "synth-808").len(),
        7
    );
    assert!(
        !common::files_in(&out)
            .iter()
            .any(|f| f.ends_with(".partial")),
        "the finished re-run leaves no temporary file: {:?}",
        common::files_in(&out)
    );
}

/// A slide whose JPEG tile in the middle of the working level is garbage:
/// the run stops there with one `error:` line naming the slide, the level
/// and the tile, and the output folder holds nothing, not even temporary
/// files (the error path removes them).
#[test]
fn a_corrupt_tile_mid_run_is_one_error_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Level 0 (8192², 32 × 32 JPEG tiles of 256 px) is the working level; the
    // thumbnail comes from level 1 (2048²), which stays intact.
    let slide = synth(d, "909", "8192x8192");
    let mut bytes = std::fs::read(&slide).unwrap();
    let range = common::tile_bytes(&slide, 0, 32 * 16 + 16);
    bytes[range].fill(0);
    std::fs::write(&slide, bytes).unwrap();
    let model = threshold_model();
    let o = run(
        d,
        &[
            "segment",
            slide.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--out",
            "out",
            "--level",
            "0",
            "--tile",
            "512",
            "--probabilities",
            "--device",
            "cpu",
        ],
    );
    assert!(!o.status.success());
    let errors = common::error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(
        errors[0].contains("synth-909.svs: corrupt or unreadable slide (level 0, JPEG tile 528"),
        "{}",
        errors[0]
    );
    assert!(
        stderr(&o).contains("tiles have tissue"),
        "it failed mid-run: {}",
        stderr(&o)
    );
    assert_eq!(common::files_in(&d.join("out")), Vec::<String>::new());
}

/// `--bad-tiles background`: the same corrupt tile no longer fails the
/// slide; the run warns, completes (exit 0), lists the tile in the report
/// with its level-0 rectangle, and every working tile that read it is
/// background in the mask. On an intact copy of the slide the flag changes
/// no byte of the mask.
#[test]
fn bad_tiles_background_completes_warns_and_lists_the_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "909", "8192x8192");
    let intact = d.join("intact.svs");
    std::fs::copy(&slide, &intact).unwrap();
    let model = threshold_model();
    let segment = |slide: &Path, out: &str, extra: &[&str]| {
        let mut args = vec![
            "segment",
            slide.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--out",
            out,
            "--level",
            "0",
            "--tile",
            "512",
            "--device",
            "cpu",
            "--formats",
            "png,report",
        ];
        args.extend_from_slice(extra);
        run(d, &args)
    };
    for (out, extra) in [("a", &[][..]), ("b", &["--bad-tiles", "background"][..])] {
        let o = segment(&intact, out, extra);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!stderr(&o).contains("corrupt"), "{}", stderr(&o));
    }
    let (a, b) = (
        std::fs::read(d.join("a/intact.mask.png")).unwrap(),
        std::fs::read(d.join("b/intact.mask.png")).unwrap(),
    );
    assert_eq!(
        a, b,
        "--bad-tiles background changed an intact slide's mask"
    );
    // The stored tile (32 × 32 of 256 px at level 0) with the most tumor
    // pixels in the intact mask is the one to corrupt.
    let whole = read_mask(&d.join("a/intact.mask.png"));
    let positives = |m: &image::GrayImage, n: u32| {
        let (x0, y0) = (n % 32 * 256, n / 32 * 256);
        (y0..y0 + 256)
            .flat_map(|y| (x0..x0 + 256).map(move |x| (x, y)))
            .filter(|&(x, y)| m.get_pixel(x, y).0[0] != 0)
            .count()
    };
    let tile = (0..32 * 32).max_by_key(|&n| positives(&whole, n)).unwrap();
    assert!(positives(&whole, tile) > 1000, "the slide holds tumor");
    let mut bytes = std::fs::read(&slide).unwrap();
    let range = common::tile_bytes(&slide, 0, tile as usize);
    bytes[range].fill(0);
    std::fs::write(&slide, bytes).unwrap();
    let o = segment(&slide, "bg", &["--bad-tiles", "background"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (x, y) = (tile % 32 * 256, tile / 32 * 256);
    assert!(
        stderr(&o).contains(&format!("synth-909.svs: 1 corrupt tile(s) made background (bad tiles: background): level 0 tile {tile} (level-0 x {x}, y {y}, 256×256)")),
        "{}",
        stderr(&o)
    );
    let report = common::json(&d.join("bg/synth-909.report.json"));
    let bad = report["bad_tiles"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{report}");
    assert_eq!(bad[0]["tile"], tile);
    assert_eq!(
        bad[0]["level0"],
        serde_json::json!({"x": x, "y": y, "width": 256, "height": 256})
    );
    assert!(bad[0]["error"]
        .as_str()
        .unwrap()
        .contains(&format!("JPEG tile {tile}")));
    assert_eq!(report["parameters"]["bad_tiles"], "background");
    // The bad tile's pixels are background now.
    let mask = read_mask(&d.join("bg/synth-909.mask.png"));
    assert_eq!(positives(&mask, tile), 0);
}

/// A model whose output is NaN or Inf never makes a mask: refused at load
/// when it is NaN on the dry run's white tile (with the precision and a
/// suggestion), and mid-run when only tissue gives NaN, naming the tile's
/// place on the slide; non-zero exit, one error line, no file left.
#[test]
fn a_model_giving_nan_is_an_error_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = common::repo("tests/data/default.svs");
    let segment = |model: &str, out: &str, extra: &[&str]| {
        let model = common::repo(&format!("tests/data/models/{model}"));
        let extra = [&["--probabilities", "--device", "cpu"][..], extra].concat();
        let o = common::segment(d, &slide, &model, out, &extra);
        assert!(!o.status.success(), "{}", stderr(&o));
        let errors = common::error_lines(&o);
        assert_eq!(errors.len(), 1, "{}", stderr(&o));
        assert_eq!(common::files_in(&d.join(out)), Vec::<String>::new());
        errors[0].clone()
    };

    let e = segment("nan-all", "a", &[]);
    assert_eq!(
        e,
        format!(
            "error: {}: the model's output is NaN or Inf in f32 on a white test tile",
            common::repo("tests/data/models/nan-all/model.pt").display()
        )
    );
    let e = segment("nan-all", "b", &["--precision", "bf16"]);
    assert!(
        e.ends_with(
            "NaN or Inf in bf16 on a white test tile; try --precision f32 or --precision bf16"
        ),
        "{e}"
    );

    // Only tissue (green < 128) gives NaN: the white dry run passes, the
    // first batch with tissue fails, and the error names that tile.
    let e = segment("nan-tissue", "c", &[]);
    let prefix = format!(
        "error: {}: the model {} gave NaN or Inf in f32 for the tile covering level-0 (",
        slide.display(),
        common::repo("tests/data/models/nan-tissue/model.pt").display()
    );
    assert!(e.starts_with(&prefix), "{e}");
    assert!(
        e.ends_with("px; no mask is made from it (in f32: the model itself produces them)"),
        "{e}"
    );
    // The tile lies on the slide (2220×2967) and is one 56-px core (tile 64,
    // overlap 8) or less at the edge.
    let numbers: Vec<i64> = e[prefix.len()..]
        .split(|c: char| !c.is_ascii_digit() && c != '-')
        .filter_map(|t| t.parse().ok())
        .collect();
    let [x, y, w, h] = numbers[..4] else {
        panic!("{e}")
    };
    assert!((0..2220).contains(&x) && (0..2967).contains(&y), "{e}");
    assert!((1..=56).contains(&w) && (1..=56).contains(&h), "{e}");
}

/// Outputs of an earlier run that stopped between files are not taken for
/// a finished slide.
#[test]
fn some_outputs_present_is_an_error_until_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = common::repo("tests/data/default.svs").display().to_string();
    let model = threshold_model().display().to_string();
    let args = |formats: &str| {
        vec![
            "segment".to_string(),
            slide.clone(),
            "--model".into(),
            model.clone(),
            "--out".into(),
            "out".into(),
            "--formats".into(),
            formats.into(),
            "--device".into(),
            "cpu".into(),
        ]
    };
    run_ok(d, &args("png"));
    let png = std::fs::read(d.join("out/default.mask.png")).unwrap();
    // A finished run that made fewer outputs than are asked for now.
    let o = run(d, &args("png,tiff,geojson,overlay,report"));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("default.mask.tiff was not made by the recorded run")
            && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(
        common::files_in(&d.join("out")),
        ["default.mask.png", "default.run.json"]
    );
    // A run that stopped before its record: the mask alone is not done.
    std::fs::remove_file(d.join("out/default.run.json")).unwrap();
    for formats in ["png", "png,tiff,geojson,overlay,report"] {
        let o = run(d, &args(formats));
        assert!(!o.status.success(), "{formats}");
        let err = stderr(&o);
        assert!(
            err.contains("default.mask.png exists but") && err.contains("--overwrite"),
            "{err}"
        );
    }
    assert_eq!(common::files_in(&d.join("out")), ["default.mask.png"]);
    assert_eq!(std::fs::read(d.join("out/default.mask.png")).unwrap(), png);
}
