//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use wsiseg_infer::{DeviceChoice, Precision};

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
    /// Segment a slide, or every slide in a folder, into label masks.
    Segment(SegmentArgs),
    /// Show a slide's format, levels, dimensions and resolution.
    Info(InfoArgs),
    /// Make synthetic H&E slides with ground-truth tumor masks.
    Synth(SynthArgs),
    /// Score predicted masks against ground truth: Dice, IoU, precision, recall.
    Eval(EvalArgs),
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A predicted mask (PNG or TIFF), or a folder of them (NAME.mask.png…).
    #[arg(long)]
    pub pred: PathBuf,
    /// The ground-truth mask, or a folder with one per prediction (NAME.tiff, NAME.png…).
    #[arg(long)]
    pub truth: PathBuf,
    /// Where eval.csv and eval.json go [default: the prediction's folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Class names by label value, background first.
    #[arg(long, default_value = "background,tumor", value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Replace an existing eval.csv / eval.json.
    #[arg(long)]
    pub overwrite: bool,
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
    /// JPEG quality of the slide tiles.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// Replace existing files of the same names.
    #[arg(long)]
    pub overwrite: bool,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("'{s}' is not WIDTHxHEIGHT, e.g. 8192x8192");
    let (w, h) = s.split_once(['x', 'X', '×']).ok_or_else(bad)?;
    Ok((
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    ))
}

#[derive(Debug, Args)]
pub struct SegmentArgs {
    /// A slide file, or a folder whose slides (by extension) are all segmented.
    pub input: PathBuf,
    /// Model: a folder with model.pt and manifest.json (e.g. models/unet),
    /// or a TorchScript .pt file with a .json manifest beside it.
    #[arg(short, long)]
    pub model: PathBuf,
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
    /// auto (CUDA when available, else CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// f32, f16 or bf16 [default: f16 on CUDA, f32 on the CPU].
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Threads reading tiles.
    #[arg(long, default_value_t = 2)]
    pub readers: usize,
    /// Replace masks that already exist (otherwise those slides are skipped).
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The slide to describe.
    pub slide: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
