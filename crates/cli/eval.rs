//! `wsiseg eval`: per-slide and mean scores of predicted masks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use wsiseg_eval::{evaluate, is_annotation_file, Confusion, Evaluation, Labels, Options, Scores};

use crate::args::EvalArgs;

const MASK_EXTENSIONS: &[&str] = &["png", "tif", "tiff"];

/// The slide name a mask file belongs to: `NAME.mask.png`, `NAME.truth.tiff`,
/// `NAME.tiff` → `NAME`.
fn slide_key(path: &Path) -> String {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    for suffix in [".mask", ".truth", "_mask", "_truth"] {
        if let Some(s) = stem.strip_suffix(suffix) {
            return s.to_string();
        }
    }
    stem.into_owned()
}

/// How much a file looks like the mask of its slide: wsiseg's own PNG mask
/// first, then its TIFF mask, then any image, then (a truth folder's)
/// annotations; overlays, heat maps and probability maps are not masks.
fn mask_rank(path: &Path, annotations: bool) -> Option<u8> {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if annotations && is_annotation_file(path) {
        return Some(3);
    }
    if !MASK_EXTENSIONS.contains(&ext.as_str()) {
        return None;
    }
    if [".overlay", ".heatmap", ".prob"]
        .iter()
        .any(|s| stem.ends_with(s))
    {
        return None;
    }
    Some(match (stem.ends_with(".mask"), ext.as_str()) {
        (true, "png") => 0,
        (true, _) => 1,
        _ => 2,
    })
}

/// The masks of a folder by slide name; with `annotations` (a truth
/// folder), ASAP XML and GeoJSON files too, where no mask image is.
fn masks_in(dir: &Path, annotations: bool) -> Result<BTreeMap<String, PathBuf>> {
    let mut found: BTreeMap<String, (u8, PathBuf)> = BTreeMap::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list folder", dir.display()))?
    {
        let path = entry
            .with_context(|| format!("{}: cannot list folder", dir.display()))?
            .path();
        let Some(rank) = mask_rank(&path, annotations).filter(|_| path.is_file()) else {
            continue;
        };
        match found.get(&slide_key(&path)) {
            Some((r, other)) if *r == rank => {
                bail!(
                    "{} and {} are masks of the same slide",
                    other.display(),
                    path.display()
                )
            }
            Some((r, _)) if *r < rank => {}
            _ => {
                found.insert(slide_key(&path), (rank, path));
            }
        }
    }
    Ok(found.into_iter().map(|(k, (_, p))| (k, p)).collect())
}

/// (name, prediction, truth) triples.
/// The (slide, prediction, truth) triples to score, and the slides of the
/// truth folder that have no prediction.
type Pairs = (Vec<(String, PathBuf, PathBuf)>, Vec<String>);

fn pairs(pred: &Path, truth: &Path) -> Result<Pairs> {
    for p in [pred, truth] {
        if !p.exists() {
            bail!("{}: no such file or folder", p.display());
        }
    }
    match (pred.is_dir(), truth.is_dir()) {
        (false, false) => Ok((
            vec![(slide_key(pred), pred.into(), truth.into())],
            Vec::new(),
        )),
        (false, true) => {
            let key = slide_key(pred);
            let t = masks_in(truth, true)?.remove(&key).with_context(|| {
                format!(
                    "{}: no truth mask for {key} in {}",
                    pred.display(),
                    truth.display()
                )
            })?;
            Ok((vec![(key, pred.into(), t)], Vec::new()))
        }
        (true, false) => bail!("--pred is a folder, so --truth must be a folder too"),
        (true, true) => {
            let preds = masks_in(pred, false)?;
            let mut truths = masks_in(truth, true)?;
            if preds.is_empty() {
                bail!("{}: no masks (PNG or TIFF) in this folder", pred.display());
            }
            let missing: Vec<&str> = preds
                .keys()
                .filter(|k| !truths.contains_key(*k))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                bail!(
                    "{}: no truth mask for {}",
                    truth.display(),
                    missing.join(", ")
                );
            }
            let pairs = preds
                .into_iter()
                .map(|(k, p)| {
                    let t = truths.remove(&k).expect("checked above");
                    (k, p, t)
                })
                .collect();
            // What is left: truth masks no prediction answers.
            Ok((pairs, truths.into_keys().collect()))
        }
    }
}

struct Row {
    name: String,
    pred: PathBuf,
    truth: PathBuf,
    prob: Option<PathBuf>,
    scores: Vec<Scores>,
    eval: Evaluation,
}

impl Row {
    /// Tumor Dice (class 1), the ranking key: worst first.
    fn dice(&self) -> f64 {
        self.scores.first().map_or(1.0, |s| s.dice)
    }
    /// Square millimetres per pixel, when the prediction declares its mpp.
    fn mm2_per_pixel(&self) -> Option<f64> {
        self.figures().mm2_per_pixel()
    }
    /// What eval.json says of this slide.
    fn figures(&self) -> wsiseg_eval::SlideEvaluation<'_> {
        wsiseg_eval::SlideEvaluation {
            name: &self.name,
            pred: &self.pred,
            truth: &self.truth,
            prob: self.prob.as_deref(),
            scores: &self.scores,
            eval: &self.eval,
        }
    }
}

/// The probability map for `pred`, as `--prob` asks.
fn probability_map(args: &EvalArgs, pred: &Path, key: &str) -> Option<PathBuf> {
    match args.prob.as_str() {
        "none" => None,
        "auto" => {
            let dir = pred.parent()?;
            let p = dir.join(format!("{key}.prob.tiff"));
            p.is_file().then_some(p)
        }
        path => {
            let p = PathBuf::from(path);
            if p.is_dir() {
                Some(p.join(format!("{key}.prob.tiff"))).filter(|p| p.is_file())
            } else {
                Some(p)
            }
        }
    }
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let (pairs, missing) = pairs(&args.pred, &args.truth)?;
    check_missing(args, pairs.len(), &missing)?;
    let out = match &args.out {
        Some(o) => o.clone(),
        None if args.pred.is_dir() => args.pred.clone(),
        None => args
            .pred
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let (csv_path, json_path) = (out.join("eval.csv"), out.join("eval.json"));
    if !args.overwrite {
        for p in [&csv_path, &json_path] {
            if p.exists() {
                bail!(
                    "{}: already exists (use --overwrite to replace it, or --out)",
                    p.display()
                );
            }
        }
    }
    let mut rows = score_all(args, pairs)?;
    // Worst first: the slides to look at lead every table.
    rows.sort_by(|a, b| a.dice().total_cmp(&b.dice()).then(a.name.cmp(&b.name)));
    let classes = rows.iter().map(|r| r.scores.len()).max().unwrap_or(1);
    let name_of = |k: usize| {
        args.classes
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("class {k}"))
    };
    let mut pooled = Confusion::default();
    for r in &rows {
        pooled.merge(&r.eval.confusion);
    }
    print!("{}", table(&rows, classes, &name_of, &pooled));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("{}: cannot create folder", out.display()))?;
    wsiseg_engine::write_atomic(&csv_path, csv(&rows, classes, &name_of).as_bytes())?;
    let mut report = json(&rows, classes, &name_of, &pooled, args.boundary_tolerance);
    report["missing_predictions"] = serde_json::json!(missing);
    wsiseg_engine::write_atomic(
        &json_path,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    tracing::info!("wrote {} and {}", csv_path.display(), json_path.display());
    // A segment output folder: its page shows the metrics now.
    if out.join("index.html").is_file() {
        wsiseg_engine::write_index(&out)?;
    }
    Ok(())
}

/// Scores every pair; every failure is one error line, and the run fails.
fn score_all(args: &EvalArgs, pairs: Vec<(String, PathBuf, PathBuf)>) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (name, pred, truth) in pairs {
        let prob = probability_map(args, &pred, &name);
        let opts = Options {
            boundary_tolerance: args.boundary_tolerance,
            probabilities: prob.clone(),
            calibration_bins: 10,
            labels: Labels {
                explicit: args.truth_labels.clone(),
                classes: args.classes.clone(),
            },
        };
        match evaluate(&pred, &truth, &opts) {
            Ok(eval) => {
                rows.push(Row {
                    name,
                    scores: eval.class_scores(args.classes.len()),
                    pred,
                    truth,
                    prob,
                    eval,
                });
            }
            Err(e) => failures.push(crate::errors::eval_context(e)),
        }
    }
    if !failures.is_empty() {
        let count = failures.len();
        for e in &failures[..count - 1] {
            crate::errors::report_error(e);
        }
        return Err(failures.pop().expect("non-empty"));
    }
    Ok(rows)
}

/// Truth masks without a prediction: an error, or with --allow-missing a
/// warning that lists them.
fn check_missing(args: &EvalArgs, scored: usize, missing: &[String]) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    let listed = missing.join(", ");
    let total = missing.len() + scored;
    if !args.allow_missing {
        bail!(
            "{}: no prediction for {} of the {total} truth masks ({listed}); --allow-missing scores the others and lists these",
            args.pred.display(),
            missing.len(),
        );
    }
    tracing::warn!(
        "{}: no prediction for {} of the {total} truth masks, not scored: {listed}",
        args.pred.display(),
        missing.len(),
    );
    Ok(())
}

/// Mean of class `k`'s scores over the slides (None values skipped).
fn mean(rows: &[Row], k: usize, get: impl Fn(&Scores) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.scores.get(k).and_then(&get))
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

type Getter = fn(&Scores) -> Option<f64>;
const METRICS: [(&str, Getter); 4] = [
    ("dice", |s| Some(s.dice)),
    ("iou", |s| Some(s.iou)),
    ("precision", |s| s.precision),
    ("recall", |s| s.recall),
];

fn fmt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "—".into())
}

fn table(
    rows: &[Row],
    classes: usize,
    name_of: &dyn Fn(usize) -> String,
    pooled: &Confusion,
) -> String {
    use std::fmt::Write;
    let width = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(14);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<width$}  {:<10} {:>7} {:>7} {:>9} {:>7}  {:>13} {:>6} {:>7} {:>7} {:>10} {:>10}",
        "slide (worst first)",
        "class",
        "Dice",
        "IoU",
        "precision",
        "recall",
        "lesions found",
        "false",
        "BF",
        "ECE",
        "FP area",
        "FN area"
    );
    for r in rows {
        let l = &r.eval.lesions;
        let (fp, fn_) = r.eval.confusion.tumor_errors();
        let area = |px: u64| match r.mm2_per_pixel() {
            Some(k) => format!("{:.3} mm²", px as f64 * k),
            None => format!("{px} px"),
        };
        for (k, sc) in r.scores.iter().enumerate() {
            let first = k == 0;
            let _ = writeln!(
                s,
                "{:<width$}  {:<10} {:>7} {:>7} {:>9} {:>7}  {:>13} {:>6} {:>7} {:>7} {:>10} {:>10}",
                r.name,
                name_of(k + 1),
                fmt(Some(sc.dice)),
                fmt(Some(sc.iou)),
                fmt(sc.precision),
                fmt(sc.recall),
                if first { format!("{}/{}", l.found(), l.truth.len()) } else { String::new() },
                if first { l.false_regions().to_string() } else { String::new() },
                if first { fmt(Some(r.eval.boundary.f_score())) } else { String::new() },
                if first { fmt(r.eval.calibration.as_ref().map(|c| c.ece)) } else { String::new() },
                if first { area(fp) } else { String::new() },
                if first { area(fn_) } else { String::new() },
            );
        }
    }
    s += &totals(rows, classes, name_of, pooled, width);
    s
}

/// The table's last lines: macro and micro means, and lesions over all slides.
fn totals(
    rows: &[Row],
    classes: usize,
    name_of: &dyn Fn(usize) -> String,
    pooled: &Confusion,
    width: usize,
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for k in 0..classes {
        let m: Vec<String> = METRICS.iter().map(|(_, g)| fmt(mean(rows, k, g))).collect();
        let _ = writeln!(
            s,
            "{:<width$}  {:<10} {:>7} {:>7} {:>9} {:>7}",
            format!("macro mean of {}", rows.len()),
            name_of(k + 1),
            m[0],
            m[1],
            m[2],
            m[3]
        );
        let p = pooled.scores(k + 1);
        let _ = writeln!(
            s,
            "{:<width$}  {:<10} {:>7} {:>7} {:>9} {:>7}",
            "micro (pooled)",
            name_of(k + 1),
            fmt(Some(p.dice)),
            fmt(Some(p.iou)),
            fmt(p.precision),
            fmt(p.recall)
        );
    }
    let (found, truth, false_) = rows.iter().fold((0, 0, 0), |(f, t, x), r| {
        let l = &r.eval.lesions;
        (f + l.found(), t + l.truth.len(), x + l.false_regions())
    });
    let _ = writeln!(
        s,
        "lesions: {found} of {truth} truth regions found, {} missed, {false_} false predicted regions",
        truth - found
    );
    s
}

fn csv(rows: &[Row], classes: usize, name_of: &dyn Fn(usize) -> String) -> String {
    let cell = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = String::from(
        "slide,class,dice,iou,precision,recall,true_pixels,predicted_pixels,truth_regions,regions_found,regions_missed,false_regions,boundary_f,boundary_precision,boundary_recall,ece,brier,fp_pixels,fn_pixels,fp_mm2,fn_mm2,pred,truth\n",
    );
    for r in rows {
        let e = &r.eval;
        let l = &e.lesions;
        let (fp, fn_) = e.confusion.tumor_errors();
        let mm2 = |px: u64| cell(r.mm2_per_pixel().map(|k| px as f64 * k));
        for (k, sc) in r.scores.iter().enumerate() {
            out += &format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                quote(&r.name),
                quote(&name_of(k + 1)),
                sc.dice,
                sc.iou,
                cell(sc.precision),
                cell(sc.recall),
                sc.true_pixels,
                sc.predicted_pixels,
                l.truth.len(),
                l.found(),
                l.missed(),
                l.false_regions(),
                e.boundary.f_score(),
                e.boundary.precision(),
                e.boundary.recall(),
                cell(e.calibration.as_ref().map(|c| c.ece)),
                cell(e.calibration.as_ref().map(|c| c.brier)),
                fp,
                fn_,
                mm2(fp),
                mm2(fn_),
                quote(&r.pred.display().to_string()),
                quote(&r.truth.display().to_string())
            );
        }
    }
    for k in 0..classes {
        let m: Vec<String> = METRICS
            .iter()
            .map(|(_, g)| cell(mean(rows, k, g)))
            .collect();
        out += &format!(
            "\"mean\",{},{},{},{},{}{}\n",
            quote(&name_of(k + 1)),
            m[0],
            m[1],
            m[2],
            m[3],
            ",".repeat(19)
        );
    }
    out
}

fn json(
    rows: &[Row],
    classes: usize,
    name_of: &dyn Fn(usize) -> String,
    pooled: &Confusion,
    tolerance: u32,
) -> Value {
    let macro_mean = |k: usize| {
        Value::Object(
            METRICS
                .iter()
                .map(|(n, g)| (n.to_string(), json!(mean(rows, k, g))))
                .collect(),
        )
    };
    let (found, truth, false_) = rows.iter().fold((0, 0, 0), |(f, t, x), r| {
        let l = &r.eval.lesions;
        (f + l.found(), t + l.truth.len(), x + l.false_regions())
    });
    json!({
        "order": "worst first (tumor Dice ascending)",
        "boundary_tolerance_px": tolerance,
        "slides": rows.iter().map(|r| r.figures().to_json(name_of)).collect::<Vec<_>>(),
        "mean": (0..classes).map(|k| (name_of(k + 1), macro_mean(k))).collect::<serde_json::Map<_, _>>(),
        "micro": (0..classes).map(|k| (name_of(k + 1), wsiseg_eval::scores_json(&pooled.scores(k + 1)))).collect::<serde_json::Map<_, _>>(),
        "lesions": {"truth_regions": truth, "found": found, "missed": truth - found, "false": false_},
    })
}
