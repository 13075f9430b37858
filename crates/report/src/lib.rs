//! The files wsiseg writes about its runs, as types: `NAME.report.json`
//! ([`SlideReport`]) and `summary.json` ([`SummaryFile`], one
//! [`SummaryLine`] per slide). The engine writes them from these types; the
//! index page and `wsiseg eval` read them back through the same types, never
//! by string keys, and so can any other front end.
//!
//! On disk every object's keys are in alphabetical order and every field is
//! always present (`null` when unknown): [`to_text`] serializes through
//! [`serde_json::Value`], whose maps are sorted. Reading is lenient: a
//! field an older wsiseg did not write takes its default, so the reports
//! of earlier runs still read. `report.schema.json` beside this crate
//! describes the report; a test checks it against these types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod summary;

pub use summary::{SummaryCounts, SummaryFile, SummaryLine, CSV_COLUMNS};

/// The JSON text of `value` as wsiseg writes its files: pretty, two-space
/// indents, keys in alphabetical order.
pub fn to_text<T: Serialize>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&serde_json::to_value(value)?)
}

/// Reads a file written by [`to_text`] (or by an older wsiseg).
pub fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<T> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// `NAME.report.json`: everything about one slide's run — enough to run
/// it again and to judge the slide without looking at it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlideReport {
    /// The wsiseg that wrote it.
    pub wsiseg_version: String,
    /// What ran, when, where, with which libraries.
    pub run: Run,
    /// The slide file.
    pub slide: SlideInfo,
    /// The level the model saw.
    pub working_level: WorkingLevel,
    /// The model (and every member of an ensemble).
    pub model: Model,
    /// Every setting after defaults were resolved.
    pub parameters: Parameters,
    /// Tile counts.
    pub tiles: Tiles,
    /// Corrupt stored tiles whose working tiles were made background
    /// (`bad_tiles = background`), with their level-0 rectangles.
    pub bad_tiles: Vec<BadTile>,
    /// Areas of the slide, its tissue and every class.
    pub areas: Areas,
    /// Regions and probabilities: numbers that show an odd slide.
    pub statistics: Statistics,
    /// Per-stage times, seconds.
    pub timings_s: Timings,
    /// The process's peak resident memory so far (a folder run: every
    /// slide up to this one), MiB.
    pub peak_rss_mib: Option<f64>,
    /// The memory budget it had to stay under, MiB.
    pub max_memory_mib: Option<f64>,
    /// Of the peak, wsiseg's own buffers (not libtorch's), when the binary
    /// counts them, MiB.
    pub peak_rust_heap_mib: Option<f64>,
    /// The malloc libtorch's tensors live on.
    pub malloc: String,
    /// Every file written (absolute), this report last.
    pub outputs: Vec<PathBuf>,
}

/// What ran, when and where.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Run {
    /// Start, UTC (`2026-11-27T05:40:12Z`).
    pub started_utc: String,
    /// End, UTC.
    pub finished_utc: String,
    /// The process's arguments.
    pub command_line: Vec<String>,
    /// Its working directory.
    pub working_directory: Option<PathBuf>,
    /// This machine's name.
    pub host: Option<String>,
    /// The devices that ran the model (`cpu`, `cuda:0`…).
    pub devices: Vec<String>,
    /// The precision they ran at.
    pub precision: String,
    /// wsiseg's, OpenSlide's and the model runtime's libraries' versions
    /// (`null`: not loaded or unknown).
    pub versions: BTreeMap<String, Option<String>>,
}

/// Width and height in pixels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dimensions {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// Microns per pixel along x and y.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MppXy {
    /// Along x.
    pub x: f64,
    /// Along y.
    pub y: f64,
}

/// The slide file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlideInfo {
    /// Absolute path.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: Option<u64>,
    /// SHA-256 of the size (8 bytes, little-endian), the first and the last
    /// MiB: tells two files apart in milliseconds, whatever their size.
    pub quick_sha256: Option<String>,
    /// Its format as the reader names it.
    pub format: String,
    /// Level 0's size.
    pub level0: Dimensions,
    /// How many levels.
    pub levels: usize,
    /// Its resolution, when recorded (or given).
    pub mpp: Option<MppXy>,
}

/// The level the model saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkingLevel {
    /// The slide level it is read from.
    pub source_level: u32,
    /// Its reduction from that level (1: none).
    pub scale_from_source: f64,
    /// Its reduction from level 0.
    pub downsample_from_level0: f64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Microns per pixel, when the slide's resolution is known.
    pub mpp: Option<f64>,
    /// `direct JPEG tiles` (or `Deflate`, `LZW`, `uncompressed` tiles of
    /// a SubIFD pyramid) or `OpenSlide`.
    pub read_by: String,
    /// Where its tiles were decoded: `cpu`, or `gpu: nvJPEG (hardware)`
    /// (or `nvJPEG`, its hybrid backend) — with why not on the GPU when
    /// `--decode` asked for it and it could not be (`cpu (…)`).
    pub decoded_by: String,
    /// Stored JPEG tiles decoded on the GPU (each once per batch).
    pub tiles_decoded_on_device: u64,
    /// Batches the GPU's decoder failed on, decoded on the host instead.
    pub device_decode_fallbacks: u64,
}

/// The model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    /// The manifest's name.
    pub name: String,
    /// Absolute path of the (first) model.
    pub path: PathBuf,
    /// SHA-256 of the model file.
    pub sha256: String,
    /// The model's `manifest.json` as the engine read it (the
    /// `wsiseg_infer::Manifest` type).
    pub manifest: serde_json::Value,
    /// Every model averaged (one when alone), with its weight.
    pub members: Vec<Member>,
}

/// A model of an ensemble.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Member {
    /// The manifest's name.
    pub name: String,
    /// Absolute path.
    pub path: PathBuf,
    /// SHA-256 of the model file.
    pub sha256: String,
    /// Its weight in the average.
    pub weight: f64,
    /// The runtime that ran it: "torchscript", "aotinductor", "onnx" (or
    /// "linear", the built-in test model).
    pub runtime: String,
}

/// Every setting of the run after defaults were resolved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Parameters {
    /// Tile side, working-level pixels.
    pub tile: u32,
    /// Overlap of neighbouring tiles, pixels.
    pub overlap: u32,
    /// Tiles per batch.
    pub batch: usize,
    /// The devices, comma-separated.
    pub device: String,
    /// `f32`, `f16` or `bf16`.
    pub precision: String,
    /// The decision threshold on P(tumor), when one was set.
    pub threshold: Option<f64>,
    /// How labels are decided from the model's output.
    pub decision: String,
    /// Test-time augmentation.
    pub tta: String,
    /// Reader threads.
    pub readers: usize,
    /// The slide reader asked for.
    pub reader: String,
    /// The slide level asked for.
    pub level: Option<u32>,
    /// The resolution asked for, µm/px.
    pub mpp: Option<f64>,
    /// The resolution given to the slide, µm/px.
    pub slide_mpp: Option<f64>,
    /// What corrupt stored tiles do: `fail` or `background`.
    pub bad_tiles: String,
    /// Where stored JPEG tiles are decoded, as asked: `auto`, `cpu`, `gpu`.
    pub decode: String,
    /// The output formats asked for (the probability maps apart).
    pub formats: Vec<String>,
    /// Whether the probability maps were asked for.
    pub probabilities: bool,
    /// The level the masks' size follows, when one was asked for.
    pub mask_level: Option<u32>,
    /// The resolution the masks' size follows, when one was asked for.
    pub mask_mpp: Option<f64>,
    /// `01` or `0255`.
    pub mask_values: String,
    /// The size of NAME.mask.png.
    pub png_mask_size: Dimensions,
    /// The smallest region written to GeoJSON, µm².
    pub min_area: f64,
    /// Whether only tiles with tissue ran.
    pub tissue_mask: bool,
    /// The thumbnail saturation above which a pixel is tissue.
    pub tissue_threshold: Option<u8>,
}

/// Tile counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tiles {
    /// Tiles planned over the working level.
    pub planned: usize,
    /// Of which hold tissue (when tissue was detected).
    pub with_tissue: Option<usize>,
    /// Tiles run through the model.
    pub run: usize,
    /// Tile side, pixels.
    pub size: u32,
    /// The grid.
    pub grid: Grid,
    /// Tiles each worker ran, in device order.
    pub per_worker: Vec<usize>,
}

/// Columns and rows of the tile grid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Grid {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
}

/// A corrupt stored tile made background.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BadTile {
    /// The slide level it belongs to.
    pub level: u32,
    /// Its number in the level (raster order).
    pub tile: usize,
    /// Its pixels in level-0 coordinates.
    pub level0: Rectangle,
    /// What the decoder said.
    pub error: String,
}

/// A rectangle in level-0 pixels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rectangle {
    /// Left.
    pub x: i64,
    /// Top.
    pub y: i64,
    /// Width.
    pub width: i64,
    /// Height.
    pub height: i64,
}

/// Areas of the slide, its tissue and every class.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Areas {
    /// The slide's area, mm² (when its resolution is known).
    pub slide_mm2: Option<f64>,
    /// Share of the slide that is tissue (the thumbnail's tissue mask).
    pub tissue_fraction: Option<f64>,
    /// Tissue area, mm².
    pub tissue_mm2: Option<f64>,
    /// Share of the working level labelled tumor (any class ≥ 1).
    pub tumor_fraction: f64,
    /// Tumor area, mm².
    pub tumor_mm2: Option<f64>,
    /// Every class by name.
    pub classes: BTreeMap<String, ClassArea>,
    /// Tumor regions written to NAME.geojson / NAME.xml (when written).
    pub geojson_regions: Option<usize>,
}

/// Pixels, share of the working level and area of one class.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassArea {
    /// Working-level pixels.
    pub pixels: u64,
    /// Share of the working level.
    pub fraction: f64,
    /// Area, mm².
    pub area_mm2: Option<f64>,
}

/// Regions and probabilities of the mask.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Statistics {
    /// Tumor as a share of the tissue (at most 1).
    pub tumor_share_of_tissue: Option<f64>,
    /// Connected tumor regions.
    pub regions: Regions,
    /// The histogram of P(tumor), when the probability maps were made.
    pub probability: Option<Probability>,
}

/// Connected tumor regions (8-neighbour) of the mask.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Regions {
    /// How many.
    pub count: usize,
    /// The largest, working-level pixels.
    pub largest_pixels: Option<u64>,
    /// The largest, mm².
    pub largest_mm2: Option<f64>,
    /// Their count per size bin.
    pub by_size: Vec<SizeBin>,
}

/// Regions of one size bin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SizeBin {
    /// The bin (`< 0.01 mm²`…).
    pub size: String,
    /// Regions in it.
    pub count: u64,
}

/// The histogram of P(tumor).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Probability {
    /// Working-level pixels per tenth of P: [0, 0.1), …, [0.9, 1].
    pub histogram_tenths: [u64; 10],
    /// The range of P called uncertain.
    pub uncertain_range: [f64; 2],
    /// Share of the working level in it.
    pub uncertain_fraction: Option<f64>,
}

/// Per-stage times, seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timings {
    /// Opening the slide, its thumbnail and the plan.
    pub open_and_thumbnail: f64,
    /// Waiting after the plan for the model to finish loading (it loads
    /// while a run's first slide is locked, opened and planned).
    pub waiting_for_model: f64,
    /// Reading and decoding tiles, summed over the reader threads.
    pub read_decode_thread_sum: f64,
    /// Queuing and collecting batches, summed over the workers.
    pub inference: f64,
    /// The busiest of the stitcher and writer threads.
    pub stitch_and_write: f64,
    /// The stitcher thread's busy time.
    pub stitch: f64,
    /// Each output's writer thread's busy time, by its name.
    pub write: BTreeMap<String, f64>,
    /// The pipeline, first read to last row.
    pub pipeline_wall: f64,
    /// Finishing the outputs.
    pub outputs: f64,
    /// The whole slide, opening to the last output.
    pub total: f64,
}

#[cfg(test)]
mod tests;
