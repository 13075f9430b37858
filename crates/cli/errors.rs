//! Errors as the command line says them: one line, the engine's settings
//! named by their flags, and what to do about outputs that exist.

use wsiseg_engine::{EngineError, Setting};
use wsiseg_infer::{InferError, Precision};
use wsiseg_slide::{PlanError, SlideError};

/// The engine's error with the command line's words.
pub(crate) fn flag_context(e: EngineError) -> anyhow::Error {
    let text = match &e {
        EngineError::Setting {
            setting,
            value,
            problem,
        } => format!("{} {value}: {problem}", flag(*setting)),
        EngineError::Incomplete { .. } => format!("{e}: use --overwrite to redo this slide"),
        EngineError::Changed { .. } => {
            format!("{e}: use --overwrite to redo it, or --out another folder")
        }
        EngineError::Infer(infer) => match infer_flag(infer) {
            Some(text) => text,
            None => return e.into(),
        },
        EngineError::Slide(slide) => match slide_flag(slide) {
            Some(text) => text,
            None => return e.into(),
        },
        EngineError::NonFinite { precision, .. } => match precision {
            Precision::F32 => format!("{e} (in f32: the model itself produces them)"),
            _ => format!("{e}; try --precision f32 or --precision bf16"),
        },
        EngineError::Plan(PlanError::OverlapTooLarge { tile, overlap }) => {
            format!("--tile {tile} must be larger than --overlap {overlap}")
        }
        _ => return e.into(),
    };
    anyhow::anyhow!(text)
}

/// The flag that sets an engine setting.
fn flag(setting: Setting) -> &'static str {
    match setting {
        Setting::Tile => "--tile",
        Setting::Overlap => "--overlap",
        Setting::Batch => "--batch",
        Setting::Readers => "--readers",
        Setting::Devices => "--device",
        Setting::MaskMpp => "--mask-mpp",
        Setting::SlideMpp => "--slide-mpp",
        Setting::MinArea => "--min-area",
        Setting::MaskValues => "--mask-values",
        Setting::Outputs => "--formats",
        Setting::BadTiles => "--bad-tiles",
    }
}

/// `--device` and `--precision` errors in the command line's words.
fn infer_flag(e: &InferError) -> Option<String> {
    match e {
        InferError::CudaUnavailable { .. } => {
            Some(format!("--device {e}; use --device cpu or auto"))
        }
        InferError::CudaIndex { .. } | InferError::DeviceSyntax { .. } => {
            Some(format!("--device {e}"))
        }
        InferError::Threshold { path, problem } => {
            Some(format!("--threshold {problem} ({})", path.display()))
        }
        InferError::NonFinite { precision, .. } if *precision != Precision::F32 => {
            Some(format!("{e}; try --precision f32 or --precision bf16"))
        }
        _ => None,
    }
}

/// `--mpp` errors in the command line's words.
fn slide_flag(e: &SlideError) -> Option<String> {
    match e {
        SlideError::NoMpp { path, requested } => Some(format!(
            "{}: the slide does not record its resolution (mpp), so --mpp {requested} cannot be honoured; choose a level with --level",
            path.display()
        )),
        SlideError::MppTooFine {
            path,
            requested,
            available,
        } => Some(format!(
            "{}: --mpp {requested} is finer than the slide's level 0 ({available:.4} µm/px); wsiseg does not upsample",
            path.display()
        )),
        SlideError::InvalidMpp { requested } => Some(format!(
            "--mpp {requested}: must be a positive number of microns per pixel"
        )),
        _ => None,
    }
}

/// An error's first line, causes included.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Prints an error as one line: `error: <what, with its causes>`.
pub(crate) fn report_error(e: &anyhow::Error) {
    // Our errors already name the file and the cause; libtorch's sources may
    // span lines, so keep only the first line of each link of the chain.
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let line = text.lines().next().unwrap_or_default().trim().to_string();
        if !parts.iter().any(|p| p.contains(&line)) {
            parts.push(line);
        }
    }
    eprintln!("error: {}", parts.join(": "));
}
