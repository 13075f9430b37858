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

mod compare;
mod folder;
mod table;

use compare::compare_models;
use folder::folder_bench;
use table::table;

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
    if args.model.len() > 1 {
        return compare_models(args, &setup, (&slide_path, &scratch.0, &request));
    }
    let first = args.model[0].as_path();
    let mut figures = Figures::new();
    figures.insert("slide".into(), json!(slide_path));
    figures.insert("device".into(), json!(describe_devices(&setup.devices)));
    figures.insert("precision".into(), json!(setup.precision.to_string()));
    figures.insert("batch".into(), json!(setup.batch));
    figures.insert("tta".into(), json!(args.tta.to_string()));
    figures.insert("readers".into(), json!(setup.readers));
    figures.insert("decode".into(), json!(args.decode.name()));

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
        Some(model_figures(args, first, &setup, &mut figures)?)
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
        end_to_end_figures(args, first, &setup, run, model_tiles_s, &mut figures)?;
    }
    memory_figures(&mut figures);

    let figures = Value::Object(figures);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        print!("{}", table(&figures));
    }
    Ok(())
}

/// Peak memory (the process's and wsiseg's own buffers') and the malloc.
fn memory_figures(figures: &mut Figures) {
    figures.insert("peak_rss_mib".into(), json!(wsiseg_engine::peak_rss_mib()));
    figures.insert(
        "peak_rust_heap_mib".into(),
        json!(wsiseg_engine::memory::rust_peak_mib()),
    );
    figures.insert("malloc".into(), json!(wsiseg_engine::memory::malloc_name()));
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
    let manifest = Manifest::read(&locate(&args.model[0])?.1)?;
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
fn model_figures(
    args: &BenchArgs,
    model: &Path,
    setup: &Setup,
    figures: &mut Figures,
) -> Result<f64> {
    let device = setup.devices[0];
    let (batch, tile) = (setup.batch, setup.tile);
    let mut model = Segmenter::load(model, device, setup.precision)?;
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
    model: &Path,
    setup: &Setup,
    (slide, out, request): (&Path, PathBuf, &Request),
    model_tiles_s: Option<f64>,
    figures: &mut Figures,
) -> Result<()> {
    let engine = EngineBuilder::new(model)
        .tta(args.tta)
        .devices(setup.devices.clone())
        .precision(Some(setup.precision))
        .batch(Some(setup.batch))
        .readers(Some(setup.readers))
        .decode(args.decode)
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
        // The share of the whole run's wall time (opening, planning, the
        // pipeline, finishing the outputs) the model alone would not need.
        put(
            "e2e_outside_model_share",
            json!((1.0 - tiles_run / model / wall).max(0.0)),
        );
    }
    put("e2e_decoded_by", json!(stats.decoded_by));
    put("e2e_tiles_decoded_on_device", json!(stats.device_decoded));
    put("e2e_device_decode_fallbacks", json!(stats.decode_fallbacks));
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

    device_decode_figures(args, &tiles, &file, &sample, decode_s, figures)?;
    planned_read_figures(args, threads, path, working, plan, &tiles, &raw, figures)?;
    Ok(())
}

/// The same sampled JPEG tiles decoded on the GPU by nvJPEG, in batches of
/// `--batch` (best of 3, after one warm-up pass), against the host's
/// decode of them on the reader threads (`host_s`): where the model runs on
/// CUDA, nvJPEG is there and `--decode` is not cpu; else a note saying why not.
fn device_decode_figures(
    args: &BenchArgs,
    tiles: &JpegTiles,
    file: &File,
    sample: &[usize],
    host_s: f64,
    figures: &mut Figures,
) -> Result<()> {
    let device = args
        .run
        .device
        .resolve()
        .map_err(crate::errors::flag_context)?[0];
    let why_not = if args.decode == wsiseg_engine::Decode::Cpu {
        Some("--decode cpu".to_string())
    } else if !device.is_cuda() {
        Some(format!("the model runs on {device}"))
    } else {
        None
    };
    let mut decoder = match why_not.map_or_else(|| wsiseg_infer::TileDecoder::nvjpeg(device), Err) {
        Ok(d) => d,
        Err(why) => {
            figures.insert(
                "device_decode".into(),
                json!(format!("not measured: {why}")),
            );
            return Ok(());
        }
    };
    let (w, h) = (tiles.tile_width, tiles.tile_height);
    let rgb_components = tiles.rgb_components();
    let mut streams = Vec::new();
    for &n in sample {
        let s = tiles.raw(file, n)?;
        if wsiseg_slide::check_baseline(&s, w, h)
            == (wsiseg_slide::Baseline::Yes {
                rgb: rgb_components,
            })
        {
            streams.push(s);
        }
    }
    if streams.is_empty() {
        figures.insert(
            "device_decode".into(),
            json!("not measured: the level's JPEG tiles are of a kind nvJPEG is not given"),
        );
        return Ok(());
    }
    let batch = args
        .run
        .batch
        .unwrap_or(wsiseg_engine::DEFAULT_CUDA_BATCH)
        .max(1);
    let refs: Vec<&[u8]> = streams.iter().map(Vec::as_slice).collect();
    let index = match device {
        wsiseg_infer::Device::Cuda(i) => i as i64,
        wsiseg_infer::Device::Cpu => 0,
    };
    let mut pass = || -> Result<f64> {
        let start = Instant::now();
        for chunk in refs.chunks(batch) {
            let _decoded = decoder
                .decode(chunk, (w, h), rgb_components)
                .map_err(|e| anyhow::anyhow!("nvJPEG: {}", e.0))?;
        }
        tch::Cuda::synchronize(index);
        Ok(start.elapsed().as_secs_f64())
    };
    pass()?;
    let best = (0..3).map(|_| pass()).collect::<Result<Vec<f64>>>()?;
    let device_s = best.into_iter().fold(f64::MAX, f64::min);
    let mp = streams.len() as f64 * f64::from(w * h) / 1e6;
    let host_mp_s = sample.len() as f64 * f64::from(w * h) / 1e6 / host_s;
    figures.insert("device_decode".into(), json!(decoder.name()));
    figures.insert("device_decode_tiles".into(), json!(streams.len()));
    figures.insert("device_jpeg_decode_mp_s".into(), json!(mp / device_s));
    figures.insert(
        "device_vs_host_decode".into(),
        json!(mp / device_s / host_mp_s),
    );
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
