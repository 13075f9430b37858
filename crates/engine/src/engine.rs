//! The engine: models loaded on their devices, and what a slide needs
//! before its tiles run (working level, tile plan, tissue).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wsiseg_infer::{Device, Manifest, ModelSet, Precision, Segmenter, TileDecoder, Tta};
use wsiseg_slide::{Reader, Resolution, RgbImage, Size, Slide, TilePlan, WorkingLevel};

use crate::loading::{Loaded, Loading, TEST_LOAD_DELAY_MS};
use crate::outputs::{Format, OVERVIEW_SIDE};
use crate::{EngineError, Setting};

/// Tiles per model call on CUDA when none is given.
pub const DEFAULT_CUDA_BATCH: usize = 32;
/// Tiles per model call on the CPU when none is given.
pub const DEFAULT_CPU_BATCH: usize = 8;

/// Tiles per model call when none is given: [`DEFAULT_CUDA_BATCH`] on
/// CUDA, [`DEFAULT_CPU_BATCH`] on the CPU.
pub fn default_batch(device: Device) -> usize {
    if device.is_cuda() {
        DEFAULT_CUDA_BATCH
    } else {
        DEFAULT_CPU_BATCH
    }
}

/// Reader threads when none is given: all cores but two (one drives the
/// model, one stitches and writes), at least 2 and at most 24 (more only
/// wait on the bounded queue: 24 decode several GP/s).
pub fn default_readers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(2))
        .unwrap_or(2)
        .clamp(2, 24)
}

/// The most a level is reduced while reading (source pixels per working
/// pixel, per side): a tile is read as a (tile × scale)² region of its
/// source level: 200 MB of RGB at 256 px and this scale.
pub const MAX_READ_SCALE: f64 = 32.0;

/// Builds an [`Engine`]: `EngineBuilder::new(model).devices(..).build()`.
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    /// The models and their weights (one, or an ensemble).
    models: Vec<(PathBuf, f64)>,
    tta: Tta,
    devices: Vec<Device>,
    precision: Option<Precision>,
    batch: Option<usize>,
    readers: Option<usize>,
    threshold: Option<f64>,
    decode: Decode,
    warm_up: Option<u32>,
}

impl EngineBuilder {
    /// An engine for the model at `model` (a folder with model.pt and
    /// manifest.json, or a .pt file with its .json beside it), on the CPU
    /// unless [`Self::devices`] says otherwise.
    pub fn new(model: impl AsRef<Path>) -> Self {
        Self {
            models: vec![(model.as_ref().to_path_buf(), 1.0)],
            tta: Tta::None,
            devices: vec![Device::Cpu],
            precision: None,
            batch: None,
            readers: None,
            threshold: None,
            decode: Decode::default(),
            warm_up: None,
        }
    }

    /// Where stored JPEG tiles are decoded [default: auto, on the GPU when
    /// the model runs on one and nvJPEG is there].
    pub fn decode(mut self, decode: Decode) -> Self {
        self.decode = decode;
        self
    }

    /// One inference worker per entry (`[Cpu, Cpu]` runs two CPU workers).
    pub fn devices(mut self, devices: Vec<Device>) -> Self {
        self.devices = devices;
        self
    }

    /// The model's precision [default: f16 on CUDA, f32 on the CPU].
    pub fn precision(mut self, precision: Option<Precision>) -> Self {
        self.precision = precision;
        self
    }

    /// Tiles per model call, per worker [default: 32 on CUDA, 8 on the CPU].
    pub fn batch(mut self, batch: Option<usize>) -> Self {
        self.batch = batch;
        self
    }

    /// Reader threads [default: [`default_readers`]].
    pub fn readers(mut self, readers: Option<usize>) -> Self {
        self.readers = readers;
        self
    }

    /// An ensemble instead of the one model: their class probabilities are
    /// averaged with these weights (see [`ModelSet::read`]).
    pub fn models(mut self, models: Vec<(PathBuf, f64)>) -> Self {
        self.models = models;
        self
    }

    /// Test-time augmentation [default: none].
    pub fn tta(mut self, tta: Tta) -> Self {
        self.tta = tta;
        self
    }

    /// Binary models: a pixel is tumor when P(tumor) > `threshold`
    /// [default: the manifest's `threshold`, else the arg-max].
    pub fn threshold(mut self, threshold: Option<f64>) -> Self {
        self.threshold = threshold;
        self
    }

    /// The tile side slides will run at, for the warm-up on CUDA
    /// [default: the manifest's tile].
    pub fn warm_up(mut self, tile: Option<u32>) -> Self {
        self.warm_up = tile;
        self
    }

    /// Loads the models on every device (on CUDA, warmed up at the batch's
    /// shape) and returns the engine once they are ready.
    pub fn build(self) -> Result<Engine, EngineError> {
        let engine = self.start()?;
        engine.loaded()?;
        Ok(engine)
    }

    /// Reads and checks the models and the settings, and returns the engine
    /// at once while the models load on a thread of their own: a slide's
    /// lock, resume check, opening and plan run meanwhile, and its tiles
    /// wait for the models. A model that fails to load is the error of the
    /// first slide that needs it ([`Engine::segment_many`] stops there);
    /// what a model's manifest and the settings can tell is an error here.
    pub fn start(self) -> Result<Engine, EngineError> {
        let first = *self.devices.first().ok_or_else(|| EngineError::Setting {
            setting: Setting::Devices,
            value: String::new(),
            problem: "no device to run the model on".into(),
        })?;
        let precision = self.precision.unwrap_or(Precision::default_for(first));
        let batch = self.batch.unwrap_or(default_batch(first));
        if batch == 0 {
            return Err(setting(Setting::Batch, 0, "must be at least 1"));
        }
        let readers = self.readers.unwrap_or_else(default_readers);
        if readers == 0 {
            return Err(setting(Setting::Readers, 0, "must be at least 1"));
        }
        if self.decode == Decode::Gpu && std::env::var_os(TEST_HOST_DECODE).is_none() {
            for &d in &self.devices {
                on_cuda(d).map_err(|why| no_gpu_decode(&why))?;
            }
        }
        let mut set = ModelSet::read(&self.models)?;
        set.set_threshold(self.threshold)?;
        let loading = {
            let (set, devices, tta, decode) =
                (set.clone(), self.devices.clone(), self.tta, self.decode);
            let tile = self.warm_up.unwrap_or(set.manifest().tile);
            Loading::spawn(move || load(&set, &devices, precision, tta, decode, (batch, tile)))?
        };
        // The load runs meanwhile.
        let members = set
            .members()
            .map(|(path, manifest, weight, runtime)| {
                Ok(Member {
                    name: manifest.name.clone(),
                    path: path.to_path_buf(),
                    sha256: file_sha256(path)?,
                    weight,
                    runtime,
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        Ok(Engine {
            members,
            tta: self.tta,
            loading,
            set,
            devices: self.devices,
            precision,
            batch,
            readers,
            decode: self.decode,
        })
    }
}

/// The models of `set` on every device, warmed up on CUDA at `shape`
/// (tiles per batch, tile side), and their JPEG decoders.
fn load(
    set: &ModelSet,
    devices: &[Device],
    precision: Precision,
    tta: Tta,
    decode: Decode,
    (batch, tile): (usize, u32),
) -> Result<Loaded, EngineError> {
    let started = Instant::now();
    if let Some(ms) = std::env::var(TEST_LOAD_DELAY_MS)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let workers = devices
        .iter()
        .map(|&d| {
            let mut segmenter = set.load(d, precision)?;
            segmenter.set_tta(tta);
            if d.is_cuda() {
                // cuDNN's algorithm search and TorchScript's profiling runs
                // for the batch's shape, now rather than in the first batches.
                segmenter.bind_thread();
                segmenter.warm_up(batch, tile)?;
            }
            Ok::<_, wsiseg_infer::InferError>(segmenter)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let libraries = workers[0].libraries();
    let (decoders, decode_unavailable) = tile_decoders(decode, &workers)?;
    tracing::debug!(
        "model loaded on {} in {:.2} s",
        crate::describe_devices(devices),
        started.elapsed().as_secs_f64()
    );
    Ok(Loaded {
        workers: workers.into_iter().map(Mutex::new).collect(),
        decoders,
        decode_unavailable,
        libraries,
    })
}

/// Why `device` cannot decode JPEG tiles on a GPU, if it cannot.
fn on_cuda(device: Device) -> Result<(), String> {
    if device.is_cuda() {
        Ok(())
    } else {
        Err(format!("the model runs on {device}, not on a CUDA GPU"))
    }
}

fn no_gpu_decode(why: &str) -> EngineError {
    setting(
        Setting::Decode,
        "gpu",
        &format!("cannot decode on the GPU: {why}"),
    )
}

/// Where the stored JPEG tiles of slides are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decode {
    /// On the host, by the reader threads (the CPU path).
    Cpu,
    /// On the GPU that runs the model (nvJPEG); an error where it cannot be.
    Gpu,
    /// On the GPU when the model runs on one and nvJPEG is there, else on
    /// the host.
    #[default]
    Auto,
}

/// Set (to anything) in tests only: `--decode gpu|auto` then makes tiles
/// on the model's device through the device path with the host's JPEG
/// decoder standing in for nvJPEG, so that the path's assembly runs (and
/// is checked against the CPU path) on machines without a GPU.
pub const TEST_HOST_DECODE: &str = "WSISEG_TEST_HOST_DECODE";

/// One device decoder per worker for `decode`, or none and why not (auto
/// where nvJPEG cannot run); `gpu` where it cannot is an error.
#[allow(clippy::type_complexity)]
fn tile_decoders(
    decode: Decode,
    workers: &[Segmenter],
) -> Result<(Vec<Mutex<Option<TileDecoder>>>, Option<String>), EngineError> {
    let none = || workers.iter().map(|_| Mutex::new(None)).collect();
    if decode == Decode::Cpu {
        return Ok((none(), None));
    }
    let host = std::env::var_os(TEST_HOST_DECODE).is_some();
    let mut decoders = Vec::new();
    for w in workers {
        let device = w.device();
        let made = if host {
            Ok(TileDecoder::host(device, host_decode))
        } else {
            on_cuda(device).and_then(|()| {
                w.bind_thread();
                TileDecoder::nvjpeg(device)
            })
        };
        match made {
            Ok(d) => decoders.push(Mutex::new(Some(d))),
            Err(why) if decode == Decode::Auto => return Ok((none(), Some(why))),
            Err(why) => return Err(no_gpu_decode(&why)),
        }
    }
    Ok((decoders, None))
}

/// The CPU path's JPEG decoder, for [`TEST_HOST_DECODE`].
fn host_decode(stream: &[u8], w: u32, h: u32) -> Result<Vec<u8>, String> {
    wsiseg_slide::decode_jpeg(stream, w, h).map(RgbImage::into_raw)
}

/// The SHA-256 of a file (a model), as lowercase hex.
pub fn file_sha256(path: &Path) -> Result<String, EngineError> {
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, "cannot read", e))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A model of the engine (one, or a member of an ensemble).
#[derive(Debug, Clone)]
pub struct Member {
    /// The manifest's name.
    pub name: String,
    /// The model file.
    pub path: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
    /// Its weight in the ensemble's average (1 alone).
    pub weight: f64,
    /// The runtime that runs it ("torchscript"…).
    pub runtime: &'static str,
}

/// The least memory one worker's batches take: per tile, the RGB staging
/// (1 byte a value), the model's input (4 bytes a value) and its output
/// (4 bytes a class), for the two batches in flight.
pub fn batch_bytes(batch: usize, tile: u32, classes: usize) -> u64 {
    let pixels = u64::from(tile) * u64::from(tile);
    let per_tile = pixels * (3 + 3 * 4 + 4 * classes.max(2) as u64);
    (batch as u64).saturating_mul(per_tile).saturating_mul(2)
}

pub(crate) fn setting(setting: Setting, value: impl ToString, problem: &str) -> EngineError {
    EngineError::Setting {
        setting,
        value: value.to_string(),
        problem: problem.to_string(),
    }
}

/// Models on their devices (or loading there), ready to segment slides one
/// after another.
pub struct Engine {
    /// The models on their devices, once loaded.
    loading: Loading,
    /// The models as read, with the threshold in use.
    set: ModelSet,
    devices: Vec<Device>,
    precision: Precision,
    pub(crate) batch: usize,
    pub(crate) readers: usize,
    members: Vec<Member>,
    tta: Tta,
    decode: Decode,
}

/// How the PNG mask stores classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskValues {
    /// 0 background, 1.. class index.
    #[default]
    ClassIndex,
    /// 0 background, 255 tumor (two-class models only).
    Binary255,
}

/// The size of the PNG mask.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MaskSize {
    /// The working level's.
    #[default]
    Working,
    /// This pyramid level's.
    Level(u32),
    /// This resolution's, in µm per pixel.
    Mpp(f64),
}

/// Which tiles run through the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TissuePolicy {
    /// Only tiles with tissue: thumbnail saturation above the threshold
    /// (Otsu's, at least 12, when `None`).
    Detect(Option<u8>),
    /// Every tile, glass included.
    All,
}

/// What to compute for a slide, and what to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Segment this pyramid level as stored; wins over `mpp`.
    pub level: Option<u32>,
    /// Segment at this resolution (µm/px) [default: the model's, when the slide records its own].
    pub mpp: Option<f64>,
    /// Take level 0 of every slide to be this many µm/px, whatever the file
    /// records (plain PNG/JPEG/TIFF record none).
    pub slide_mpp: Option<f64>,
    /// Tile side in working-level pixels [default: the model's].
    pub tile: Option<u32>,
    /// Pixels shared by neighbouring tiles [default: tile/8].
    pub overlap: Option<u32>,
    /// Which tiles run.
    pub tissue: TissuePolicy,
    /// How slide levels are read.
    pub reader: Reader,
    /// The outputs to write.
    pub formats: Vec<Format>,
    /// PNG mask size.
    pub mask_size: MaskSize,
    /// PNG mask values.
    pub mask_values: MaskValues,
    /// GeoJSON: smallest region kept, µm² (level-0 px² without a resolution).
    pub min_area: f64,
    /// Redo a slide whose outputs exist.
    pub overwrite: bool,
    /// What a corrupt stored tile of the slide does.
    pub bad_tiles: BadTiles,
}

/// What a corrupt stored tile (a JPEG tile whose data is damaged) does to
/// a slide's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadTiles {
    /// The slide fails, naming the file, level and tile.
    #[default]
    Fail,
    /// Every working tile that reads it is background (label 0, P = 0),
    /// with a warning; the tiles are listed in the report and summary.
    Background,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            level: None,
            mpp: None,
            slide_mpp: None,
            tile: None,
            overlap: None,
            tissue: TissuePolicy::Detect(None),
            reader: Reader::Auto,
            formats: vec![
                Format::PNG,
                Format::TIFF,
                Format::GEOJSON,
                Format::OVERLAY,
                Format::REPORT,
            ],
            mask_size: MaskSize::Working,
            mask_values: MaskValues::ClassIndex,
            min_area: 500.0,
            overwrite: false,
            bad_tiles: BadTiles::Fail,
        }
    }
}

/// Tissue found on the thumbnail.
#[derive(Debug, Clone)]
pub struct Tissue {
    /// Share of the thumbnail that is tissue.
    pub fraction: f64,
    /// Per planned tile: whether its core holds tissue.
    pub tiles: Vec<bool>,
    /// Thumbnail saturation above which a pixel is tissue.
    pub threshold: u8,
}

/// Everything about a slide decided before its tiles run.
#[derive(Debug, Clone)]
pub struct SlidePlan {
    /// The level (or scaled level) segmented.
    pub working: WorkingLevel,
    /// Tiles over it.
    pub tiles: TilePlan,
    /// Tile side and overlap.
    pub tile: u32,
    /// Pixels shared by neighbouring tiles.
    pub overlap: u32,
    /// The thumbnail, when tissue detection or an output needs it.
    pub thumbnail: Option<RgbImage>,
    /// Tissue, when detected.
    pub tissue: Option<Tissue>,
    /// Per planned tile: whether it runs through the model.
    pub run: Vec<bool>,
    /// Size of the PNG mask.
    pub png_size: Size,
    /// Seconds spent opening and planning.
    pub seconds: f64,
}

impl SlidePlan {
    /// Tiles that run through the model.
    pub fn tiles_to_run(&self) -> usize {
        self.run.iter().filter(|&&r| r).count()
    }
}

impl Engine {
    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        self.set.manifest()
    }

    /// The model file.
    pub fn model_path(&self) -> &Path {
        self.set.path()
    }

    /// SHA-256 of the model file.
    pub fn model_sha256(&self) -> &str {
        &self.members[0].sha256
    }

    /// One device per inference worker.
    pub fn devices(&self) -> Vec<Device> {
        self.devices.clone()
    }

    /// Where stored JPEG tiles are decoded, as asked.
    pub fn decode(&self) -> Decode {
        self.decode
    }

    /// The models on their devices: waits for their load ([`EngineBuilder::start`]).
    pub(crate) fn loaded(&self) -> Result<&Loaded, EngineError> {
        self.loading.get()
    }

    /// Whether the models failed to load (every slide would fail alike).
    pub(crate) fn load_failed(&self) -> bool {
        self.loading.failed()
    }

    /// How `slide`'s tiles at `working` are decoded, for its report: `cpu`,
    /// `gpu: nvJPEG (hardware)`…, with why not on the GPU where it was asked.
    pub(crate) fn decoded_by(
        &self,
        loaded: &Loaded,
        slide: &dyn Slide,
        working: &WorkingLevel,
    ) -> (bool, String) {
        if self.decode == Decode::Cpu {
            return (false, "cpu".into());
        }
        if let Some(why) = &loaded.decode_unavailable {
            let cuda = self.devices.iter().any(|d| d.is_cuda());
            return (
                false,
                if cuda {
                    format!("cpu (nvJPEG unavailable: {why})")
                } else {
                    "cpu".into()
                },
            );
        }
        if let Err(why) = working.stored_jpeg(slide) {
            return (false, format!("cpu ({why})"));
        }
        let name = loaded.decoders[0]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map_or("none", TileDecoder::name);
        (true, format!("gpu: {name}"))
    }

    /// The devices as `cpu`, `cuda:0`…, one per worker.
    pub fn device_names(&self) -> Vec<String> {
        self.devices.iter().map(ToString::to_string).collect()
    }

    /// The precision the model runs in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The libraries the model's runtime runs on, with their versions
    /// (TorchScript: libtorch, the CUDA runtime, cuDNN), for reports: none
    /// when the models did not load (this waits for their load).
    pub fn libraries(&self) -> &[(&'static str, Option<String>)] {
        self.loaded().map_or(&[], |l| &l.libraries[..])
    }

    /// Every model (one when alone), with its file, SHA-256 and weight.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The test-time augmentation in use.
    pub fn tta(&self) -> Tta {
        self.tta
    }

    /// The threshold on P(tumor) in use (binary models), if any.
    pub fn threshold(&self) -> Option<f64> {
        self.set.threshold()
    }

    /// How each pixel's class is decided: "arg-max" or "P(tumor) > 0.3".
    pub fn decision(&self) -> String {
        self.set.decision()
    }

    /// Tiles per model call, per worker.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Reader threads.
    pub fn readers(&self) -> usize {
        self.readers
    }

    /// Refuses a batch whose buffers alone would not fit in the memory
    /// budget (before anything is allocated: a failed allocation aborts).
    fn check_batch_memory(&self, tile: u32) -> Result<(), EngineError> {
        let classes = self.manifest().classes.len();
        let workers = self.devices.len().max(1) as u64;
        let need = batch_bytes(self.batch, tile, classes).saturating_mul(workers);
        let budget = crate::memory::budget().unwrap_or_else(crate::memory::default_budget);
        if need <= budget {
            return Ok(());
        }
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        // One tile in every worker's buffers.
        let per_tile = batch_bytes(1, tile, classes).saturating_mul(workers);
        let fits = budget / per_tile.max(1);
        let whose = if workers > 1 {
            format!("{workers} workers' staging, input and output tensors")
        } else {
            "the staging, input and output tensors".to_string()
        };
        if fits == 0 {
            return Err(setting(
                Setting::Tile,
                tile,
                &format!(
                    "one tile of {tile} px needs at least {:.1} GiB ({whose}, two batches in flight), more than the memory budget ({:.1} GiB)",
                    gib(per_tile),
                    gib(budget),
                ),
            ));
        }
        Err(setting(
            Setting::Batch,
            self.batch,
            &format!(
                "a batch of {} tiles of {tile} px needs at least {:.1} GiB ({whose}, two batches in flight), more than the memory budget ({:.1} GiB); a batch of {fits} fits",
                self.batch,
                gib(need),
                gib(budget),
            ),
        ))
    }

    /// Checks a tile side for this model: a positive multiple of its tile
    /// multiple, at most [`wsiseg_infer::MAX_TILE`], whose batches fit the
    /// memory budget.
    pub fn check_tile(&self, tile: u32) -> Result<(), EngineError> {
        let m = self.manifest();
        if tile == 0 || !tile.is_multiple_of(m.tile_multiple) {
            return Err(setting(
                Setting::Tile,
                tile,
                &format!(
                    "model {} needs tiles that are a positive multiple of {} pixels",
                    m.name, m.tile_multiple
                ),
            ));
        }
        if tile > wsiseg_infer::MAX_TILE {
            return Err(setting(
                Setting::Tile,
                tile,
                &format!(
                    "is more than the largest tile wsiseg runs ({} pixels)",
                    wsiseg_infer::MAX_TILE
                ),
            ));
        }
        self.check_batch_memory(tile)
    }

    /// Checks what can be checked of a request without a slide.
    pub fn check(&self, request: &Request) -> Result<(u32, u32), EngineError> {
        let m = self.manifest();
        let tile = request.tile.unwrap_or(m.tile);
        self.check_tile(tile)?;
        let overlap = request.overlap.unwrap_or(tile / 8);
        if overlap >= tile {
            return Err(setting(
                Setting::Overlap,
                overlap,
                &format!("must be smaller than the tile ({tile})"),
            ));
        }
        if request.formats.is_empty() {
            return Err(setting(Setting::Outputs, "", "nothing to write"));
        }
        if let MaskSize::Mpp(m) = request.mask_size {
            if !(m.is_finite() && m > 0.0) {
                return Err(setting(
                    Setting::MaskMpp,
                    m,
                    "must be a positive number of µm per pixel",
                ));
            }
        }
        if let Some(m) = request.slide_mpp {
            if !(m.is_finite() && m > 0.0) {
                return Err(setting(
                    Setting::SlideMpp,
                    m,
                    "must be a positive number of µm per pixel",
                ));
            }
        }
        if !(request.min_area.is_finite() && request.min_area >= 0.0) {
            return Err(setting(
                Setting::MinArea,
                request.min_area,
                "must be zero or positive",
            ));
        }
        if request.mask_values == MaskValues::Binary255 && m.classes.len() > 2 {
            return Err(setting(
                Setting::MaskValues,
                "0255",
                &format!(
                    "is for two-class models; {} has {} classes",
                    m.name,
                    m.classes.len()
                ),
            ));
        }
        Ok((tile, overlap))
    }

    /// Decides how `slide` is segmented: the working level, the tile plan,
    /// the tissue and the PNG mask's size.
    pub fn plan(&self, slide: &dyn Slide, request: &Request) -> Result<SlidePlan, EngineError> {
        let started = Instant::now();
        let (tile, overlap) = self.check(request)?;
        let wants = |f| request.formats.contains(&f);
        let mut plan = plan_tiles(
            slide,
            resolution(request, slide, self.manifest()),
            tile,
            overlap,
            request.tissue,
            wants(Format::OVERLAY) || wants(Format::REPORT),
        )?;
        plan.png_size = png_size(request, slide, &plan.working)?;
        plan.seconds = started.elapsed().as_secs_f64();
        Ok(plan)
    }
}

/// The working level for `resolution` ([`WorkingLevel::choose`]), refused
/// when it would reduce its source level more than [`MAX_READ_SCALE`]×.
pub fn working_level(
    slide: &dyn Slide,
    resolution: Resolution,
) -> Result<WorkingLevel, EngineError> {
    let working = WorkingLevel::choose(slide, resolution)?;
    if working.scale > MAX_READ_SCALE {
        // Each tile would be read as a (tile × scale)² region of the
        // source level: at --mpp 1000 on a one-level slide, gigapixels.
        return Err(EngineError::Unsupported {
            slide: slide.path().to_path_buf(),
            problem: format!(
                "{} is {:.0}× coarser than the finest level it can be read from (level {}{}): wsiseg reduces levels by at most {MAX_READ_SCALE}× while reading; choose a finer resolution (mpp) or a level",
                working.mpp.map_or("this resolution".to_string(), |m| format!("{m} µm/px")),
                working.scale,
                working.source_level,
                slide.mpp().map_or(String::new(), |m| format!(
                    ", {:.3} µm/px",
                    m.mean() * slide.levels()[working.source_level as usize].downsample
                )),
            ),
        });
    }
    Ok(working)
}

/// Plans `slide` at `resolution` without a model: the working level, tiles
/// of `tile` px sharing `overlap` px, and which of them run — every tile,
/// or those whose core holds tissue on the thumbnail (`tissue`). The
/// thumbnail is kept when tissue is detected or `thumbnail` asks for it;
/// the PNG mask's size is the working level's. [`Engine::plan`] is this
/// with the model's tile, resolution and the request's outputs.
pub fn plan_tiles(
    slide: &dyn Slide,
    resolution: Resolution,
    tile: u32,
    overlap: u32,
    tissue: TissuePolicy,
    thumbnail: bool,
) -> Result<SlidePlan, EngineError> {
    let started = Instant::now();
    let working = working_level(slide, resolution)?;
    let tiles = TilePlan::new(working.size, tile, overlap)?;
    let (detect, threshold) = match tissue {
        TissuePolicy::Detect(t) => (true, t),
        TissuePolicy::All => (false, None),
    };
    let thumbnail = if thumbnail || detect {
        Some(wsiseg_slide::thumbnail(slide, OVERVIEW_SIDE)?)
    } else {
        None
    };
    let tissue = thumbnail.as_ref().map(|t| {
        let (mask, threshold) = wsiseg_slide::tissue_mask_with(t, threshold);
        let fraction = mask.iter().filter(|&&x| x).count() as f64 / mask.len().max(1) as f64;
        let thumb = Size::new(t.width(), t.height());
        let level0 = slide.levels()[0].size;
        let tiles = wsiseg_slide::tissue_tiles(&tiles, working.downsample, level0, &mask, thumb);
        Tissue {
            fraction,
            tiles,
            threshold,
        }
    });
    let run = match (&tissue, detect) {
        (Some(t), true) => t.tiles.clone(),
        _ => vec![true; tiles.len()],
    };
    Ok(SlidePlan {
        png_size: working.size,
        working,
        tiles,
        tile,
        overlap,
        thumbnail,
        tissue,
        run,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The resolution to segment at: the request's, else the model's when the
/// slide records its own, else level 0.
pub fn resolution(request: &Request, slide: &dyn Slide, model: &Manifest) -> Resolution {
    if let Some(level) = request.level {
        return Resolution::Level(level);
    }
    if let Some(mpp) = request.mpp {
        return Resolution::Mpp(mpp);
    }
    match (model.mpp, slide.mpp()) {
        (Some(want), Some(have)) if want >= have.mean() * 0.999 => Resolution::Mpp(want),
        (Some(want), Some(have)) => {
            tracing::warn!(
                "{}: the model expects {want} µm/px but the slide's finest level is {:.3} µm/px; segmenting level 0",
                slide.path().display(),
                have.mean()
            );
            Resolution::Level(0)
        }
        (Some(want), None) => {
            tracing::warn!(
                "{}: the slide does not record its resolution; segmenting level 0 (the model expects {want} µm/px; choose a level)",
                slide.path().display()
            );
            Resolution::Level(0)
        }
        (None, _) => Resolution::Level(0),
    }
}

/// The size of the PNG mask: the working level, or the level / mpp asked for.
fn png_size(
    request: &Request,
    slide: &dyn Slide,
    working: &WorkingLevel,
) -> Result<Size, EngineError> {
    match request.mask_size {
        MaskSize::Working => Ok(working.size),
        MaskSize::Level(level) => Ok(wsiseg_slide::level(slide, level)?.size),
        MaskSize::Mpp(mpp) => {
            let level0 = slide.levels()[0].size;
            let mpp0 = slide.mpp().map(|m| m.mean()).ok_or_else(|| EngineError::Unsupported {
                slide: slide.path().to_path_buf(),
                problem: "the slide does not record its resolution, so a mask resolution in µm/px cannot be honoured; give a mask level instead".into(),
            })?;
            let scale = mpp0 / mpp;
            Ok(Size::new(
                ((f64::from(level0.w) * scale).round() as u32).max(1),
                ((f64::from(level0.h) * scale).round() as u32).max(1),
            ))
        }
    }
}

/// The devices for logs: `cpu`, `cuda:0 (NVIDIA H100…), cuda:1 (…)`.
pub fn describe_devices(devices: &[Device]) -> String {
    devices
        .iter()
        .map(|&d| wsiseg_infer::describe(d))
        .collect::<Vec<_>>()
        .join(", ")
}
