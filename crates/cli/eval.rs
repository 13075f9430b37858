//! `wsiseg eval`: per-slide and mean scores of predicted masks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use wsiseg_eval::{compare, Scores};

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
/// first, then its TIFF mask, then any image; overlays, heat maps and
/// probability maps are not masks.
fn mask_rank(path: &Path) -> Option<u8> {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
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

fn masks_in(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut found: BTreeMap<String, (u8, PathBuf)> = BTreeMap::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list folder", dir.display()))?
    {
        let path = entry
            .with_context(|| format!("{}: cannot list folder", dir.display()))?
            .path();
        let Some(rank) = mask_rank(&path).filter(|_| path.is_file()) else {
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
            let t = masks_in(truth)?.remove(&key).with_context(|| {
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
            let preds = masks_in(pred)?;
            let mut truths = masks_in(truth)?;
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
    scores: Vec<Scores>,
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
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (name, pred, truth) in pairs {
        match compare(&pred, &truth) {
            Ok(c) => {
                let n = c
                    .max_class()
                    .max(args.classes.len().saturating_sub(1))
                    .max(1);
                rows.push(Row {
                    name,
                    scores: (1..=n).map(|k| c.scores(k)).collect(),
                    pred,
                    truth,
                });
            }
            Err(e) => failures.push(anyhow::Error::from(e)),
        }
    }
    if !failures.is_empty() {
        let count = failures.len();
        for e in &failures[..count - 1] {
            crate::errors::report_error(e);
        }
        return Err(failures.pop().expect("non-empty"));
    }
    let classes = rows.iter().map(|r| r.scores.len()).max().unwrap_or(1);
    let name_of = |k: usize| {
        args.classes
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("class {k}"))
    };
    print!("{}", table(&rows, classes, &name_of));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("{}: cannot create folder", out.display()))?;
    crate::write_atomic(&csv_path, csv(&rows, classes, &name_of).as_bytes())?;
    let mut report = json(&rows, classes, &name_of);
    report["missing_predictions"] = serde_json::json!(missing);
    crate::write_atomic(
        &json_path,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    tracing::info!("wrote {} and {}", csv_path.display(), json_path.display());
    Ok(())
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

fn table(rows: &[Row], classes: usize, name_of: &dyn Fn(usize) -> String) -> String {
    use std::fmt::Write;
    let width = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(10);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<width$}  {:<10} {:>7} {:>7} {:>9} {:>7}",
        "slide", "class", "Dice", "IoU", "precision", "recall"
    );
    for r in rows {
        for (k, sc) in r.scores.iter().enumerate() {
            let _ = writeln!(
                s,
                "{:<width$}  {:<10} {:>7} {:>7} {:>9} {:>7}",
                r.name,
                name_of(k + 1),
                fmt(Some(sc.dice)),
                fmt(Some(sc.iou)),
                fmt(sc.precision),
                fmt(sc.recall)
            );
        }
    }
    for k in 0..classes {
        let m: Vec<String> = METRICS.iter().map(|(_, g)| fmt(mean(rows, k, g))).collect();
        let _ = writeln!(
            s,
            "{:<width$}  {:<10} {:>7} {:>7} {:>9} {:>7}",
            format!("mean of {}", rows.len()),
            name_of(k + 1),
            m[0],
            m[1],
            m[2],
            m[3]
        );
    }
    s
}

fn csv(rows: &[Row], classes: usize, name_of: &dyn Fn(usize) -> String) -> String {
    let cell = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = String::from(
        "slide,class,dice,iou,precision,recall,true_pixels,predicted_pixels,pred,truth\n",
    );
    for r in rows {
        for (k, sc) in r.scores.iter().enumerate() {
            out += &format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                quote(&r.name),
                quote(&name_of(k + 1)),
                sc.dice,
                sc.iou,
                cell(sc.precision),
                cell(sc.recall),
                sc.true_pixels,
                sc.predicted_pixels,
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
            "\"mean\",{},{},{},{},{},,,,\n",
            quote(&name_of(k + 1)),
            m[0],
            m[1],
            m[2],
            m[3]
        );
    }
    out
}

fn json(rows: &[Row], classes: usize, name_of: &dyn Fn(usize) -> String) -> Value {
    let scores = |sc: &Scores| {
        json!({
            "dice": sc.dice, "iou": sc.iou, "precision": sc.precision, "recall": sc.recall,
            "true_pixels": sc.true_pixels, "predicted_pixels": sc.predicted_pixels,
        })
    };
    json!({
        "slides": rows.iter().map(|r| json!({
            "slide": r.name,
            "pred": r.pred,
            "truth": r.truth,
            "classes": r.scores.iter().enumerate()
                .map(|(k, sc)| (name_of(k + 1), scores(sc)))
                .collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
        "mean": (0..classes).map(|k| (
            name_of(k + 1),
            Value::Object(METRICS.iter().map(|(n, g)| (n.to_string(), json!(mean(rows, k, g)))).collect()),
        )).collect::<serde_json::Map<_, _>>(),
    })
}
