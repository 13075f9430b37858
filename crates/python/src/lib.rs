//! `wsiseg._wsiseg`: the engine as a Python extension module. Nothing here
//! decides anything the engine does not: arguments become the engine's
//! options, its results become Python objects, its typed errors Python
//! exceptions, and its threads run with the GIL released while the calling
//! thread relays progress and watches for Ctrl-C.
//!
//! `python/wsiseg/__init__.py` imports `torch` and `openslide_bin` before
//! this module, so libtorch and OpenSlide are the libraries Python loaded.

// Python functions take the command's options as keyword arguments: one
// Rust parameter each, converted in one place.
#![allow(clippy::too_many_arguments, clippy::too_many_lines)]

use std::path::PathBuf;

use pyo3::exceptions::{PyException, PyKeyboardInterrupt};
use pyo3::prelude::*;
use pyo3::types::PyModule;

mod engine;
mod run;
mod slide;

pyo3::create_exception!(
    wsiseg,
    WsisegError,
    PyException,
    "Base class of every error wsiseg raises; its message is the one line the `wsiseg` command prints."
);
pyo3::create_exception!(
    wsiseg,
    SlideError,
    WsisegError,
    "A slide that is missing, unreadable, corrupt or of an unsupported layout."
);
pyo3::create_exception!(
    wsiseg,
    ModelError,
    WsisegError,
    "A model that cannot be loaded, does not fit its manifest, or gave NaN/Inf."
);
pyo3::create_exception!(
    wsiseg,
    OutputError,
    WsisegError,
    "Outputs that cannot be written, are locked by another process, or were made differently."
);
pyo3::create_exception!(
    wsiseg,
    SettingError,
    WsisegError,
    "An impossible setting (a tile size, a resolution, an array of the wrong shape…)."
);

use wsiseg_engine::{error_line, EngineError, Setting};

/// The Python keyword that sets an engine setting.
fn keyword(setting: Setting) -> &'static str {
    match setting {
        Setting::Tile => "tile",
        Setting::Overlap => "overlap",
        Setting::Batch => "batch",
        Setting::Readers => "readers",
        Setting::Devices => "device",
        Setting::MaskMpp => "mask_mpp",
        Setting::SlideMpp => "slide_mpp",
        Setting::MinArea => "min_area",
        Setting::MaskValues => "mask_values",
        Setting::Outputs => "formats",
        Setting::BadTiles => "bad_tiles",
        Setting::Decode => "decode",
    }
}

/// The engine's error as the matching Python exception.
pub(crate) fn to_py(e: EngineError) -> PyErr {
    let text = match &e {
        EngineError::Setting {
            setting,
            value,
            problem,
        } => format!("{}={value}: {problem}", keyword(*setting)),
        EngineError::Incomplete { .. } => {
            format!("{}: give overwrite=True to redo this slide", error_line(&e))
        }
        EngineError::Changed { .. } => format!(
            "{}: give overwrite=True to redo it, or another output folder",
            error_line(&e)
        ),
        _ => error_line(&e),
    };
    match e {
        EngineError::Cancelled => PyKeyboardInterrupt::new_err(text),
        EngineError::Slide(_) | EngineError::Plan(_) | EngineError::Unsupported { .. } => {
            SlideError::new_err(text)
        }
        EngineError::Infer(_) | EngineError::NonFinite { .. } | EngineError::NotLoaded(_) => {
            ModelError::new_err(text)
        }
        EngineError::Setting { .. } => SettingError::new_err(text),
        EngineError::Io { .. }
        | EngineError::Tiff(_)
        | EngineError::Png(_)
        | EngineError::Locked { .. }
        | EngineError::Changed { .. }
        | EngineError::Incomplete { .. }
        | EngineError::SameName { .. } => OutputError::new_err(text),
        _ => WsisegError::new_err(text),
    }
}

/// A setting error raised from the module's own checks.
pub(crate) fn setting_error(text: impl Into<String>) -> PyErr {
    SettingError::new_err(text.into())
}

/// `synth(out, seed=1, size=(8192, 8192), mpp=0.25, quality=80, plain=(), overwrite=False)`
#[pyfunction]
#[pyo3(signature = (out, seed = 1, size = (8192, 8192), mpp = 0.25, quality = 80, plain = Vec::new(), overwrite = false))]
fn synth(
    py: Python<'_>,
    out: PathBuf,
    seed: u64,
    size: (u32, u32),
    mpp: f64,
    quality: u8,
    plain: Vec<String>,
    overwrite: bool,
) -> PyResult<(PathBuf, PathBuf)> {
    use wsiseg_synth::{generate, plain_path, PlainFormat, SynthSpec};
    let name = format!("synth-{seed}");
    let slide = out.join(format!("{name}.svs"));
    let truth = out.join("truth").join(format!("{name}.tiff"));
    let mut formats = Vec::new();
    for p in &plain {
        formats.push(match p.to_ascii_lowercase().as_str() {
            "png" => PlainFormat::Png,
            "jpeg" | "jpg" => PlainFormat::Jpeg { quality },
            "tiff" | "tif" => PlainFormat::Tiff,
            other => {
                return Err(setting_error(format!(
                    "plain={other}: not a plain format (png, jpeg, tiff)"
                )))
            }
        });
    }
    if !overwrite {
        let plains = formats.iter().map(|&f| plain_path(&slide, f));
        for p in [slide.clone(), truth.clone()].into_iter().chain(plains) {
            if p.exists() {
                return Err(OutputError::new_err(format!(
                    "{}: already exists (give overwrite=True to replace it)",
                    p.display()
                )));
            }
        }
    }
    std::fs::create_dir_all(out.join("truth")).map_err(|e| {
        OutputError::new_err(format!(
            "{}: cannot create output folder: {e}",
            out.display()
        ))
    })?;
    let spec = SynthSpec {
        seed,
        width: size.0,
        height: size.1,
        mpp,
        quality,
        plain: formats,
        ..SynthSpec::default()
    };
    py.detach(|| generate(&spec, &slide, &truth, &mut |_| {}))
        .map_err(|e| WsisegError::new_err(error_line(&e)))?;
    Ok((slide, truth))
}

/// Scores a predicted mask against the truth as `wsiseg eval --pred PRED
/// --truth TRUTH` does for one slide: a dict with the figures of its
/// `eval.json` entry (per-class Dice, IoU, precision, recall; tumor errors;
/// lesions found and missed by size; boundary F; calibration when
/// `probabilities` names a probability map). `truth` may be a mask or
/// annotations (ASAP XML, QuPath GeoJSON; `truth_labels` labels their
/// classes, e.g. {"Stroma": 0}).
#[pyfunction]
#[pyo3(signature = (pred, truth, boundary_tolerance = 2, probabilities = None, classes = None, truth_labels = None))]
fn evaluate<'py>(
    py: Python<'py>,
    pred: PathBuf,
    truth: PathBuf,
    boundary_tolerance: u32,
    probabilities: Option<PathBuf>,
    classes: Option<Vec<String>>,
    truth_labels: Option<std::collections::BTreeMap<String, u8>>,
) -> PyResult<Bound<'py, PyAny>> {
    let classes = classes.unwrap_or_else(|| vec!["background".into(), "tumor".into()]);
    let opts = wsiseg_eval::Options {
        boundary_tolerance,
        probabilities: probabilities.clone(),
        calibration_bins: 10,
        labels: wsiseg_eval::Labels {
            explicit: truth_labels.unwrap_or_default().into_iter().collect(),
            classes: classes.clone(),
        },
    };
    let eval = py
        .detach(|| wsiseg_eval::evaluate(&pred, &truth, &opts))
        .map_err(|e| WsisegError::new_err(error_line(&e)))?;
    let scores = eval.class_scores(classes.len());
    let name = pred
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    let figures = wsiseg_eval::SlideEvaluation {
        name: &name,
        pred: &pred,
        truth: &truth,
        prob: probabilities.as_deref(),
        scores: &scores,
        eval: &eval,
    }
    .to_json(&|k| {
        classes
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("class {k}"))
    });
    engine::json(py, &figures.to_string())
}

/// The libraries the engine was built against and loads: a dict of names
/// to versions (None where a library is not loaded).
#[pyfunction]
fn versions() -> std::collections::BTreeMap<&'static str, Option<String>> {
    let mut v = std::collections::BTreeMap::new();
    v.insert("wsiseg", Some(env!("CARGO_PKG_VERSION").to_string()));
    v.insert("openslide", wsiseg_slide::openslide_version());
    v
}

#[pymodule]
fn _wsiseg(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("WsisegError", py.get_type::<WsisegError>())?;
    m.add("SlideError", py.get_type::<SlideError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("OutputError", py.get_type::<OutputError>())?;
    m.add("SettingError", py.get_type::<SettingError>())?;
    m.add_class::<engine::Engine>()?;
    m.add_class::<engine::SegmentResult>()?;
    m.add_class::<slide::Slide>()?;
    m.add_class::<slide::Tiles>()?;
    m.add_function(wrap_pyfunction!(slide::open, m)?)?;
    m.add_function(wrap_pyfunction!(synth, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(versions, m)?)?;
    Ok(())
}
