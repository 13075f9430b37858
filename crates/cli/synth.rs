//! `wsiseg synth`: synthetic slides with ground truth.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use wsiseg_synth::{generate, plain_path, PlainFormat, SynthSpec};

use crate::args::{PlainKind, SynthArgs};

/// Where slide `seed` and its truth go inside `out`.
pub fn paths(out: &std::path::Path, seed: u64) -> (PathBuf, PathBuf) {
    let name = format!("synth-{seed}");
    (
        out.join(format!("{name}.svs")),
        out.join("truth").join(format!("{name}.tiff")),
    )
}

/// The plain formats asked for (JPEG at the slide's quality).
fn plain_formats(args: &SynthArgs) -> Vec<PlainFormat> {
    let mut formats: Vec<PlainFormat> = args
        .plain
        .iter()
        .map(|k| match k {
            PlainKind::Png => PlainFormat::Png,
            PlainKind::Jpeg => PlainFormat::Jpeg {
                quality: args.quality,
            },
            PlainKind::Tiff => PlainFormat::Tiff,
        })
        .collect();
    formats.dedup();
    formats
}

pub fn run(args: &SynthArgs) -> Result<()> {
    let (width, height) = args.size;
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    std::fs::create_dir_all(args.out.join("truth"))
        .with_context(|| format!("{}: cannot create output folder", args.out.display()))?;
    let seeds = args.seed..args.seed + args.count;
    if !args.overwrite {
        for seed in seeds.clone() {
            let (slide, truth) = paths(&args.out, seed);
            let plain = plain_formats(args)
                .into_iter()
                .map(|f| plain_path(&slide, f));
            for p in [slide.clone(), truth].into_iter().chain(plain) {
                if p.exists() {
                    bail!(
                        "{}: already exists (use --overwrite to replace it)",
                        p.display()
                    );
                }
            }
        }
    }
    for seed in seeds {
        let (slide, truth) = paths(&args.out, seed);
        let spec = SynthSpec {
            seed,
            width,
            height,
            mpp: args.mpp,
            quality: args.quality,
            plain: plain_formats(args),
            ..SynthSpec::default()
        };
        let bar = ProgressBar::new(u64::from(height));
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {percent}% eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("synth-{seed}"));
        let stats = generate(&spec, &slide, &truth, &mut |rows| {
            bar.set_position(u64::from(rows))
        })
        .map_err(|e| match e {
            wsiseg_synth::SynthError::Mpp(mpp) => {
                anyhow::anyhow!("--mpp {mpp}: must be between 0.05 and 10 µm per pixel")
            }
            e => e.into(),
        })?;
        bar.finish_and_clear();
        let levels: Vec<String> = stats.levels.iter().map(|s| s.to_string()).collect();
        tracing::info!(
            "{}: {width}×{height} at {} µm/px, levels {}, tumor {:.1}% of the slide; {:.0} MP in {:.1} s = {:.1} MP/s; truth {}",
            stats.slide.display(),
            args.mpp,
            levels.join(" / "),
            100.0 * stats.tumor_fraction,
            stats.megapixels,
            stats.seconds,
            stats.megapixels / stats.seconds,
            stats.truth.display()
        );
        for p in &stats.plain {
            tracing::info!("{}: the same picture as a plain image", p.display());
        }
    }
    Ok(())
}
