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

/// `wsiseg eval --pred pred --truth truth --overwrite EXTRA…` in `d`, which
/// must succeed; the first slide's entry of eval.json.
fn eval_slide(d: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["eval", "--pred", "pred", "--truth", "truth", "--overwrite"];
    args.extend_from_slice(extra);
    let o = wsiseg(&args, d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    json(&d.join("pred/eval.json"))["slides"][0].clone()
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
    // Worst first: c (Dice 0), a, then the perfect ones by name.
    let order: Vec<&str> = v["slides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slide"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["c", "a", "b", "d"]);
    let tumor = |i: usize| &v["slides"][[1, 2, 0, 3][i]]["classes"]["tumor"];
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
            .nth(2)
            .unwrap()
            .starts_with("\"a\",\"tumor\",0.4444"),
        "{csv}"
    );
    // Pooled ("micro") scores: TP 20 + 0 + 0 + 12, FP 30, FN 20 + 100.
    let micro = &v["micro"]["tumor"];
    assert!(
        close(&micro["dice"], 64.0 / (64.0 + 30.0 + 120.0)),
        "{micro}"
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

/// Lesion-level detection on a truth of 5 separate regions: a prediction
/// that covers 4 of them (one only partly, one by a single pixel) and adds
/// one region of its own is found 4, missed 1, false 1 — and the counts by
/// size bin add up.
#[test]
fn lesion_counts_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Truth: five 6×6 squares at x = 2, 12, 22, 32, 42 (y 2..8).
    let square = |x: u32, y: u32, x0: u32| (x0..x0 + 6).contains(&x) && (2..8).contains(&y);
    save(d, "truth/s.png", 60, 20, |x, y| {
        u8::from([2, 12, 22, 32, 42].iter().any(|&x0| square(x, y, x0)))
    });
    // Prediction: squares 1 and 2 whole, square 3's left half, one pixel of
    // square 4, square 5 missed; a false 3×3 region at (50, 14).
    save(d, "pred/s.mask.png", 60, 20, |x, y| {
        let hit = square(x, y, 2)
            || square(x, y, 12)
            || (square(x, y, 22) && x < 25)
            || (x == 35 && y == 5);
        let false_region = (50..53).contains(&x) && (14..17).contains(&y);
        u8::from(hit || false_region)
    });
    let o = wsiseg(&["eval", "--pred", "pred", "--truth", "truth"], d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&d.join("pred/eval.json"));
    let l = &v["slides"][0]["lesions"];
    assert_eq!(l["truth_regions"], 5, "{l}");
    assert_eq!(l["found"], 4, "{l}");
    assert_eq!(l["missed"], 1, "{l}");
    assert_eq!(l["predicted_regions"], 5, "{l}");
    assert_eq!(l["false"], 1, "{l}");
    // No mpp declared: bins in pixels; all these regions are < 1000 px.
    assert_eq!(l["by_size"][0]["size"], "< 1000 px");
    assert_eq!(
        (
            l["by_size"][0]["found"].as_u64(),
            l["by_size"][0]["missed"].as_u64(),
            l["by_size"][0]["false"].as_u64()
        ),
        (Some(4), Some(1), Some(1))
    );
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("4 of 5 truth regions found, 1 missed, 1 false"),
        "{table}"
    );
}

/// The boundary F-score, computed here independently (every boundary pixel
/// against every boundary pixel of the other mask): 1 for identical masks,
/// and for a disc shifted by k pixels the value this computes.
#[test]
fn boundary_f_score_against_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (w, h) = (80u32, 60u32);
    let disc = |x: u32, y: u32, cx: i64| {
        let (dx, dy) = (i64::from(x) - cx, i64::from(y) - 30);
        dx * dx + dy * dy <= 15 * 15
    };
    // Boundary: tumor with a background 4-neighbour inside the image.
    let boundary = |m: &dyn Fn(u32, u32) -> bool| -> Vec<(i64, i64)> {
        let mut b = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let at = |xx: i64, yy: i64| {
                    if xx < 0 || yy < 0 || xx >= i64::from(w) || yy >= i64::from(h) {
                        m(x, y)
                    } else {
                        m(xx as u32, yy as u32)
                    }
                };
                let (xi, yi) = (i64::from(x), i64::from(y));
                if m(x, y)
                    && [
                        at(xi - 1, yi),
                        at(xi + 1, yi),
                        at(xi, yi - 1),
                        at(xi, yi + 1),
                    ]
                    .contains(&false)
                {
                    b.push((xi, yi));
                }
            }
        }
        b
    };
    let expected = |k: i64, t: i64| {
        let a = boundary(&|x, y| disc(x, y, 40));
        let b = boundary(&|x, y| disc(x, y, 40 + k));
        let near = |p: &(i64, i64), q: &[(i64, i64)]| {
            q.iter()
                .any(|r| (p.0 - r.0).abs() <= t && (p.1 - r.1).abs() <= t)
        };
        let precision = b.iter().filter(|p| near(p, &a)).count() as f64 / b.len() as f64;
        let recall = a.iter().filter(|p| near(p, &b)).count() as f64 / a.len() as f64;
        2.0 * precision * recall / (precision + recall)
    };
    save(d, "truth/s.png", w, h, |x, y| u8::from(disc(x, y, 40)));
    for (k, t) in [(0i64, 2u32), (3, 2), (5, 1), (5, 5)] {
        save(d, "pred/s.mask.png", w, h, |x, y| {
            u8::from(disc(x, y, 40 + k))
        });
        let tol = t.to_string();
        let bf = eval_slide(d, &["--boundary-tolerance", &tol])["boundary"]["f_score"]
            .as_f64()
            .unwrap();
        let want = expected(k, i64::from(t));
        assert!(
            (bf - want).abs() < 1e-12,
            "shift {k} tolerance {t}: {bf} vs {want}"
        );
        if k == 0 {
            assert_eq!(bf, 1.0);
        }
        if k > i64::from(t) {
            assert!(bf < 0.9, "shift {k} tolerance {t}: {bf}");
        }
    }
}

/// A probability map where P = v/255 on exactly that share of truth tumor
/// (column v, the top v of 255 rows) has an expected calibration error of
/// 0; one that says 0.9 everywhere on the same truth does not.
#[test]
fn calibration_of_a_perfectly_calibrated_map_is_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    save(d, "truth/s.png", 256, 255, |x, y| u8::from(y < x));
    save(d, "pred/s.mask.png", 256, 255, |x, _| u8::from(x >= 128));
    save(d, "pred/s.prob.png", 256, 255, |x, _| x as u8);
    let run = |prob: &str| eval_slide(d, &["--prob", prob])["calibration"].clone();
    let c = run("pred/s.prob.png");
    assert!(c["ece"].as_f64().unwrap() < 1e-9, "{c}");
    assert_eq!(c["bins"].as_array().unwrap().len(), 10);
    let pixels: u64 = c["bins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pixels"].as_u64().unwrap())
        .sum();
    assert_eq!(pixels, 256 * 255);
    save(d, "flat.png", 256, 255, |_, _| 230);
    let c = run("flat.png");
    // Truth tumor share: Σ_x x / (256·255) = 0.5 (x = 0..255 of 255 rows).
    let share = (0..256).map(|x: u32| x.min(255)).sum::<u32>() as f64 / (256.0 * 255.0);
    assert!(
        (c["ece"].as_f64().unwrap() - (230.0 / 255.0 - share)).abs() < 1e-9,
        "{c}"
    );
    // Without a probability map (auto finds no NAME.prob.tiff): null.
    let o = wsiseg(
        &["eval", "--pred", "pred", "--truth", "truth", "--overwrite"],
        d,
    );
    assert!(o.status.success());
    assert!(json(&d.join("pred/eval.json"))["slides"][0]["calibration"].is_null());
}

/// One truth three ways for a `(pw, ph)` prediction of `scale` level-0
/// pixels per pixel — `truth/synth-31.png` drawn at the prediction's pixels,
/// `xml/synth-31.xml` (ASAP) and `geo/synth-31.geojson` in level-0 pixels:
/// tumor rectangle A with hole H, and rectangle B (ASAP group `b_group`);
/// the truth's tumor pixels with B tumor, and without.
fn draw_truths(d: &Path, (pw, ph): (u32, u32), scale: f64, b_group: &str) -> [u64; 2] {
    // Rectangles in mask pixels [x0, x1) × [y0, y1): tumor A with hole H, tumor B.
    let (a, h, b) = (
        [pw / 8, pw / 2, ph / 8, ph / 2],
        [pw / 4, pw / 3, ph / 4, ph / 3],
        [pw * 5 / 8, pw * 7 / 8, ph / 2, ph * 7 / 8],
    );
    let inside = |r: [u32; 4], x: u32, y: u32| x >= r[0] && x < r[1] && y >= r[2] && y < r[3];
    save(d, "truth/synth-31.png", pw, ph, |x, y| {
        u8::from((inside(a, x, y) && !inside(h, x, y)) || inside(b, x, y))
    });
    let corners = |r: [u32; 4]| {
        let [x0, x1, y0, y1] = r.map(|v| f64::from(v) * scale);
        [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    };
    let asap = |r: [u32; 4], group: &str| {
        let coords: String = corners(r)
            .iter()
            .enumerate()
            .map(|(i, (x, y))| format!("<Coordinate Order=\"{i}\" X=\"{x}\" Y=\"{y}\"/>"))
            .collect();
        format!("<Annotation Name=\"r\" Type=\"Polygon\" PartOfGroup=\"{group}\"><Coordinates>{coords}</Coordinates></Annotation>")
    };
    let xml = format!(
            "<?xml version=\"1.0\"?><ASAP_Annotations><Annotations>{}{}{}\
             <Annotation Name=\"d\" Type=\"Dot\" PartOfGroup=\"_0\"><Coordinates><Coordinate Order=\"0\" X=\"5\" Y=\"5\"/></Coordinates></Annotation>\
             </Annotations><AnnotationGroups/></ASAP_Annotations>",
            asap(a, "_0"),
            asap(h, "_2"),
            asap(b, b_group)
    );
    std::fs::create_dir_all(d.join("xml")).unwrap();
    std::fs::write(d.join("xml/synth-31.xml"), xml).unwrap();
    let ring = |r: [u32; 4]| {
        let mut c: Vec<[f64; 2]> = corners(r).iter().map(|&(x, y)| [x, y]).collect();
        c.push(c[0]);
        c
    };
    let geojson = serde_json::json!({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
         "geometry": {"type": "Polygon", "coordinates": [ring(a), ring(h)]}},
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring(b)]}},
    ]});
    std::fs::create_dir_all(d.join("geo")).unwrap();
    std::fs::write(d.join("geo/synth-31.geojson"), geojson.to_string()).unwrap();

    let area = |r: [u32; 4]| u64::from((r[1] - r[0]) * (r[3] - r[2]));
    [area(a) - area(h) + area(b), area(a) - area(h)]
}

/// Ground truth drawn as polygons in the slide's level-0 pixels — ASAP XML
/// (CAMELYON's groups, an exclusion cut out of a tumor region, a dot) or
/// QuPath GeoJSON (a hole as an inner ring) — scores a wsiseg prediction
/// exactly as the same truth drawn as a mask at the prediction's resolution;
/// truth folders pair NAME.xml / NAME.geojson; an unlabelled class and a
/// prediction that does not declare its scale are one-line errors.
#[test]
fn annotations_score_like_the_same_truth_as_a_mask() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = common::synth(d, "31", "2048x1536");
    let o = common::segment(
        d,
        &slide,
        &common::unet(),
        "pred",
        &["--device", "cpu", "--formats", "png,report"],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let (pw, ph) = image::image_dimensions(d.join("pred/synth-31.mask.png")).unwrap();
    let working = &json(&d.join("pred/synth-31.report.json"))["working_level"];
    // Level-0 pixels per mask pixel, as the report declares it.
    let scale = working["downsample_from_level0"].as_f64().unwrap()
        * working["width"].as_f64().unwrap()
        / f64::from(pw);
    let [tumor, without_b] = draw_truths(d, (pw, ph), scale, "_1");

    let classes = |truth: &str, out: &str| {
        let o = wsiseg(
            &["eval", "--pred", "pred", "--truth", truth, "--out", out],
            d,
        );
        assert!(o.status.success(), "{truth}: {}", common::stderr(&o));
        let slide = json(&d.join(out).join("eval.json"))["slides"][0].clone();
        assert!(slide["truth"].as_str().unwrap().contains(truth), "{slide}");
        slide["classes"].clone()
    };
    let mask = classes("truth", "e-mask");
    assert_eq!(mask["tumor"]["true_pixels"].as_u64(), Some(tumor), "{mask}");
    assert_eq!(classes("xml", "e-xml"), mask);
    assert_eq!(classes("geo", "e-geo"), mask);

    // A group with no label: one error naming the file and the group.
    draw_truths(d, (pw, ph), scale, "Stroma");
    let o = wsiseg(
        &["eval", "--pred", "pred", "--truth", "xml", "--out", "e-x"],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = common::stderr(&o);
    assert!(
        err.contains("xml/synth-31.xml: annotation class 'Stroma' has no label")
            && err.contains("--truth-labels 'Stroma=1'"),
        "{err}"
    );
    assert!(!d.join("e-x/eval.json").exists());
    // Labelled background, B is no longer tumor.
    let o = wsiseg(
        &[
            "eval",
            "--pred",
            "pred",
            "--truth",
            "xml",
            "--out",
            "e-s",
            "--truth-labels",
            "Stroma=0",
        ],
        d,
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let s = json(&d.join("e-s/eval.json"))["slides"][0]["classes"].clone();
    assert_eq!(s["tumor"]["true_pixels"].as_u64(), Some(without_b));

    // A mask that does not say its scale cannot be matched to level-0 polygons.
    std::fs::create_dir_all(d.join("bare")).unwrap();
    std::fs::copy(d.join("pred/synth-31.mask.png"), d.join("bare/x.png")).unwrap();
    let o = wsiseg(
        &[
            "eval",
            "--pred",
            "bare/x.png",
            "--truth",
            "geo/synth-31.geojson",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("geo/synth-31.geojson: annotations are in the slide's level-0 pixels, but bare/x.png does not declare its downsample"),
        "{}",
        common::stderr(&o)
    );
}

/// `--formats asap` writes the regions of NAME.geojson as ASAP annotations
/// (NAME.xml; holes joined to their region by keyholes): as ground truth
/// both give the same pixel counts, which match the mask itself closely.
#[test]
fn asap_output_holds_the_geojson_regions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = common::synth(d, "36", "3072x2048");
    let o = common::segment(
        d,
        &slide,
        &common::unet(),
        "out",
        &["--device", "cpu", "--formats", "png,geojson,asap,report"],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let geojson = json(&d.join("out/synth-36.geojson"));
    let features = geojson["features"].as_array().unwrap();
    let holes: usize = features
        .iter()
        .map(|f| f["geometry"]["coordinates"].as_array().unwrap().len() - 1)
        .sum();
    assert!(holes > 0, "seed 36 has a region with a hole");
    let xml = std::fs::read_to_string(d.join("out/synth-36.xml")).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\"?>\n<ASAP_Annotations>"));
    assert_eq!(
        xml.matches("<Annotation ").count(),
        features.len(),
        "one annotation per region"
    );
    assert!(xml.contains("PartOfGroup=\"tumor\""), "{xml}");
    // Vertices: each ring's (GeoJSON repeats the first), plus two per hole.
    let rings: usize = features
        .iter()
        .flat_map(|f| f["geometry"]["coordinates"].as_array().unwrap())
        .map(|r| r.as_array().unwrap().len() - 1)
        .sum();
    assert_eq!(xml.matches("<Coordinate ").count(), rings + 2 * holes);
    let report = json(&d.join("out/synth-36.report.json"));
    let files: Vec<&str> = report["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("synth-36.xml")),
        "{files:?}"
    );
    let classes = |truth: &str, out: &str| {
        let o = wsiseg(
            &[
                "eval",
                "--pred",
                "out/synth-36.mask.png",
                "--truth",
                truth,
                "--out",
                out,
            ],
            d,
        );
        assert!(o.status.success(), "{truth}: {}", common::stderr(&o));
        json(&d.join(out).join("eval.json"))["slides"][0]["classes"].clone()
    };
    let from_xml = classes("out/synth-36.xml", "e-xml");
    assert_eq!(from_xml, classes("out/synth-36.geojson", "e-geo"));
    let dice = from_xml["tumor"]["dice"].as_f64().unwrap();
    assert!(dice > 0.99, "{from_xml}");
    eprintln!(
        "regions {}, holes {holes}, Dice against the mask {dice:.4}",
        features.len()
    );
}
