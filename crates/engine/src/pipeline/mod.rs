//! One slide through the engine, every stage on its own thread(s), joined by
//! bounded channels:
//!
//! reader threads → tiles → inference workers (one per device, each owning
//! its model copy, staging buffers and two batches in flight, so the device
//! never waits for the host) → finished batches → stitcher thread (label
//! and probability stitchers) → bands of finished rows, shared → one writer
//! thread per output (PNG, TIFF, GeoJSON… each streams its own file).
//!
//! Every channel is bounded and buffers are recycled, so memory does not
//! grow with the slide: readers stay at most two batches per worker ahead,
//! and at most a few batches of results wait for the stitcher. Tiles reach
//! the stitcher in any order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use wsiseg_infer::{Assembly, InFlight, InferError, Placement, Segmenter, Source, TileDecoder};
use wsiseg_slide::{
    Piece, RgbImage, Slide, SlideError, StoredTiles, TileIndex, TilePlan, WorkingLevel,
};
use wsiseg_stitch::Stitcher;

mod stitching;

use crate::control::Progress;
use crate::outputs::MaskOutput;
use crate::{BadTiles, EngineError, RunControl};
use stitching::{stitch, write_out, Finished, Outbox, Spare, Stitching, BANDS_QUEUED};

/// Reader threads take this many consecutive tiles at a time: neighbouring
/// tiles share slide tiles (their halo), which one thread then decodes and
/// reuses instead of two threads waiting on each other.
pub const READ_CHUNK: usize = 4;

/// Batches queued on a device at once: one running, one waiting behind it.
const IN_FLIGHT: usize = 2;

/// Seconds spent per stage (reading summed over the reader threads,
/// inference over the workers) and tiles per worker.
#[derive(Debug, Clone, Default)]
pub(crate) struct PipelineStats {
    pub read: f64,
    pub inference: f64,
    /// The stitcher thread's busy time, and each writer thread's.
    pub stitch: f64,
    pub writers: Vec<f64>,
    pub wall: f64,
    pub tiles_per_worker: Vec<usize>,
    pub class_pixels: Vec<u64>,
    pub bad_tiles: Vec<BadTile>,
    /// Stored JPEG tiles decoded on the devices (each once per batch).
    pub device_decoded: u64,
    /// Batches whose stored tiles the device decoder failed on, decoded
    /// on the host instead.
    pub decode_fallbacks: u64,
}

/// A corrupt stored tile whose working tiles were made background
/// ([`BadTiles::Background`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BadTile {
    /// The level it belongs to and its number there.
    pub level: u32,
    /// Its number in the level (raster order).
    pub tile: usize,
    /// Its pixels in level-0 coordinates: x, y, width, height.
    pub level0: [i64; 4],
    /// What the decoder said.
    pub detail: String,
}

/// The bad tiles met so far, and the working tiles they made background.
#[derive(Default)]
struct BadLog {
    tiles: std::collections::BTreeMap<(u32, usize), BadTile>,
    working: std::collections::HashSet<TileIndex>,
}

/// One slide's tiles through the workers into the outputs.
pub(crate) struct Job<'a> {
    pub slide: &'a dyn Slide,
    pub working: WorkingLevel,
    pub plan: TilePlan,
    pub workers: &'a [Mutex<Segmenter>],
    pub batch: usize,
    pub readers: usize,
    /// The model's classes, background included.
    pub classes: usize,
    /// Which tiles to run (raster order); the others are background.
    pub run: &'a [bool],
    pub control: &'a RunControl<'a>,
    pub bad_tiles: BadTiles,
    /// One device JPEG decoder per worker, when this slide's stored JPEG
    /// tiles are decoded on the devices.
    pub decoders: Option<&'a [Mutex<Option<TileDecoder>>]>,
}

/// A working tile as a reader thread hands it on.
enum Read {
    /// Its pixels (decoded on the host).
    Pixels(RgbImage),
    /// The stored JPEG tiles it is made of, for the worker's device decoder.
    Stored(StoredTiles),
}

type ReadResult = (usize, Result<Read, SlideError>);

/// Shared between the threads of one job.
struct Shared<'a> {
    plan: TilePlan,
    control: &'a RunControl<'a>,
    /// Set when any stage fails or the run is cancelled: everyone stops.
    stop: AtomicBool,
    tiles_done: AtomicU64,
    tiles_total: u64,
    with_probs: bool,
    /// Probability planes per tile when `with_probs` (classes − 1).
    planes: usize,
    batch: usize,
    /// The slide, and level-0 pixels per working-level pixel: for errors
    /// that name a tile's place on the slide.
    slide: &'a std::path::Path,
    downsample: f64,
    bad_tiles: BadTiles,
    bad: Mutex<BadLog>,
    /// Readers hand on stored JPEG tiles, not pixels.
    device_decode: bool,
    device_decoded: AtomicU64,
    decode_fallbacks: AtomicU64,
}

impl Shared<'_> {
    /// A batch of `tiles` handed to the device at `submitted` is back (its
    /// wait began at `waited`): the batch and progress callbacks.
    fn batch_done(&self, submitted: Instant, waited: Instant, tiles: usize) {
        self.control.batch_done(crate::BatchTimes {
            submitted,
            finished: Instant::now(),
            tiles,
        });
        tracing::debug!(
            tiles,
            wait_ms = waited.elapsed().as_millis() as u64,
            "batch done"
        );
        let k = tiles as u64;
        let so_far = self.tiles_done.fetch_add(k, Ordering::Relaxed) + k;
        self.control.progress(Progress {
            tiles_done: so_far,
            tiles_total: self.tiles_total,
        });
    }

    /// Buffers for one batch's labels and probability planes.
    fn result_buffers(&self, tile_px: usize) -> Spare {
        let px = self.batch * tile_px;
        (
            vec![0u8; px],
            self.with_probs.then(|| vec![0u8; px * self.planes]),
        )
    }

    /// A failed read of working tile `n`: with [`BadTiles::Background`] and
    /// a bad stored tile, logged and replaced by a white tile (whose labels
    /// the worker then clears); otherwise the error.
    fn bad_read(&self, slide: &dyn Slide, n: usize, e: SlideError) -> Result<RgbImage, SlideError> {
        let SlideError::BadTile {
            level,
            tile,
            rect,
            detail,
            ..
        } = &e
        else {
            return Err(e);
        };
        if self.bad_tiles != BadTiles::Background {
            return Err(e);
        }
        let (level, tile, rect) = (*level, *tile, *rect);
        let d = slide.levels()[level as usize].downsample;
        let at = |v: f64| (v * d).round() as i64;
        let level0 = [
            at(rect.x as f64),
            at(rect.y as f64),
            at(f64::from(rect.w)),
            at(f64::from(rect.h)),
        ];
        let working = self.plan.nth(n);
        let mut bad = self.bad.lock().unwrap_or_else(PoisonError::into_inner);
        bad.working.insert(working.index);
        bad.tiles.entry((level, tile)).or_insert_with(|| BadTile {
            level,
            tile,
            level0,
            detail: detail.clone(),
        });
        Ok(RgbImage::from_pixel(
            working.rect.w,
            working.rect.h,
            wsiseg_slide::BACKGROUND,
        ))
    }

    /// Stored tiles decoded on the devices, batches that fell back to the
    /// host, and the bad tiles met.
    fn finish(self) -> (u64, u64, Vec<BadTile>) {
        let bad = self
            .bad
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        (
            self.device_decoded.into_inner(),
            self.decode_fallbacks.into_inner(),
            bad.tiles.into_values().collect(),
        )
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.control.cancelled()
    }
}

/// What the threads of one job return: each worker's busy time and tiles,
/// the stitcher's class counts and busy time, and each writer's busy time.
type Joined = (
    Vec<Result<(Duration, usize), EngineError>>,
    Result<(Vec<u64>, Duration), EngineError>,
    Vec<Result<Duration, EngineError>>,
);

impl Job<'_> {
    /// Runs every tile to be run into `outputs` (their format `names`, for
    /// their threads' names).
    pub fn run(
        self,
        outputs: &mut [Box<dyn MaskOutput>],
        names: &[&'static str],
    ) -> Result<PipelineStats, EngineError> {
        let start = Instant::now();
        let todo: Vec<usize> = (0..self.plan.len()).filter(|&n| self.run[n]).collect();
        let with_probs = outputs.iter().any(|o| o.wants_probabilities());
        let planes = self.classes - 1;
        let plan = self.plan;
        let stitching = Stitching {
            labels: Stitcher::with_tiles(plan, Outbox::default(), self.run.to_vec()),
            probs: (0..if with_probs { planes } else { 0 })
                .map(|_| Stitcher::with_tiles(plan, Outbox::default(), self.run.to_vec()))
                .collect(),
            writers: Vec::new(),
            counts: vec![0; 256],
            level_pixels: plan.level_size().area(),
            lent: VecDeque::new(),
        };
        // The reader keeps each decoded slide tile from its first read to
        // its last (on the host; device decoding keeps nothing decoded).
        if self.decoders.is_none() {
            self.working
                .plan_reads(self.slide, todo.iter().map(|&n| plan.nth(n).rect));
        }
        let shared = Shared {
            plan,
            control: self.control,
            stop: AtomicBool::new(false),
            tiles_done: AtomicU64::new(0),
            tiles_total: todo.len() as u64,
            with_probs,
            planes,
            batch: self.batch,
            slide: self.slide.path(),
            downsample: self.working.downsample,
            bad_tiles: self.bad_tiles,
            bad: Mutex::new(BadLog::default()),
            device_decode: self.decoders.is_some(),
            device_decoded: AtomicU64::new(0),
            decode_fallbacks: AtomicU64::new(0),
        };
        let read_nanos = AtomicU64::new(0);
        let over_budget = AtomicU64::new(0);
        let finished = AtomicBool::new(false);
        let (inferred, stitched, written) = std::thread::scope(|scope| {
            if let Some(limit) = crate::memory::budget() {
                let (shared, finished, over) = (&shared, &finished, &over_budget);
                scope.spawn(move || watch_memory(limit, shared, finished, over));
            }
            let r = self.run_stages(&todo, &shared, &read_nanos, stitching, outputs, names);
            finished.store(true, Ordering::Relaxed);
            r
        });
        if self.control.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let rss = over_budget.load(Ordering::Relaxed);
        if rss > 0 {
            let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
            return Err(EngineError::MemoryLimit {
                slide: self.slide.path().to_path_buf(),
                rss_mib: mib(rss),
                limit_mib: mib(crate::memory::budget().unwrap_or(0)),
            });
        }
        let (writers, (counts, stitch), (busy, tiles_per_worker)) =
            first_cause(inferred, stitched, written)?;
        let (device_decoded, decode_fallbacks, bad_tiles) = shared.finish();
        Ok(PipelineStats {
            read: read_nanos.load(Ordering::Relaxed) as f64 * 1e-9,
            inference: busy.as_secs_f64(),
            stitch: stitch.as_secs_f64(),
            writers,
            wall: start.elapsed().as_secs_f64(),
            tiles_per_worker,
            class_pixels: counts,
            bad_tiles,
            device_decoded,
            decode_fallbacks,
        })
    }

    /// Reader threads, one inference thread per worker, the stitcher thread
    /// and one writer thread per output, joined by bounded channels; returns
    /// when all ended.
    fn run_stages(
        &self,
        todo: &[usize],
        shared: &Shared,
        read_nanos: &AtomicU64,
        mut stitching: Stitching,
        outputs: &mut [Box<dyn MaskOutput>],
        names: &[&'static str],
    ) -> Joined {
        let (slide, working) = (self.slide, &self.working);
        let workers = self.workers.len().max(1);
        let readers = self.readers.max(1);
        let (tiles_tx, tiles_rx) =
            crossbeam_channel::bounded::<ReadResult>(self.batch * 2 * workers);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<Finished>(IN_FLIGHT * workers);
        let (spare_tx, spare_rx) = crossbeam_channel::unbounded::<Spare>();
        // Tile buffers go back to the readers once copied into a batch: no
        // allocation per tile, so the heap does not fragment as slides grow.
        let (pool_tx, pool_rx) =
            crossbeam_channel::bounded::<Vec<u8>>(self.batch * 2 * workers + readers);
        let next = AtomicUsize::new(0);
        let next = &next;
        let tile_px = (shared.plan.tile_size() as usize).pow(2);
        std::thread::scope(|scope| {
            for _ in 0..readers {
                let (tx, pool) = (tiles_tx.clone(), pool_rx.clone());
                spawn(scope, "read".into(), move || {
                    read_tiles(slide, working, todo, next, shared, read_nanos, &tx, &pool)
                });
            }
            drop(tiles_tx);
            let handles: Vec<_> = self
                .workers
                .iter()
                .enumerate()
                .map(|(i, model)| {
                    let (tiles, done, spare, pool) = (
                        tiles_rx.clone(),
                        done_tx.clone(),
                        spare_rx.clone(),
                        pool_tx.clone(),
                    );
                    let decoder = self.decoders.and_then(|d| d.get(i));
                    spawn(scope, format!("infer-{i}"), move || {
                        let model = model.lock().unwrap_or_else(PoisonError::into_inner);
                        model.bind_thread();
                        let mut decoder =
                            decoder.map(|d| d.lock().unwrap_or_else(PoisonError::into_inner));
                        let decoder = decoder.as_mut().and_then(|d| d.as_mut());
                        let stages = (&*model, slide, shared);
                        run_worker(stages, decoder, &tiles, &done, &spare, &pool)
                    })
                })
                .collect();
            drop((tiles_rx, done_tx, spare_rx, pool_tx));
            let writers: Vec<_> = outputs
                .iter_mut()
                .zip(names)
                .map(|(output, name)| {
                    let (tx, rx) = crossbeam_channel::bounded(BANDS_QUEUED);
                    stitching.writers.push((tx, output.wants_probabilities()));
                    spawn(scope, format!("write-{name}"), move || {
                        write_out(output, rx, shared)
                    })
                })
                .collect();
            // Returns having dropped the writers' senders: they finish. On a
            // thread of its own, named for profilers and `top -H`.
            let stitched = spawn(scope, "stitch".into(), move || {
                stitch(stitching, &done_rx, &spare_tx, tile_px, shared)
            })
            .join()
            .unwrap_or(Err(EngineError::Panicked("stitcher")));
            if stitched.is_err() {
                shared.stop.store(true, Ordering::Relaxed);
            }
            // Blocked workers woke up when the stitcher thread ended and
            // dropped its receiver: it takes no more batches.
            let inferred: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(EngineError::Panicked("inference"))))
                .collect();
            let written = writers
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(EngineError::Panicked("output"))))
                .collect();
            (inferred, stitched, written)
        })
    }
}

/// One inference worker's thread: [`infer`], with a panic (libtorch
/// failing to allocate a tensor…) made this worker's error with its message
/// — the stitcher's missing tiles are only its effect; any error stops the
/// job.
fn run_worker(
    (model, slide, shared): (&Segmenter, &dyn Slide, &Shared),
    decoder: Option<&mut TileDecoder>,
    tiles: &Receiver<ReadResult>,
    done: &Sender<Finished>,
    spare: &Receiver<Spare>,
    pool: &Sender<Vec<u8>>,
) -> Result<(Duration, usize), EngineError> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        infer((model, slide, shared), decoder, tiles, done, spare, pool)
    }))
    .unwrap_or_else(|payload| {
        Err(EngineError::Internal {
            slide: slide.path().to_path_buf(),
            detail: format!(
                "the inference worker failed: {}",
                panic_message(payload.as_ref())
            ),
        })
    });
    if r.is_err() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    r
}

/// The first line of a panic's message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string());
    text.lines().next().unwrap_or_default().to_string()
}

/// Every stage's result, or the error that caused the others: a writer's
/// (a full disk…) stops the stitcher and inference; a worker's own error
/// (not "stopped") leaves tiles missing at the stitcher; else a stitcher
/// error stops inference.
#[allow(clippy::type_complexity)]
fn first_cause(
    inferred: Vec<Result<(Duration, usize), EngineError>>,
    stitched: Result<(Vec<u64>, Duration), EngineError>,
    written: Vec<Result<Duration, EngineError>>,
) -> Result<(Vec<f64>, (Vec<u64>, Duration), (Duration, Vec<usize>)), EngineError> {
    let workers = join_workers(inferred);
    let writers = join_writers(written)?;
    let worker_failed = matches!(&workers, Err(e) if !matches!(e, EngineError::Stopped));
    if worker_failed && stitched.is_err() {
        if let Err(e) = workers {
            return Err(e);
        }
    }
    let stitched = stitched?;
    Ok((writers, stitched, workers?))
}

/// Starts a thread of the job named `name` (as `top -H` and profilers show it).
fn spawn<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: String,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, T> {
    std::thread::Builder::new()
        .name(name)
        .spawn_scoped(scope, f)
        .expect("the system cannot start a thread")
}

/// Each writer's busy time in seconds, or the first writer's error.
fn join_writers(written: Vec<Result<Duration, EngineError>>) -> Result<Vec<f64>, EngineError> {
    written
        .into_iter()
        .map(|w| w.map(|busy| busy.as_secs_f64()))
        .collect()
}

/// The workers' summed busy time and tiles each, or the first worker's own
/// error (not the "stopped" of the others, unless that is all there is).
fn join_workers(
    inferred: Vec<Result<(Duration, usize), EngineError>>,
) -> Result<(Duration, Vec<usize>), EngineError> {
    let mut busy = Duration::ZERO;
    let mut tiles_per_worker = Vec::new();
    let mut first_error: Option<EngineError> = None;
    for r in inferred {
        match r {
            Ok((d, n)) => {
                busy += d;
                tiles_per_worker.push(n);
            }
            Err(e)
                if first_error
                    .as_ref()
                    .is_none_or(|f| matches!(f, EngineError::Stopped)) =>
            {
                first_error = Some(e);
            }
            Err(_) => {}
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((busy, tiles_per_worker)),
    }
}

/// Checks the process's resident memory every few milliseconds until the
/// stages have `finished`; above `limit`, records it in `over` and stops them.
fn watch_memory(limit: u64, shared: &Shared, finished: &AtomicBool, over: &AtomicU64) {
    while !finished.load(Ordering::Relaxed) {
        if let Some(rss) = crate::memory::rss_bytes().filter(|&r| r > limit) {
            over.store(rss, Ordering::Relaxed);
            shared.stop.store(true, Ordering::Relaxed);
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A reader thread: takes runs of [`READ_CHUNK`] tiles until none are left.
#[allow(clippy::too_many_arguments)]
fn read_tiles(
    slide: &dyn Slide,
    working: &WorkingLevel,
    todo: &[usize],
    next: &AtomicUsize,
    shared: &Shared,
    read_nanos: &AtomicU64,
    tx: &Sender<ReadResult>,
    pool: &Receiver<Vec<u8>>,
) {
    loop {
        let first = next.fetch_add(READ_CHUNK, Ordering::Relaxed);
        if first >= todo.len() {
            return;
        }
        for &n in &todo[first..(first + READ_CHUNK).min(todo.len())] {
            if shared.stopping() {
                return;
            }
            let t0 = Instant::now();
            let rect = shared.plan.nth(n).rect;
            let stored = shared
                .device_decode
                .then(|| working.read_stored(slide, rect))
                .flatten();
            let read = match stored {
                Some(Ok(stored)) => Ok(Read::Stored(stored)),
                Some(Err(e)) => shared.bad_read(slide, n, e).map(Read::Pixels),
                None => {
                    let buf = pool.try_recv().unwrap_or_default();
                    working
                        .read_into(slide, rect, buf)
                        .or_else(|e| shared.bad_read(slide, n, e))
                        .map(Read::Pixels)
                }
            };
            read_nanos.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if tx.send((n, read)).is_err() {
                return;
            }
        }
    }
}

/// One inference worker: packs tiles into its staging buffers as they come,
/// keeps [`IN_FLIGHT`] batches queued on its device, and hands each finished
/// batch to the stitcher. Returns the time spent queuing and collecting
/// batches, and the tiles it ran.
fn infer(
    (model, slide, shared): (&Segmenter, &dyn Slide, &Shared),
    mut decoder: Option<&mut TileDecoder>,
    tiles: &Receiver<ReadResult>,
    done: &Sender<Finished>,
    spare: &Receiver<Spare>,
    pool: &Sender<Vec<u8>>,
) -> Result<(Duration, usize), EngineError> {
    let t = shared.plan.tile_size();
    let tile_px = (t as usize).pow(2);
    let batch = shared.batch;
    let mut free: Vec<_> = (0..IN_FLIGHT).map(|_| model.staging(batch, t)).collect();
    // With each batch in flight, its stored tiles: their streams stay
    // alive until the device is done with the batch.
    type Queued = (InFlight, Vec<TileIndex>, Instant, Vec<StoredTile>);
    let mut queued: VecDeque<Queued> = VecDeque::new();
    let mut busy = Duration::ZERO;
    let mut ran = 0;
    let mut input_done = false;
    loop {
        if !input_done && queued.len() < IN_FLIGHT {
            let mut staging = free.pop().expect("a staging buffer per batch in flight");
            let mut indices = Vec::with_capacity(batch);
            let mut stored: Vec<StoredTile> = Vec::new();
            while indices.len() < batch {
                if shared.stopping() {
                    return Err(stopped(shared));
                }
                let Ok((n, read)) = tiles.recv() else {
                    input_done = true;
                    break;
                };
                match read? {
                    Read::Pixels(rgb) => {
                        staging
                            .tile_mut(indices.len())
                            .copy_from_slice(rgb.as_raw());
                        let _ = pool.try_send(rgb.into_raw());
                    }
                    Read::Stored(tiles) => stored.push((indices.len(), n, tiles)),
                }
                indices.push(shared.plan.nth(n).index);
            }
            if indices.is_empty() {
                free.push(staging);
            } else {
                if let Some(limit) = shared.control.failing_after() {
                    if shared.tiles_done.load(Ordering::Relaxed) + indices.len() as u64 > limit {
                        return Err(EngineError::Injected { after: limit });
                    }
                }
                // On CUDA the last, partial batch runs at full size (the
                // extra tiles are ignored): one input shape, no new autotuning.
                let n = if model.device().is_cuda() {
                    batch
                } else {
                    indices.len()
                };
                let t0 = Instant::now();
                let stages = (model, slide, shared);
                let batch = (staging, n, indices.len());
                let flight = submit_stored(stages, decoder.as_deref_mut(), batch, &stored)?;
                busy += t0.elapsed();
                queued.push_back((flight, indices, t0, stored));
                // Keep the device fed: collect only once the next batch is queued.
                if queued.len() < IN_FLIGHT && !input_done {
                    continue;
                }
            }
        }
        let Some((flight, indices, submitted, _stored)) = queued.pop_front() else {
            return Ok((busy, ran));
        };
        let (mut labels, mut probs) = spare
            .try_recv()
            .unwrap_or_else(|_| shared.result_buffers(tile_px));
        let t0 = Instant::now();
        let staging = flight.wait_into(&mut labels, probs.as_deref_mut());
        free.push(staging.map_err(|e| locate(e, &indices, shared))?);
        busy += t0.elapsed();
        clear_bad(shared, &indices, tile_px, &mut labels, probs.as_deref_mut());
        ran += indices.len();
        shared.batch_done(submitted, t0, indices.len());
        done.send(Finished {
            indices,
            labels,
            probs,
        })
        .map_err(|_| stopped(shared))?;
    }
}

/// A working tile of a batch made from stored tiles: its place in the
/// batch, its number in the plan and its stored tiles.
type StoredTile = (usize, usize, StoredTiles);

/// Queues a batch (its staging buffer, its size on the device, its tiles)
/// with `stored` tiles on the device: their stored tiles
/// decoded there by `decoder` and the tiles cut from them. Where the
/// device decoder fails, the batch's stored tiles are decoded on the host
/// (whose strict decoder names a corrupt tile, as the CPU path does) and
/// the batch goes as a host batch.
fn submit_stored(
    (model, slide, shared): (&Segmenter, &dyn Slide, &Shared),
    decoder: Option<&mut TileDecoder>,
    (mut staging, n, tiles): (wsiseg_infer::Staging, usize, usize),
    stored: &[StoredTile],
) -> Result<InFlight, EngineError> {
    let Some(decoder) = decoder.filter(|_| !stored.is_empty()) else {
        return Ok(model.submit(staging, n, shared.with_probs)?);
    };
    let assembly = assembly_of(stored, tiles);
    match model.assemble(&staging, n, decoder, &assembly) {
        Ok(x) => {
            let k = assembly.streams.len() as u64;
            shared.device_decoded.fetch_add(k, Ordering::Relaxed);
            return Ok(model.submit_on_device(staging, x, n, shared.with_probs)?);
        }
        Err(InferError::Decode { detail }) => {
            shared.decode_fallbacks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                slide = %shared.slide.display(),
                "{} on a batch of stored tiles: decoding them on the host instead",
                detail
            );
        }
        Err(e) => return Err(e.into()),
    }
    for (slot, n, tiles) in stored {
        let rgb = host_pixels(slide, tiles).or_else(|e| shared.bad_read(slide, *n, e))?;
        staging.tile_mut(*slot).copy_from_slice(rgb.as_raw());
    }
    Ok(model.submit(staging, n, shared.with_probs)?)
}

/// The device's work for a batch of `tiles` tiles, `stored` of them made
/// from stored tiles: each distinct stored tile once, and where each
/// tile's parts come from.
fn assembly_of(stored: &[StoredTile], tiles: usize) -> Assembly<'_> {
    use std::collections::HashMap;
    let first = &stored[0].2;
    let mut assembly = Assembly {
        stored: (first.tile_width, first.tile_height),
        tiles: vec![None; tiles],
        rgb_components: first.rgb_components,
        ..Assembly::default()
    };
    let mut streams: HashMap<(u32, usize), usize> = HashMap::new();
    let mut host: HashMap<(u32, usize), usize> = HashMap::new();
    for (slot, _, tiles) in stored {
        let rect = tiles.rect;
        let placements = tiles
            .pieces
            .iter()
            .map(|p| {
                let source = match &p.content {
                    Piece::Jpeg(s) => Source::Stream(*streams.entry(p.key).or_insert_with(|| {
                        assembly.streams.push(s);
                        assembly.streams.len() - 1
                    })),
                    Piece::Pixels(img) => Source::Host(*host.entry(p.key).or_insert_with(|| {
                        assembly.host.push(img.as_raw());
                        assembly.host.len() - 1
                    })),
                    Piece::Fill(c) => Source::Fill(*c),
                };
                let offset = |a: i64, b: i64| u32::try_from(a - b).expect("a piece inside");
                Placement {
                    source,
                    from: (
                        offset(p.part.x, p.tile_rect.x),
                        offset(p.part.y, p.tile_rect.y),
                    ),
                    to: (offset(p.part.x, rect.x), offset(p.part.y, rect.y)),
                    size: (p.part.w, p.part.h),
                }
            })
            .collect();
        assembly.tiles[*slot] = Some(placements);
    }
    assembly
}

/// A working tile's pixels from its stored tiles, decoded on the host
/// (what [`WorkingLevel::read_into`] gives for it).
fn host_pixels(slide: &dyn Slide, tiles: &StoredTiles) -> Result<RgbImage, SlideError> {
    let rect = tiles.rect;
    let mut out = RgbImage::from_pixel(rect.w, rect.h, wsiseg_slide::BACKGROUND);
    for p in &tiles.pieces {
        let decoded;
        let img = match &p.content {
            Piece::Jpeg(_) => {
                decoded = slide.decode_stored(p.key.0, p.key.1).unwrap_or_else(|| {
                    Err(SlideError::BadTile {
                        path: slide.path().to_path_buf(),
                        level: p.key.0,
                        tile: p.key.1,
                        rect: p.tile_rect,
                        detail: "the reader cannot decode it on the host".into(),
                    })
                })?;
                &decoded
            }
            Piece::Pixels(img) => img.as_ref(),
            Piece::Fill(c) => {
                for y in 0..p.part.h {
                    for x in 0..p.part.w {
                        let (ox, oy) = (p.part.x - rect.x, p.part.y - rect.y);
                        out.put_pixel(ox as u32 + x, oy as u32 + y, image::Rgb(*c));
                    }
                }
                continue;
            }
        };
        let (fx, fy) = (
            (p.part.x - p.tile_rect.x) as u32,
            (p.part.y - p.tile_rect.y) as u32,
        );
        let (ox, oy) = ((p.part.x - rect.x) as u32, (p.part.y - rect.y) as u32);
        for y in 0..p.part.h {
            for x in 0..p.part.w {
                out.put_pixel(ox + x, oy + y, *img.get_pixel(fx + x, fy + y));
            }
        }
    }
    Ok(out)
}

/// Background (label 0, probabilities 0) for the tiles of a batch that
/// read a bad stored tile.
fn clear_bad(
    shared: &Shared,
    indices: &[TileIndex],
    tile_px: usize,
    labels: &mut [u8],
    probs: Option<&mut [u8]>,
) {
    if shared.bad_tiles != BadTiles::Background {
        return;
    }
    let bad: Vec<usize> = {
        let log = shared.bad.lock().unwrap_or_else(PoisonError::into_inner);
        if log.working.is_empty() {
            return;
        }
        (0..indices.len())
            .filter(|&i| log.working.contains(&indices[i]))
            .collect()
    };
    for &i in &bad {
        labels[i * tile_px..(i + 1) * tile_px].fill(0);
    }
    if let Some(p) = probs {
        let planes = shared.planes;
        for &i in &bad {
            p[i * planes * tile_px..(i + 1) * planes * tile_px].fill(0);
        }
    }
}

/// A model error with the slide and, for a tile that gave NaN or Inf, its
/// place in level-0 pixels.
fn locate(e: InferError, indices: &[TileIndex], shared: &Shared) -> EngineError {
    match e {
        InferError::NonFinite {
            path,
            precision,
            tile: Some(i),
        } if i < indices.len() => {
            let core = shared.plan.tile(indices[i]).core;
            let level0 = |v: f64| (v * shared.downsample).round() as i64;
            EngineError::NonFinite {
                slide: shared.slide.to_path_buf(),
                model: path,
                precision,
                x: level0(core.x as f64),
                y: level0(core.y as f64),
                w: level0(f64::from(core.w)) as u32,
                h: level0(f64::from(core.h)) as u32,
            }
        }
        e => e.into(),
    }
}

/// The error of a worker told to stop: cancelled, or another stage failed
/// (whose error is then the one reported).
fn stopped(shared: &Shared) -> EngineError {
    if shared.control.cancelled() {
        EngineError::Cancelled
    } else {
        EngineError::Stopped
    }
}
