//! Command-line arguments.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use wsiseg_engine::{
    BadTiles, Decode, DeviceChoice, DeviceList, Format, MaskValues, Precision, Reader, Tta,
};

#[derive(Debug, Parser)]
#[command(
    name = "wsiseg",
    version,
    about = "Segment tumor in whole-slide H&E images with a TorchScript UNet",
    long_about = "Segment tumor in whole-slide H&E images (Aperio SVS, NDPI, MRXS, tiled TIFF, \
                  plain PNG/JPEG/TIFF) with a TorchScript UNet, on CUDA GPUs or the CPU."
)]
pub struct Cli {
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr (per batch timings).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Segment slides — a slide, folders, patterns or lists of slides — into label masks.
    // (Negative numbers are values, so that `--mpp -1` gets wsiseg's
    // message, not clap's "unexpected argument".)
    #[command(allow_negative_numbers = true)]
    Segment(SegmentArgs),
    /// Show a slide's format, levels, dimensions and resolution.
    Info(InfoArgs),
    /// Make synthetic H&E slides with ground-truth tumor masks.
    #[command(allow_negative_numbers = true)]
    Synth(SynthArgs),
    /// Score predicted masks against ground truth: Dice, IoU, precision, recall.
    Eval(EvalArgs),
    /// Measure each stage (decode, read, model, stitch, write) and the whole pipeline.
    Bench(BenchArgs),
    /// Work with models: `wsiseg model check MODEL…`.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Check that this machine can run wsiseg: libtorch and OpenSlide (and
    /// where they were loaded from), CUDA, the GPUs and their driver, the
    /// models with a smoke inference, free disk, cores and memory. Exits 1
    /// when something needed is missing, with the fix in one line.
    Doctor(DoctorArgs),
    /// Merge the results in OUT — every slide's run record and report, the
    /// shards' summaries, earlier failures — into OUT/summary.json and
    /// summary.csv, and refresh OUT/index.html. With --input, slides of the
    /// input with no result are listed as missing. Exits 1 when a slide
    /// failed or is missing.
    Summary(SummaryArgs),
    /// Look at every slide of OUT with its mask, heat map, regions and
    /// ground truth, zoomable to the cells, in a browser: a local server
    /// (127.0.0.1 unless --bind says otherwise) whose printed URL holds a
    /// random token. Ctrl-C stops it.
    View(ViewArgs),
}

#[derive(Debug, Args)]
pub struct ViewArgs {
    /// An output folder of `wsiseg segment`.
    pub out: PathBuf,
    /// Folders where slides are looked for when they are no longer where
    /// the run records say (results copied elsewhere), by file name.
    #[arg(long, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// The port (0: any free port).
    #[arg(long, default_value_t = 8737)]
    pub port: u16,
    /// The address to listen on. Anything but a loopback address lets
    /// other machines reach the server (they still need the token).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Worker threads (default: one per core, 4 to 16).
    #[arg(long)]
    pub threads: Option<usize>,
    /// MiB of encoded tiles kept in memory.
    #[arg(long, default_value_t = 256)]
    pub cache_mb: usize,
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// An output folder of `wsiseg segment` (shards' runs into it included).
    pub out: PathBuf,
    /// The run's input (as given to `segment`: slides, folders, patterns,
    /// lists): its slides without a result are listed as missing.
    #[arg(long, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// The input folders were segmented with --recursive.
    #[arg(short, long)]
    pub recursive: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Models to check (folders with model.pt and manifest.json). Default:
    /// every such folder in `models/` beside the binary and in the current folder.
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// The device runs will ask for: with `cuda`, a missing GPU is a failure
    /// (with `auto`, the default, it is a note: wsiseg then runs on the CPU).
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// The output folder whose free space is reported.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Load each model, dry-run it and say how wsiseg will run it: input,
    /// output, activation, classes, decision rule, mpp, speed, and how far
    /// f16/bf16 stray from f32. Exits non-zero if any model does not match
    /// its manifest.
    Check(ModelCheckArgs),
}

#[derive(Debug, Args)]
pub struct ModelCheckArgs {
    /// Model folders or .pt files.
    #[arg(required = true)]
    pub models: Vec<PathBuf>,
    #[command(flatten)]
    pub run: ModelRunArgs,
    /// Binary models: the decision threshold to check (as `segment --threshold`).
    #[arg(long, value_parser = parse_threshold)]
    pub threshold: Option<f64>,
}

/// Where and how a measured model runs (`bench`, `model check`).
#[derive(Debug, Args)]
pub struct ModelRunArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceList,
    /// f32, f16 or bf16 [default: f16 on CUDA, f32 on the CPU].
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Tiles per model call [default: 32 on CUDA, 8 on the CPU].
    #[arg(long)]
    pub batch: Option<usize>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The slide to measure on [default: a synthetic one made for the run].
    pub slide: Option<PathBuf>,
    /// Model folder or file (model.pt, model.pt2, model.onnx). Give several
    /// (`--model A --model B`) to race them on the same slide: model-only and
    /// end-to-end tiles/s side by side, each as a ratio to the first.
    #[arg(short, long, required = true)]
    pub model: Vec<PathBuf>,
    /// With several --model: rounds, each measuring every model in turn.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// Size of the synthetic slide when no slide is given.
    #[arg(long, default_value = "16384x16384", value_parser = parse_size)]
    pub size: (u32, u32),
    #[command(flatten)]
    pub run: ModelRunArgs,
    /// Threads reading and decoding tiles [default: all cores but two, 2 to 24].
    #[arg(long)]
    pub readers: Option<usize>,
    /// Where JPEG tiles are decoded end to end (as `segment --decode`); the
    /// decode stage measures the host and, with a GPU and nvJPEG, the device.
    #[arg(long, default_value = "auto", value_parser = named::<Decode>(DECODES))]
    pub decode: Decode,
    /// Slide tiles (and planned tiles, in whole rows) read for the read and decode figures.
    #[arg(long, default_value_t = 400)]
    pub sample_tiles: usize,
    /// Test-time augmentation for the model and end-to-end figures (as
    /// `segment --tta`): none, flips or dihedral.
    #[arg(long, default_value = "none")]
    pub tta: Tta,
    /// Stages to measure, comma-separated: read, model, stitch, write, e2e
    /// (the whole `segment` pipeline).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "read,model,stitch,write,e2e"
    )]
    pub stages: Vec<Stage>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A stage `wsiseg bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Raw JPEG decode vs the engine's reader vs OpenSlide.
    Read,
    /// The model alone on a batch already on the device.
    Model,
    /// Stitching tiles into rows.
    Stitch,
    /// The PNG and TIFF mask writers.
    Write,
    /// `segment` end to end.
    E2e,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A predicted mask (PNG or TIFF), or a folder of them (NAME.mask.png…).
    #[arg(long)]
    pub pred: PathBuf,
    /// The ground truth: a mask, or polygons in the slide's level-0 pixels
    /// (ASAP XML, QuPath GeoJSON); or a folder with one per prediction
    /// (NAME.tiff, NAME.png, NAME.xml, NAME.geojson…).
    #[arg(long)]
    pub truth: PathBuf,
    /// Labels of annotation classes (ASAP groups, QuPath classifications)
    /// the built-in names do not cover: NAME=LABEL,… (0 cuts the region out
    /// of tumor, 1 is tumor), e.g. `--truth-labels Stroma=0,Necrosis=0`.
    #[arg(long, value_delimiter = ',', value_parser = parse_truth_label)]
    pub truth_labels: Vec<(String, u8)>,
    /// Where eval.csv and eval.json go [default: the prediction's folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Class names by label value, background first.
    #[arg(long, default_value = "background,tumor", value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Folders: score the predictions there are when some truth masks have
    /// none (they are listed, and in eval.json) instead of failing.
    #[arg(long)]
    pub allow_missing: bool,
    /// Replace an existing eval.csv / eval.json.
    #[arg(long)]
    pub overwrite: bool,
    /// The boundary F-score's tolerance, in pixels of the prediction.
    #[arg(long, default_value_t = 2)]
    pub boundary_tolerance: u32,
    /// Probability maps for the calibration summary: `auto` takes
    /// NAME.prob.tiff beside each NAME.mask.*, `none` skips calibration, or
    /// a file (one prediction) or folder.
    #[arg(long, default_value = "auto")]
    pub prob: String,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder: slides as synth-SEED.svs, truth masks as truth/synth-SEED.tiff.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Seed of the first slide; the same seed gives the same slide.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How many slides, with seeds SEED, SEED+1, …
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Level-0 size, WIDTHxHEIGHT pixels (up to 100000x80000 and beyond).
    #[arg(long, default_value = "8192x8192", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Microns per level-0 pixel.
    #[arg(long, default_value_t = 0.25)]
    pub mpp: f64,
    /// JPEG quality of the slide tiles (and of a plain JPEG).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// Also write the same picture as plain images, the way competitions
    /// hand out slides (one level, no resolution recorded): synth-SEED.png,
    /// .jpg (baseline, at most 65535 px a side), .tiff (uncompressed strips).
    /// Comma-separated or repeated.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub plain: Vec<PlainKind>,
    /// Replace existing files of the same names.
    #[arg(long)]
    pub overwrite: bool,
}

/// A plain image format `wsiseg synth --plain` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlainKind {
    /// 8-bit RGB PNG.
    Png,
    /// Baseline JPEG.
    Jpeg,
    /// RGB TIFF in strips.
    Tiff,
}

/// A memory size: a number with K, M, G or T (powers of 1024; a trailing
/// B or iB is allowed), or a percentage of this machine's memory.
fn parse_memory(s: &str) -> Result<u64, String> {
    let bad = || format!("'{s}' is not a memory size such as 12G, 800M or 50%");
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(format!(
                "'{s}': a share of memory must be above 0% and at most 100%"
            ));
        }
        return Ok((wsiseg_engine::memory::machine_bytes() as f64 * p / 100.0) as u64);
    }
    let upper = t.to_ascii_uppercase();
    let number = upper.trim_end_matches("IB").trim_end_matches('B');
    let (digits, shift) = match number.chars().last() {
        Some('K') => (&number[..number.len() - 1], 10),
        Some('M') => (&number[..number.len() - 1], 20),
        Some('G') => (&number[..number.len() - 1], 30),
        Some('T') => (&number[..number.len() - 1], 40),
        _ => (number, 0),
    };
    let n: f64 = digits.trim().parse().map_err(|_| bad())?;
    if !(n.is_finite() && n > 0.0) {
        return Err(bad());
    }
    let bytes = n * 2f64.powi(shift);
    if bytes < f64::from(64u32 << 20) {
        return Err(format!("'{s}': wsiseg needs at least 64M"));
    }
    Ok(bytes as u64)
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("'{s}' is not WIDTHxHEIGHT, e.g. 8192x8192");
    let (w, h) = s.split_once(['x', 'X', '×']).ok_or_else(bad)?;
    Ok((
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    ))
}

fn parse_truth_label(s: &str) -> Result<(String, u8), String> {
    let bad = || format!("'{s}' is not NAME=LABEL (a class name and a label 0–255, e.g. Stroma=0)");
    let (name, label) = s.rsplit_once('=').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad());
    }
    Ok((name.to_string(), label.trim().parse().map_err(|_| bad())?))
}

fn parse_weight(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(w) if w.is_finite() && w > 0.0 => Ok(w),
        _ => Err(format!("'{s}' is not a positive number")),
    }
}

fn parse_threshold(s: &str) -> Result<f64, String> {
    let t: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    wsiseg_infer::check_threshold(t)?;
    Ok(t)
}

#[derive(Debug, Args)]
pub struct SegmentArgs {
    /// Slides: slide files, folders (their slides, by extension; with
    /// --recursive their subfolders' too), glob patterns in quotes
    /// ('slides/**/*.svs'), or lists — a .txt with a path a line, or a .csv
    /// with a `path` column and an optional `mpp` column (the slide's µm per
    /// pixel); a list's relative paths are under the list's folder. Outputs
    /// keep each slide's subfolder under --out.
    #[arg(required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Descend into the subfolders of a folder input.
    #[arg(short, long)]
    pub recursive: bool,
    /// Run slides strictly one after another. By default the next slide is
    /// opened, planned and its first tiles read while the current one's
    /// last batches run, so the device does not wait between slides (two
    /// slides' buffers in memory at once).
    #[arg(long)]
    pub one_at_a_time: bool,
    /// Segment only shard I of N (0 to N-1) of the slides: a slide belongs
    /// to shard hash(its name under the input, e.g. a/x.svs) mod N, so
    /// adding slides never moves the others. Without it, SLURM_ARRAY_TASK_ID (with _MIN and _MAX
    /// or _COUNT) or Kubernetes' JOB_COMPLETION_INDEX (with --shard-count)
    /// choose it. Each shard writes summary.shard-I-of-N.json/.csv.
    #[arg(long, value_parser = |s: &str| s.parse::<wsiseg_engine::Shard>().map_err(|e| e.to_string()))]
    pub shard: Option<wsiseg_engine::Shard>,
    /// How many shards there are, when the environment gives only the index
    /// (JOB_COMPLETION_INDEX), or to override Slurm's array size.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub shard_count: Option<u32>,
    /// Model: a folder with model.pt and manifest.json (e.g. models/unet),
    /// or a TorchScript .pt file with a .json manifest beside it. Give it
    /// more than once for an ensemble: the models' class probabilities are
    /// averaged (see --weights).
    #[arg(short, long, required = true)]
    pub model: Vec<PathBuf>,
    /// An ensemble's weights, one per --model in order, comma-separated
    /// (e.g. 0.6,0.4) [default: equal].
    #[arg(long, value_delimiter = ',', value_parser = parse_weight)]
    pub weights: Option<Vec<f64>>,
    /// Test-time augmentation: none, flips (2 passes: as is and mirrored) or
    /// dihedral (8: every rotation, each also mirrored); probabilities are
    /// averaged after undoing each transform.
    #[arg(long, default_value = "none")]
    pub tta: Tta,
    /// Output folder (created if missing); masks are written as NAME.mask.png.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Segment this pyramid level as stored (0 is the finest).
    #[arg(long, conflicts_with = "mpp")]
    pub level: Option<u32>,
    /// Segment at this resolution in µm per pixel, read from the nearest finer
    /// level. Default: the model's resolution when the slide records its own,
    /// else level 0.
    #[arg(long)]
    pub mpp: Option<f64>,
    /// Take level 0 of every slide to be this many µm per pixel, whatever
    /// the file records: plain PNG/JPEG/TIFF images record none (the
    /// competition's data sheet gives it), so that --mpp and the model's
    /// resolution apply to them too.
    #[arg(long, value_name = "MPP")]
    pub slide_mpp: Option<f64>,
    /// Memory budget: 12G, 800M, 50% (of this machine's memory, or of the
    /// container's limit). A slide whose run takes wsiseg's resident memory
    /// above it is stopped with an error and the next slide runs; plain
    /// images are decoded within half of it [default: 80%].
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true)]
    pub max_memory: Option<u64>,
    /// Tile side in working-level pixels [default: the model's tile].
    #[arg(long)]
    pub tile: Option<u32>,
    /// Pixels shared by neighbouring tiles; each tile keeps only its centre,
    /// so every mask pixel has at least overlap/2 pixels of context [default: tile/8].
    #[arg(long)]
    pub overlap: Option<u32>,
    /// Tiles per model call [default: 32 on CUDA, 8 on the CPU].
    #[arg(long)]
    pub batch: Option<usize>,
    /// auto (CUDA when available, else CPU), cpu, cuda or cuda:N; a
    /// comma-separated list runs one inference worker per entry on the same
    /// slide (cuda:0,cuda:1; cuda:all for every GPU; cpu,cpu).
    #[arg(long, default_value = "auto")]
    pub device: DeviceList,
    /// f32, f16 or bf16 [default: f16 on CUDA, f32 on the CPU].
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Binary models: a pixel is tumor when P(tumor) > THRESHOLD, between 0
    /// and 1 [default: the model's manifest, else the most likely class].
    #[arg(long, value_parser = parse_threshold)]
    pub threshold: Option<f64>,
    /// Run every tile, glass included (by default only tiles with tissue are
    /// run, found by Otsu's threshold on the thumbnail's saturation; the others are background).
    #[arg(long)]
    pub no_tissue_mask: bool,
    /// Tissue is where the thumbnail's saturation (max − min of R, G, B,
    /// 0–255) is above this [default: Otsu's threshold of the thumbnail, at
    /// least 12]. Lower it for pale tissue, raise it for dirty glass.
    #[arg(long, conflicts_with = "no_tissue_mask")]
    pub tissue_threshold: Option<u8>,
    /// Threads reading and decoding tiles [default: all cores but two, 2 to 24].
    #[arg(long)]
    pub readers: Option<usize>,
    /// How slide levels are read: auto decodes the JPEG tiles of Aperio SVS
    /// and tiled TIFF levels directly, in parallel, sharing decoded tiles
    /// between overlapping reads (pixels within a few levels of OpenSlide's:
    /// JPEG decoder rounding), everything else through OpenSlide; openslide
    /// reads everything through OpenSlide (its exact pixels, slower).
    #[arg(long, default_value = "auto", value_parser = named::<Reader>(READERS))]
    pub reader: Reader,
    /// Where the JPEG tiles of SVS and tiled TIFF levels are decoded: gpu
    /// decodes them with nvJPEG on the GPU that runs the model and cuts the
    /// tiles there (pixels within JPEG's rounding of the CPU decoder's); cpu
    /// on the reader threads; auto on the GPU when the model runs on one and
    /// nvJPEG is installed. The report says which ran.
    #[arg(long, default_value = "auto", value_parser = named::<Decode>(DECODES))]
    pub decode: Decode,
    /// Outputs to write, comma-separated: png (label mask), tiff (pyramidal
    /// BigTIFF mask for OpenSlide/QuPath/ASAP), geojson (QuPath annotations),
    /// asap (the same regions as ASAP annotations, NAME.xml; not by default),
    /// overlay (thumbnail with tumor outline, and a probability heatmap), report (JSON).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "png,tiff,geojson,overlay,report",
        value_parser = formats()
    )]
    pub formats: Vec<Format>,
    /// Also write NAME.prob.tiff, a pyramidal 8-bit map of the tumor probability (0–255).
    #[arg(long)]
    pub probabilities: bool,
    /// Write the PNG mask at this pyramid level of the slide instead of the working level.
    #[arg(long, conflicts_with = "mask_mpp")]
    pub mask_level: Option<u32>,
    /// Write the PNG mask at this resolution (µm/px) instead of the working level's.
    #[arg(long)]
    pub mask_mpp: Option<f64>,
    /// Pixel values of the PNG mask: 01 (class index) or 0255 (binary masks for viewers).
    #[arg(long, default_value = "01", value_parser = named::<MaskValues>(MASK_VALUES))]
    pub mask_values: MaskValues,
    /// GeoJSON: drop tumor regions smaller than this many µm² (level-0 pixels² when
    /// the slide's resolution is unknown).
    #[arg(long, default_value_t = 500.0)]
    pub min_area: f64,
    /// Replace outputs that already exist (otherwise finished slides are skipped).
    #[arg(long)]
    pub overwrite: bool,
    /// What a corrupt stored tile (damaged JPEG data) does: fail the slide,
    /// naming the file, level and tile; or treat the working tiles that read
    /// it as background, with a warning, listing the tiles in the report and
    /// summary (the run then succeeds).
    #[arg(long, default_value = "fail", value_parser = named::<BadTiles>(BAD_TILES))]
    pub bad_tiles: BadTiles,
}

/// A parser of the engine's own option types that lists their values in
/// `--help` (with a line each where `help` gives one), as `ValueEnum` would.
fn named<T>(values: &'static [(&'static str, &'static str)]) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Debug,
{
    PossibleValuesParser::new(values.iter().map(|&(name, help)| {
        let value = PossibleValue::new(name);
        if help.is_empty() {
            value
        } else {
            value.help(help)
        }
    }))
    .map(|s| s.parse::<T>().expect("every listed value parses"))
}

/// `--reader`'s values.
const READERS: &[(&str, &str)] = &[("auto", ""), ("openslide", "")];

/// `--formats`' values: every output the engine registers but the
/// probability maps (`--probabilities`).
fn formats() -> impl TypedValueParser<Value = Format> {
    PossibleValuesParser::new(
        Format::ALL
            .iter()
            .filter(|&&f| f != Format::PROB)
            .map(|f| PossibleValue::new(f.name())),
    )
    .map(|s| s.parse::<Format>().expect("every listed value parses"))
}

/// `--bad-tiles`' values.
const DECODES: &[(&str, &str)] = &[
    (
        "auto",
        "On the GPU when the model runs on one and nvJPEG is there",
    ),
    ("cpu", "On the reader threads"),
    (
        "gpu",
        "With nvJPEG on the model's GPU (an error where it cannot be)",
    ),
];

const BAD_TILES: &[(&str, &str)] = &[
    ("fail", "Fail the slide"),
    ("background", "Background, with a warning"),
];

/// `--mask-values`' values.
const MASK_VALUES: &[(&str, &str)] = &[
    ("01", "0 background, 1.. class index"),
    ("0255", "0 background, 255 tumor (two-class models only)"),
];

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The slide to describe.
    pub slide: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value `--help` lists parses into the engine's type, and names
    /// it back the same way (the parsers' `expect` can never fire).
    #[test]
    fn every_listed_value_is_the_engines_own() {
        for &(name, _) in READERS {
            assert_eq!(name.parse::<Reader>().unwrap().to_string(), name);
        }
        for &(name, _) in DECODES {
            assert_eq!(name.parse::<Decode>().unwrap().to_string(), name);
        }
        for &(name, _) in BAD_TILES {
            assert_eq!(name.parse::<BadTiles>().unwrap().to_string(), name);
        }
        for &(name, _) in MASK_VALUES {
            assert_eq!(name.parse::<MaskValues>().unwrap().to_string(), name);
        }
        // Every reader and bad-tile policy is offered; every format but the
        // probability maps (`--probabilities`).
        assert_eq!(READERS.len(), Reader::ALL.len());
        assert_eq!(BAD_TILES.len(), BadTiles::ALL.len());
        assert_eq!(MASK_VALUES.len(), MaskValues::ALL.len());
        let listed: Vec<String> = formats()
            .possible_values()
            .unwrap()
            .map(|v| v.get_name().to_string())
            .collect();
        let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(
            listed,
            ["png", "tiff", "overlay", "geojson", "asap", "report"]
        );
        assert!(listed.iter().all(|n| names.contains(&n.as_str())));
    }

    #[test]
    fn device_lists_parse_as_given_and_say_what_is_wrong() {
        let cli = Cli::try_parse_from([
            "wsiseg", "segment", "s.svs", "-m", "m", "-o", "o", "--device", "cpu, cpu",
        ])
        .unwrap();
        let Command::Segment(args) = cli.command else {
            panic!("segment")
        };
        assert_eq!(args.device.to_string(), "cpu,cpu");
        assert_eq!(args.device.resolve().unwrap().len(), 2);
        let e = Cli::try_parse_from([
            "wsiseg", "segment", "s.svs", "-m", "m", "-o", "o", "--device", "cpu,tpu",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("'tpu' is not a device: use auto, cpu, cuda or cuda:N"),
            "{e}"
        );
    }
}
