//! `wsiseg bench`: every stage measured on its own, and the whole pipeline,
//! in one run, so that the ratios that matter are printed by the tool.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use wsiseg_engine::{
    describe_devices, EngineBuilder, Format, Precision, Request, RunControl, SlideOutcome,
};
use wsiseg_infer::{locate, Manifest, Segmenter};
use wsiseg_slide::{JpegTiles, Reader, Rect, Slide, TilePlan, WorkingLevel};
use wsiseg_stitch::{RowSink, StitchError, Stitcher};
use wsiseg_write::{PngMaskWriter, PyramidOptions, PyramidWriter};

use crate::args::{BenchArgs, Stage};

/// A scratch folder removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `work(i)` for i in 0..n on `threads` threads, each taking runs of
/// consecutive `i` as the pipeline's readers do; returns the wall seconds.
fn parallel(n: usize, threads: usize, work: &(dyn Fn(usize) -> Result<()> + Sync)) -> Result<f64> {
    let chunk = wsiseg_engine::READ_CHUNK;
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let first = next.fetch_add(chunk, Ordering::Relaxed);
                        if first >= n {
                            return Ok(());
                        }
                        for i in first..(first + chunk).min(n) {
                            work(i)?;
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("bench thread panicked")?;
        }
        Ok(())
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// Counts rows and throws them away.
struct Null(u64);

impl RowSink for Null {
    type Error = StitchError;
    fn write_rows(&mut self, rows: &[u8]) -> Result<(), StitchError> {
        self.0 += rows.len() as u64;
        Ok(())
    }
}

/// Figures by name, printed as a table or as JSON.
type Figures = serde_json::Map<String, Value>;

/// What every stage of the bench runs with.
struct Setup {
    devices: Vec<wsiseg_engine::Device>,
    precision: Precision,
    batch: usize,
    readers: usize,
    tile: u32,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("wsiseg-bench-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)
        .with_context(|| format!("{}: cannot create", scratch.0.display()))?;
    let slide_path = match &args.slide {
        Some(p) if p.is_dir() => return folder_bench(args, p, &scratch.0),
        Some(p) => p.clone(),
        None => make_synthetic(args, &scratch.0)?,
    };
    let (setup, manifest) = setup(args)?;
    let slide = wsiseg_slide::open(&slide_path)?;

    // The working level segment would use.
    let request = Request {
        formats: vec![Format::PNG, Format::TIFF, Format::REPORT],
        ..Request::default()
    };
    let working = WorkingLevel::choose(
        slide.as_ref(),
        wsiseg_engine::resolution(&request, slide.as_ref(), &manifest),
    )?;
    tracing::info!(
        "bench: {} ({} {}), working {} from level {}, model {} on {} in {}, batch {}, {} readers",
        slide_path.display(),
        slide.format(),
        slide.levels()[0].size,
        working.size,
        working.source_level,
        manifest.name,
        describe_devices(&setup.devices),
        setup.precision,
        setup.batch,
        setup.readers
    );
    let mut figures = Figures::new();
    figures.insert("slide".into(), json!(slide_path));
    figures.insert("device".into(), json!(describe_devices(&setup.devices)));
    figures.insert("precision".into(), json!(setup.precision.to_string()));
    figures.insert("batch".into(), json!(setup.batch));
    figures.insert("tta".into(), json!(args.tta.to_string()));
    figures.insert("readers".into(), json!(setup.readers));

    // 1–2. The engine's reader on a run of planned tiles vs raw JPEG decode
    // of exactly the slide tiles those planned tiles cover, on the same threads.
    let plan = TilePlan::new(working.size, setup.tile, setup.tile / 8)?;
    let stage = |s: Stage| args.stages.contains(&s);
    if stage(Stage::Read) {
        read_figures(
            args,
            setup.readers,
            &slide_path,
            &working,
            &plan,
            &mut figures,
        )?;
    }
    let model_tiles_s = if stage(Stage::Model) {
        Some(model_figures(args, &setup, &mut figures)?)
    } else {
        None
    };
    if stage(Stage::Stitch) {
        stitch_figures(plan, setup.tile, &mut figures)?;
    }
    if stage(Stage::Write) {
        write_figures(&scratch.0, &working, &mut figures)?;
    }
    if stage(Stage::E2e) {
        let run = (slide_path.as_path(), scratch.0.join("e2e"), &request);
        end_to_end_figures(args, &setup, run, model_tiles_s, &mut figures)?;
    }
    figures.insert("peak_rss_mib".into(), json!(wsiseg_engine::peak_rss_mib()));
    figures.insert(
        "peak_rust_heap_mib".into(),
        json!(wsiseg_engine::memory::rust_peak_mib()),
    );
    figures.insert("malloc".into(), json!(wsiseg_engine::memory::malloc_name()));

    let figures = Value::Object(figures);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        print!("{}", table(&figures));
    }
    Ok(())
}

/// Devices, precision, batch, readers and tile, defaults resolved.
fn setup(args: &BenchArgs) -> Result<(Setup, Manifest)> {
    let devices = args
        .run
        .device
        .resolve()
        .map_err(crate::errors::flag_context)?;
    let device = devices[0];
    // The model is loaded after the read figures: libtorch's worker threads
    // must not share the cores while decoding is timed.
    let manifest = Manifest::read(&locate(&args.model)?.1)?;
    let setup = Setup {
        precision: args.run.precision.unwrap_or(Precision::default_for(device)),
        batch: args
            .run
            .batch
            .unwrap_or(wsiseg_engine::default_batch(device)),
        readers: args.readers.unwrap_or_else(wsiseg_engine::default_readers),
        tile: manifest.tile,
        devices,
    };
    Ok((setup, manifest))
}

/// Stage 3, model only: one batch already on the device; returns tiles/s.
fn model_figures(args: &BenchArgs, setup: &Setup, figures: &mut Figures) -> Result<f64> {
    let device = setup.devices[0];
    let (batch, tile) = (setup.batch, setup.tile);
    let mut model = Segmenter::load(&args.model, device, setup.precision)?;
    model.set_tta(args.tta);
    if device.is_cuda() {
        model.warm_up(batch, tile)?;
    }
    let per_pass = model.time_forward(batch, tile, 3, if device.is_cuda() { 20 } else { 3 })?;
    let model_tiles_s = batch as f64 / per_pass;
    figures.insert("model_only_tiles_s".into(), json!(model_tiles_s));
    figures.insert(
        "model_only_mp_s".into(),
        json!(model_tiles_s * f64::from(tile * tile) / 1e6),
    );
    Ok(model_tiles_s)
}

/// Stage 4, stitch (one core): every tile of the working level into a sink that counts.
fn stitch_figures(plan: TilePlan, tile: u32, figures: &mut Figures) -> Result<()> {
    let labels = vec![1u8; (tile * tile) as usize];
    let start = Instant::now();
    let mut stitcher = Stitcher::new(plan, Null(0));
    for t in plan.tiles() {
        stitcher.add(t.index, &labels)?;
    }
    let rows = stitcher.finish()?.0;
    let stitch_s = start.elapsed().as_secs_f64();
    figures.insert("stitch_mp_s".into(), json!(rows as f64 / 1e6 / stitch_s));
    Ok(())
}

/// Stage 5, writers: the working level's labels as PNG and as pyramidal TIFF.
fn write_figures(scratch: &Path, working: &WorkingLevel, figures: &mut Figures) -> Result<()> {
    let row: Vec<u8> = (0..working.size.w)
        .map(|x| u8::from((x / 97) % 3 == 0))
        .collect();
    let band: Vec<u8> = row.iter().copied().cycle().take(row.len() * 64).collect();
    let write = |sink: &mut dyn FnMut(&[u8]) -> Result<()>| -> Result<f64> {
        let start = Instant::now();
        let mut y = 0;
        while y < working.size.h {
            let n = 64.min(working.size.h - y) as usize;
            sink(&band[..n * row.len()])?;
            y += n as u32;
        }
        Ok(start.elapsed().as_secs_f64())
    };
    let mut png = PngMaskWriter::create(&scratch.join("w.png"), working.size)?;
    let png_s = write(&mut |rows| Ok(png.write_rows(rows)?))?;
    png.commit()?;
    let mut tiff = PyramidWriter::create(
        &scratch.join("w.tiff"),
        working.size,
        PyramidOptions::label_mask(working.mpp, None),
    )?;
    let tiff_s = write(&mut |rows| Ok(tiff.push_rows(rows)?))?;
    tiff.finish()?;
    let level_mp = working.size.area() as f64 / 1e6;
    figures.insert("write_png_mp_s".into(), json!(level_mp / png_s));
    figures.insert("write_tiff_mp_s".into(), json!(level_mp / tiff_s));
    Ok(())
}

/// Stage 6, end to end: the engine on the slide (`run`: slide, output folder,
/// request), as `segment` runs it.
fn end_to_end_figures(
    args: &BenchArgs,
    setup: &Setup,
    (slide, out, request): (&Path, PathBuf, &Request),
    model_tiles_s: Option<f64>,
    figures: &mut Figures,
) -> Result<()> {
    let engine = EngineBuilder::new(&args.model)
        .tta(args.tta)
        .devices(setup.devices.clone())
        .precision(Some(setup.precision))
        .batch(Some(setup.batch))
        .readers(Some(setup.readers))
        .build()
        .map_err(crate::errors::flag_context)?;
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let started_unix = unix();
    let start = Instant::now();
    let cancel = crate::signals::cancel_flag();
    let outcome = engine.segment(slide, &out, request, &RunControl::new(cancel));
    let wall = start.elapsed().as_secs_f64();
    // When the run happened, to pick GPU utilisation samples taken during it.
    figures.insert("e2e_unix_window".into(), json!([started_unix, unix()]));
    let stats = match outcome.map_err(crate::errors::flag_context)? {
        SlideOutcome::Segmented { stats, .. } => stats,
        SlideOutcome::Skipped(_) => unreachable!("a fresh scratch folder has nothing to skip"),
    };
    let level_mp = stats.class_pixels.iter().sum::<u64>() as f64 / 1e6;
    let tiles_run = stats.tiles_run as f64;
    let tile_mp = f64::from(setup.tile * setup.tile) / 1e6;
    let pipeline = stats.pipeline_wall_s;
    let mut put = |k: &str, v: Value| figures.insert(k.into(), v);
    put("e2e_wall_s", json!(wall));
    put("e2e_tiles_run", json!(stats.tiles_run));
    put("e2e_tiles_planned", json!(stats.tiles_planned));
    put("e2e_tiles_s", json!(tiles_run / pipeline));
    put("e2e_mp_s", json!(level_mp / wall));
    if let Some(model) = model_tiles_s {
        put("e2e_vs_model_only", json!(tiles_run / pipeline / model));
    }
    put("e2e_tiles_per_worker", json!(stats.tiles_per_worker));
    // The pipeline's own stages: the model inside the pipeline (queuing and
    // collecting batches, summed over workers), and the stitcher's busy time.
    if stats.inference_s > 0.0 {
        put(
            "e2e_inference_tiles_s",
            json!(tiles_run / stats.inference_s),
        );
        put(
            "e2e_inference_mp_s",
            json!(tiles_run * tile_mp / stats.inference_s),
        );
    }
    if stats.stitch_write_s > 0.0 {
        put(
            "e2e_stitch_write_mp_s",
            json!(level_mp / stats.stitch_write_s),
        );
    }
    // Its threads side by side: the stitcher, and each format's writer.
    if stats.stitch_s > 0.0 {
        put("e2e_stitch_mp_s", json!(level_mp / stats.stitch_s));
    }
    let writers: Figures = stats
        .writers_s
        .iter()
        .filter(|(_, s)| *s > 0.0)
        .map(|&(name, s)| (name.to_string(), json!(level_mp / s)))
        .collect();
    put("e2e_write_mp_s", Value::Object(writers));
    Ok(())
}

/// Whole rows of planned tiles from a third of the way down the slide
/// (where tissue usually is), at least `want` tiles when the plan has them.
fn planned_run(plan: &TilePlan, want: usize) -> Vec<Rect> {
    let cols = plan.cols() as usize;
    let first = plan.rows() as usize / 3 * cols;
    let rows = want.div_ceil(cols).max(1);
    (first..(first + rows * cols).min(plan.len()))
        .map(|n| plan.nth(n).rect)
        .collect()
}

/// Reads `rects` of the working level on `threads` threads in raster order
/// (as the pipeline does); returns the seconds.
fn read_all(
    slide: &dyn Slide,
    working: &WorkingLevel,
    rects: &[Rect],
    threads: usize,
) -> Result<f64> {
    working.plan_reads(slide, rects.iter().copied());
    parallel(rects.len(), threads, &|i| {
        working.read(slide, rects[i])?;
        Ok(())
    })
}

/// Best of three runs of `f`, each given a freshly opened slide (so that
/// nothing decoded by an earlier run is reused).
fn best_of_3(path: &Path, reader: Reader, f: &dyn Fn(&dyn Slide) -> Result<f64>) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let slide = wsiseg_slide::open_with(path, reader)?;
        best = best.min(f(slide.as_ref())?);
    }
    Ok(best)
}

/// Read and decode figures, on `--readers` threads, in MP/s of slide
/// pixels decoded, so that they compare directly:
/// - raw decode of a sample of the slide's own JPEG tiles;
/// - the engine's reader (direct JPEG path where the slide allows it) and
///   OpenSlide reading exactly those tiles (tile-aligned regions);
/// - the engine's reader on a run of planned tiles (halo included) vs raw
///   decode of the JPEG tiles under them: what the shared tile cache saves.
fn read_figures(
    args: &BenchArgs,
    threads: usize,
    path: &Path,
    working: &WorkingLevel,
    plan: &TilePlan,
    figures: &mut Figures,
) -> Result<()> {
    let level = working.source_level;
    let probe = wsiseg_slide::open_with(path, Reader::Auto)?;
    let level_size = probe.levels()[level as usize].size;
    figures.insert(
        "reader".into(),
        json!(if probe.reads_directly(level) {
            "direct JPEG"
        } else {
            "OpenSlide"
        }),
    );
    let Some(tiles) = JpegTiles::open(path, level)?.filter(|t| t.size == level_size) else {
        tracing::warn!(
            "{}: level {level} is not stored as JPEG tiles; no read or decode figures",
            path.display()
        );
        return Ok(());
    };
    let file = File::open(path)?;
    let raw = |set: &[usize]| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..3 {
            best = best.min(parallel(set.len(), threads, &|i| {
                tiles.decode(&file, set[i])?;
                Ok(())
            })?);
        }
        Ok(best)
    };
    let megapixels = |set: &[usize]| -> f64 {
        set.iter()
            .map(|&n| tiles.tile_rect(n).size().area())
            .sum::<u64>() as f64
            / 1e6
    };

    // Tile-aligned: one region per JPEG tile, read at the source level.
    let sample = sample(tiles.len(), args.sample_tiles);
    let aligned: Vec<Rect> = sample.iter().map(|&n| tiles.tile_rect(n)).collect();
    let at_source = |slide: &dyn Slide| {
        slide.plan_reads(level, &aligned);
        parallel(aligned.len(), threads, &|i| {
            slide.read_inside(level, aligned[i])?;
            Ok(())
        })
    };
    let mp = megapixels(&sample);
    let decode_s = raw(&sample)?;
    let read_s = best_of_3(path, Reader::Auto, &at_source)?;
    let openslide_s = best_of_3(path, Reader::OpenSlide, &at_source)?;
    figures.insert("sample_tiles".into(), json!(sample.len()));
    figures.insert("raw_jpeg_decode_mp_s".into(), json!(mp / decode_s));
    figures.insert("read_decode_mp_s".into(), json!(mp / read_s));
    figures.insert("read_vs_raw_decode".into(), json!(decode_s / read_s));
    figures.insert("openslide_read_decode_mp_s".into(), json!(mp / openslide_s));
    figures.insert(
        "openslide_vs_raw_decode".into(),
        json!(decode_s / openslide_s),
    );

    planned_read_figures(args, threads, path, working, plan, &tiles, &raw, figures)?;
    Ok(())
}

/// Planned tiles with their halo, through the working level as segment
/// reads them, against raw decode (`raw`) of the JPEG tiles under them; and
/// the largest pixel difference between the engine's reader and OpenSlide.
#[allow(clippy::too_many_arguments)]
fn planned_read_figures(
    args: &BenchArgs,
    threads: usize,
    path: &Path,
    working: &WorkingLevel,
    plan: &TilePlan,
    tiles: &JpegTiles,
    raw: &dyn Fn(&[usize]) -> Result<f64>,
    figures: &mut Figures,
) -> Result<()> {
    let level = working.source_level;
    let probe = wsiseg_slide::open_with(path, Reader::Auto)?;
    let level_size = probe.levels()[level as usize].size;
    let rects = planned_run(plan, args.sample_tiles);
    let under: std::collections::BTreeSet<usize> = rects
        .iter()
        .filter_map(|r| working.source_rect(*r).clip_to(level_size))
        .flat_map(|r| tiles.tiles_touching(r).collect::<Vec<_>>())
        .collect();
    let under: Vec<usize> = under.into_iter().collect();
    let mp = under
        .iter()
        .map(|&n| tiles.tile_rect(n).size().area())
        .sum::<u64>() as f64
        / 1e6;
    let decode_s = raw(&under)?;
    let read_s = best_of_3(path, Reader::Auto, &|s| {
        read_all(s, working, &rects, threads)
    })?;
    figures.insert("planned_tiles_read".into(), json!(rects.len()));
    figures.insert("planned_read_mp_s".into(), json!(mp / read_s));
    figures.insert(
        "planned_read_vs_raw_decode".into(),
        json!(decode_s / read_s),
    );

    let openslide = wsiseg_slide::open_with(path, Reader::OpenSlide)?;
    let mut worst = 0u8;
    for r in rects.iter().take(8) {
        let a = working.read(probe.as_ref(), *r)?;
        let b = working.read(openslide.as_ref(), *r)?;
        for (p, q) in a.as_raw().iter().zip(b.as_raw()) {
            worst = worst.max(p.abs_diff(*q));
        }
    }
    figures.insert(
        "reader_vs_openslide_max_pixel_difference".into(),
        json!(worst),
    );
    Ok(())
}

/// `want` indices spread evenly over `0..len`.
fn sample(len: usize, want: usize) -> Vec<usize> {
    let k = want.clamp(1, len.max(1));
    (0..k).map(|i| i * len / k).collect()
}

fn make_synthetic(args: &BenchArgs, dir: &Path) -> Result<PathBuf> {
    let (w, h) = args.size;
    let spec = wsiseg_synth::SynthSpec {
        seed: 4242,
        width: w,
        height: h,
        ..Default::default()
    };
    let slide = dir.join("synth-bench.svs");
    let stats = wsiseg_synth::generate(
        &spec,
        &slide,
        &dir.join("synth-bench.truth.tiff"),
        &mut |_| {},
    )?;
    tracing::info!(
        "bench: made a synthetic {w}×{h} slide ({:.1} MP/s)",
        stats.megapixels / stats.seconds
    );
    Ok(slide)
}

/// `k`'s number to one decimal, or a dash.
fn num(f: &Value, k: &str) -> String {
    f[k].as_f64()
        .map(|v| format!("{v:.1}"))
        .unwrap_or_else(|| "—".into())
}

/// `k`'s ratio to two decimals, or a dash.
fn ratio(f: &Value, k: &str) -> String {
    f[k].as_f64()
        .map(|v| format!("{v:.2}×"))
        .unwrap_or_else(|| "—".into())
}

/// The stitcher's and each writer's MP/s inside the pipeline, or a dash.
fn stage_threads(f: &Value) -> String {
    let Some(writers) = f["e2e_write_mp_s"].as_object() else {
        return "—".into();
    };
    let mut parts = vec![format!("stitch {}", num(f, "e2e_stitch_mp_s"))];
    parts.extend(
        writers
            .iter()
            .map(|(name, v)| format!("{name} {:.1}", v.as_f64().unwrap_or(f64::NAN))),
    );
    parts.join(", ") + " MP/s"
}

/// The read and decode lines of the table.
fn read_lines(f: &Value) -> Vec<(&'static str, String)> {
    vec![
        (
            "raw JPEG decode of the slide's tiles",
            num(f, "raw_jpeg_decode_mp_s") + " MP/s",
        ),
        (
            "read + decode of the same tiles, engine reader",
            format!(
                "{} MP/s ({})",
                num(f, "read_decode_mp_s"),
                f["reader"].as_str().unwrap_or("—"),
            ),
        ),
        ("  read+decode / raw decode", ratio(f, "read_vs_raw_decode")),
        (
            "read + decode of the same tiles, OpenSlide",
            num(f, "openslide_read_decode_mp_s") + " MP/s",
        ),
        (
            "  OpenSlide / raw decode",
            ratio(f, "openslide_vs_raw_decode"),
        ),
        (
            "planned tiles with halo, engine reader",
            format!(
                "{} MP/s of slide tiles ({} planned tiles)",
                num(f, "planned_read_mp_s"),
                f["planned_tiles_read"]
            ),
        ),
        (
            "  planned tiles / raw decode of their tiles",
            ratio(f, "planned_read_vs_raw_decode"),
        ),
        (
            "  largest pixel difference, reader vs OpenSlide",
            f["reader_vs_openslide_max_pixel_difference"].to_string(),
        ),
    ]
}

/// The model, stitch, write and end-to-end lines of the table.
fn pipeline_lines(f: &Value) -> Vec<(&'static str, String)> {
    vec![
        (
            "model only (batch on the device)",
            num(f, "model_only_tiles_s") + " tiles/s, " + &num(f, "model_only_mp_s") + " MP/s",
        ),
        ("stitch (one core)", num(f, "stitch_mp_s") + " MP/s"),
        ("write PNG mask", num(f, "write_png_mp_s") + " MP/s"),
        (
            "write pyramidal TIFF mask",
            num(f, "write_tiff_mp_s") + " MP/s",
        ),
        (
            "end to end (segment)",
            format!(
                "{} s, {} of {} tiles run, {} tiles/s, {} MP/s of the working level",
                num(f, "e2e_wall_s"),
                f["e2e_tiles_run"],
                f["e2e_tiles_planned"],
                num(f, "e2e_tiles_s"),
                num(f, "e2e_mp_s")
            ),
        ),
        (
            "  end-to-end tiles/s / model-only tiles/s",
            ratio(f, "e2e_vs_model_only"),
        ),
        (
            "  inference inside the pipeline",
            num(f, "e2e_inference_tiles_s")
                + " tiles/s, "
                + &num(f, "e2e_inference_mp_s")
                + " MP/s",
        ),
        (
            "  stitch + write inside the pipeline",
            num(f, "e2e_stitch_write_mp_s") + " MP/s (its busiest thread)",
        ),
        ("    stitching, then each writer", stage_threads(f)),
        (
            "peak RSS (wsiseg's own buffers)",
            format!(
                "{} MiB ({} MiB)",
                num(f, "peak_rss_mib"),
                num(f, "peak_rust_heap_mib")
            ),
        ),
        ("malloc", f["malloc"].as_str().unwrap_or("?").to_string()),
    ]
}

/// The figures as a table for the terminal.
fn table(f: &Value) -> String {
    let mut s = format!(
        "wsiseg bench — {} on {} ({}), batch {}, TTA {}, {} readers\n",
        f["slide"], f["device"], f["precision"], f["batch"], f["tta"], f["readers"]
    );
    for (k, v) in read_lines(f).into_iter().chain(pipeline_lines(f)) {
        s += &format!("  {k:<46} {v}\n");
    }
    s
}

/// One way of running a folder: its wall time and each slide's batches.
struct FolderRun {
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
fn folder_bench(args: &BenchArgs, folder: &Path, scratch: &Path) -> Result<()> {
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
fn time_folder(
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
    let engine = EngineBuilder::new(&args.model)
        .tta(args.tta)
        .devices(devices)
        .precision(args.run.precision)
        .batch(args.run.batch)
        .readers(args.readers)
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

fn folder_table(f: &Value) -> String {
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
