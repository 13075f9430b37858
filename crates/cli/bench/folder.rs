//! `wsiseg bench FOLDER`: a folder of slides through the engine's folder
//! run, timed, with its figures.

use super::*;

/// One way of running a folder: its wall time and each slide's batches.
pub(super) struct FolderRun {
    wall_s: f64,
    /// Per slide (in run order): first batch handed to the device, last
    /// batch back.
    spans: Vec<Option<(Instant, Instant)>>,
}

impl FolderRun {
    /// The device's idle time between consecutive slides that ran batches:
    /// from the last batch of one back to the first batch of the next handed in.
    fn gaps(&self) -> Vec<f64> {
        let spans: Vec<_> = self.spans.iter().flatten().collect();
        spans
            .windows(2)
            .map(|w| w[1].0.saturating_duration_since(w[0].1).as_secs_f64())
            .collect()
    }

    fn figures(&self, slides: usize) -> Value {
        let gaps = self.gaps();
        let mean_gap = gaps.iter().sum::<f64>() / gaps.len().max(1) as f64;
        let slide_s = self.wall_s / slides.max(1) as f64;
        json!({
            "wall_s": self.wall_s,
            "slides_per_s": slides as f64 / self.wall_s,
            "seconds_per_slide": slide_s,
            "idle_between_slides_mean_s": mean_gap,
            "idle_between_slides_max_s": gaps.iter().copied().fold(0.0, f64::max),
            "idle_share_of_slide_time": mean_gap / slide_s,
        })
    }
}

/// `wsiseg bench FOLDER`: the folder segmented as `segment` does, slides one
/// at a time and overlapped (the default), in the same run; the device's idle
/// time between slides and slides/s for each.
pub(super) fn folder_bench(args: &BenchArgs, folder: &Path, scratch: &Path) -> Result<()> {
    if args.model.len() > 1 {
        anyhow::bail!(
            "{}: several --model are raced on one slide, not a folder: give a slide (or none, for a synthetic one)",
            folder.display()
        );
    }
    let mut figures = Figures::new();
    figures.insert("folder".into(), json!(folder));
    let mut slides = 0;
    for (mode, one_at_a_time) in [("one_at_a_time", true), ("overlapped", false)] {
        let run = time_folder(args, folder, &scratch.join(mode), one_at_a_time)?;
        slides = run.spans.len();
        figures.insert(mode.into(), run.figures(slides));
    }
    figures.insert("slides".into(), json!(slides));
    let wall = |m: &str| figures[m]["wall_s"].as_f64().unwrap_or(f64::NAN);
    figures.insert(
        "overlap_speedup".into(),
        json!(wall("one_at_a_time") / wall("overlapped")),
    );
    let figures = Value::Object(figures);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        print!("{}", folder_table(&figures));
    }
    Ok(())
}

/// `wsiseg segment FOLDER` with the bench's settings into `out`, every
/// batch's times kept.
pub(super) fn time_folder(
    args: &BenchArgs,
    folder: &Path,
    out: &Path,
    one_at_a_time: bool,
) -> Result<FolderRun> {
    /// Collects every batch's times, by slide.
    struct Batches(std::sync::Mutex<Vec<(usize, wsiseg_engine::BatchTimes)>>);
    impl wsiseg_engine::BatchObserver for Batches {
        fn batch(&self, k: usize, times: wsiseg_engine::BatchTimes) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((k, times));
        }
    }
    let inputs = crate::inputs::collect(&[folder.to_path_buf()], false)?;
    wsiseg_engine::memory::set_budget(wsiseg_engine::memory::default_budget());
    let devices = args
        .run
        .device
        .resolve()
        .map_err(crate::errors::flag_context)?;
    let start = Instant::now();
    // As `wsiseg segment FOLDER` with these options: the engine built
    // inside the clock, the folder's summary written as its own (the whole
    // folder, also inside a Slurm task or an Indexed Job).
    let engine = EngineBuilder::new(&args.model[0])
        .tta(args.tta)
        .devices(devices)
        .precision(args.run.precision)
        .batch(args.run.batch)
        .readers(args.readers)
        .decode(args.decode)
        .build()
        .map_err(crate::errors::flag_context)?;
    let batch = wsiseg_engine::Batch {
        slides: inputs.slides,
        out: out.to_path_buf(),
        request: Request::default(),
        one_at_a_time,
        summary: wsiseg_engine::SummaryKind::Own(
            "0/1"
                .parse::<wsiseg_engine::Shard>()
                .expect("shard 0 of 1")
                .summary_stem(),
        ),
        many: inputs.many,
    };
    let batches = Batches(std::sync::Mutex::new(Vec::new()));
    let outcome = engine.segment_many(&batch, crate::signals::cancel_flag(), &batches)?;
    let wall_s = start.elapsed().as_secs_f64();
    let failed = outcome.count(wsiseg_engine::Status::Failed);
    if failed > 0 || outcome.cancelled() {
        anyhow::bail!(
            "{}: {failed} slide(s) failed or the run was interrupted; bench a folder that segments cleanly",
            folder.display(),
        );
    }
    let mut spans: Vec<Option<(Instant, Instant)>> = vec![None; outcome.entries.len()];
    for (k, b) in batches.0.into_inner().unwrap_or_default() {
        let span = &mut spans[k];
        *span = Some(match *span {
            None => (b.submitted, b.finished),
            Some((first, last)) => (first.min(b.submitted), last.max(b.finished)),
        });
    }
    Ok(FolderRun { wall_s, spans })
}

pub(super) fn folder_table(f: &Value) -> String {
    let mut t = format!(
        "folder {} ({} slides)\n",
        f["folder"].as_str().unwrap_or("?"),
        f["slides"]
    );
    t += &format!(
        "{:<16}{:>10}{:>10}{:>12}{:>16}{:>16}{:>12}\n",
        "slides", "wall s", "slides/s", "s/slide", "idle mean s", "idle max s", "idle/slide"
    );
    for mode in ["one_at_a_time", "overlapped"] {
        let m = &f[mode];
        let n = |k: &str| m[k].as_f64().unwrap_or(f64::NAN);
        t += &format!(
            "{:<16}{:>10.2}{:>10.2}{:>12.3}{:>16.3}{:>16.3}{:>11.1}%\n",
            mode.replace('_', " "),
            n("wall_s"),
            n("slides_per_s"),
            n("seconds_per_slide"),
            n("idle_between_slides_mean_s"),
            n("idle_between_slides_max_s"),
            100.0 * n("idle_share_of_slide_time")
        );
    }
    t += &format!(
        "overlapped vs one at a time: {:.2}x the slides/s\n",
        f["overlap_speedup"].as_f64().unwrap_or(f64::NAN)
    );
    t
}
