//! Errors as the command line says them: one line, the engine's settings
//! named by their flags, and what to do about outputs that exist.

use wsiseg_engine::{EngineError, Setting};
use wsiseg_infer::{InferError, Precision};
use wsiseg_slide::{PlanError, SlideError};

/// The engine's advice for a resolution it cannot read at (engine.rs).
const FINER: &str = "choose a finer resolution (mpp) or a level";

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
        EngineError::MemoryLimit {
            slide,
            rss_mib,
            limit_mib,
        } => format!(
            "{}: wsiseg's memory reached {rss_mib:.0} MiB, more than --max-memory ({limit_mib:.0} MiB); the slide was stopped (raise --max-memory, or lower --batch or --readers)",
            slide.display()
        ),
        EngineError::Unsupported { .. } if e.to_string().contains(FINER) => {
            e.to_string().replace(FINER, "choose a finer --mpp, or --level")
        }
        EngineError::Plan(PlanError::OverlapTooLarge { tile, overlap }) => {
            format!("--tile {tile} must be larger than --overlap {overlap}")
        }
        _ => return e.into(),
    };
    anyhow::anyhow!(text)
}

/// An evaluation's error with the command line's words.
pub(crate) fn eval_context(e: wsiseg_eval::EvalError) -> anyhow::Error {
    match &e {
        wsiseg_eval::EvalError::Unlabelled { path, class } => anyhow::anyhow!(
            "{}: annotation class '{class}' has no label: give it one with --truth-labels '{class}=1' (tumor) or '{class}=0' (background, cut out of tumor)",
            path.display()
        ),
        _ => e.into(),
    }
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
        Setting::Decode => "--decode",
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
        InferError::Forward { .. } => e.smaller_batch().map(|n| {
            e.to_string().replace(
                &format!("try a batch of {n})"),
                &format!("try --batch {n})"),
            )
        }),
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
    // Our errors already name the file and the cause.
    eprintln!("error: {}", wsiseg_engine::error_line(e.as_ref()));
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The libraries say what to change; the command line names the flag.
    #[test]
    fn the_command_line_names_the_flags_the_libraries_do_not() {
        let oom = EngineError::Infer(InferError::Forward {
            path: PathBuf::from("m/model.pt"),
            shape: vec![32, 3, 512, 512],
            source: tch::TchError::Torch("CUDA out of memory. Tried to allocate 2.00 GiB".into()),
        });
        let library = oom.to_string();
        assert!(
            library.ends_with("(a batch of 32 tiles does not fit: try a batch of 16)"),
            "{library}"
        );
        let cli = flag_context(oom).to_string();
        assert!(
            cli.ends_with("(a batch of 32 tiles does not fit: try --batch 16)"),
            "{cli}"
        );

        let memory = EngineError::MemoryLimit {
            slide: PathBuf::from("in/a.svs"),
            rss_mib: 812.0,
            limit_mib: 300.0,
        };
        assert!(!memory.to_string().contains("--"), "{memory}");
        assert_eq!(
            flag_context(memory).to_string(),
            "in/a.svs: wsiseg's memory reached 812 MiB, more than --max-memory (300 MiB); the slide was stopped (raise --max-memory, or lower --batch or --readers)"
        );

        let coarse = EngineError::Unsupported {
            slide: PathBuf::from("a.png"),
            problem: format!("1000 µm/px is 400× coarser than …; {FINER}"),
        };
        assert!(!coarse.to_string().contains("--"), "{coarse}");
        assert!(flag_context(coarse)
            .to_string()
            .ends_with("; choose a finer --mpp, or --level"));

        let unlabelled = wsiseg_eval::EvalError::Unlabelled {
            path: PathBuf::from("t/a.xml"),
            class: "Stroma".into(),
        };
        assert!(!unlabelled.to_string().contains("--"), "{unlabelled}");
        assert!(eval_context(unlabelled)
            .to_string()
            .contains("give it one with --truth-labels 'Stroma=1' (tumor)"));
    }
}
