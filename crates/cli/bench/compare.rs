//! `wsiseg bench --model A --model B …`: models raced on one slide in one
//! run — typically one network in its formats (TorchScript, AOTInductor,
//! ONNX). Each round measures every model in turn (model only, then end to
//! end, as the stages ask), so drift on the machine touches all alike; each
//! figure is the median over the rounds, with its ratio to the first model's.

use super::*;

/// The figures of one model over the rounds.
struct Raced {
    path: PathBuf,
    runtime: String,
    model_only: Vec<f64>,
    e2e: Vec<f64>,
    e2e_wall: Vec<f64>,
}

/// The median of `v` (`None` when empty).
fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Races `args.model` on the slide of `run` (slide, scratch folder,
/// request) and prints the table or JSON.
pub(super) fn compare_models(
    args: &BenchArgs,
    setup: &Setup,
    (slide, scratch, request): (&Path, &Path, &Request),
) -> Result<()> {
    let stage = |s: Stage| args.stages.contains(&s);
    if !stage(Stage::Model) && !stage(Stage::E2e) {
        anyhow::bail!("several --model are compared on --stages model and/or e2e");
    }
    let mut raced = entrants(args, setup)?;
    for round in 0..args.rounds {
        for (i, r) in raced.iter_mut().enumerate() {
            let out = scratch.join(format!("race-{round}-{i}"));
            race(args, setup, r, (slide, &out, request))?;
            tracing::info!(
                "bench: round {} of {}, {}: model only {:?} tiles/s, end to end {:?} tiles/s",
                round + 1,
                args.rounds,
                r.path.display(),
                r.model_only.last(),
                r.e2e.last(),
            );
        }
    }
    let figures = race_figures(args, setup, slide, &raced);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        print!("{}", race_table(&figures));
    }
    Ok(())
}

/// The models to race, each checked to take the first one's tile.
fn entrants(args: &BenchArgs, setup: &Setup) -> Result<Vec<Raced>> {
    let mut raced = Vec::new();
    for path in &args.model {
        // Every model must take the first one's tile: one batch shape for all.
        let manifest = Manifest::read(&locate(path)?.1)?;
        if manifest.tile != setup.tile {
            anyhow::bail!(
                "{}: its tile is {} px, the first model's {} px: race one network's formats (the same tile)",
                path.display(),
                manifest.tile,
                setup.tile
            );
        }
        raced.push(Raced {
            path: path.clone(),
            runtime: wsiseg_infer::runtime_of(path)?.to_string(),
            model_only: Vec::new(),
            e2e: Vec::new(),
            e2e_wall: Vec::new(),
        });
    }
    Ok(raced)
}

/// One model's turn in a round (slide, output folder, request): model only
/// and end to end, as the stages ask.
fn race(
    args: &BenchArgs,
    setup: &Setup,
    r: &mut Raced,
    (slide, out, request): (&Path, &Path, &Request),
) -> Result<()> {
    let stage = |s: Stage| args.stages.contains(&s);
    let mut f = Figures::new();
    let model_s = if stage(Stage::Model) {
        Some(model_figures(args, &r.path, setup, &mut f)?)
    } else {
        None
    };
    if stage(Stage::E2e) {
        let run = (slide, out.to_path_buf(), request);
        end_to_end_figures(args, &r.path, setup, run, model_s, &mut f)?;
        let _ = std::fs::remove_dir_all(out);
    }
    let take = |k: &str, into: &mut Vec<f64>| {
        if let Some(v) = f.get(k).and_then(Value::as_f64) {
            into.push(v);
        }
    };
    take("model_only_tiles_s", &mut r.model_only);
    take("e2e_tiles_s", &mut r.e2e);
    take("e2e_wall_s", &mut r.e2e_wall);
    Ok(())
}

/// The race's figures: the run's settings and one entry per model.
fn race_figures(args: &BenchArgs, setup: &Setup, slide: &Path, raced: &[Raced]) -> Value {
    let first = (median(&raced[0].model_only), median(&raced[0].e2e));
    let models: Vec<Value> = raced
        .iter()
        .map(|r| {
            let (m, e) = (median(&r.model_only), median(&r.e2e));
            json!({
                "model": r.path,
                "runtime": r.runtime,
                "model_only_tiles_s": m,
                "model_only_tiles_s_runs": r.model_only,
                "model_only_vs_first": m.zip(first.0).map(|(a, b)| a / b),
                "e2e_tiles_s": e,
                "e2e_tiles_s_runs": r.e2e,
                "e2e_wall_s": median(&r.e2e_wall),
                "e2e_vs_first": e.zip(first.1).map(|(a, b)| a / b),
            })
        })
        .collect();
    json!({
        "slide": slide,
        "device": describe_devices(&setup.devices),
        "precision": setup.precision.to_string(),
        "batch": setup.batch,
        "tta": args.tta.to_string(),
        "readers": setup.readers,
        "rounds": args.rounds,
        "models": models,
    })
}

/// The race as a table: one line per model.
fn race_table(f: &Value) -> String {
    let mut s = format!(
        "wsiseg bench — {} models on {} ({}), batch {}, TTA {}, {} readers, median of {} round(s)\n",
        f["models"].as_array().map_or(0, Vec::len),
        f["device"].as_str().unwrap_or("?"),
        f["precision"].as_str().unwrap_or("?"),
        f["batch"],
        f["tta"].as_str().unwrap_or("?"),
        f["readers"],
        f["rounds"]
    );
    s += &format!(
        "  {:<12} {:>16} {:>9} {:>16} {:>9}  model\n",
        "runtime", "model only t/s", "ratio", "end to end t/s", "ratio"
    );
    for m in f["models"].as_array().into_iter().flatten() {
        s += &format!(
            "  {:<12} {:>16} {:>9} {:>16} {:>9}  {}\n",
            m["runtime"].as_str().unwrap_or("?"),
            table::num(m, "model_only_tiles_s"),
            table::ratio(m, "model_only_vs_first"),
            table::num(m, "e2e_tiles_s"),
            table::ratio(m, "e2e_vs_first"),
            m["model"].as_str().unwrap_or("?"),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
