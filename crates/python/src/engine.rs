//! `wsiseg.Engine`: models loaded once, slides and tiles run through them.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use numpy::ndarray::{Array3, Array4};
use numpy::{PyArray3, PyArray4, PyReadonlyArray4, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use wsiseg_engine::{
    collect_inputs, BadTiles, Batch, DeviceList, EngineBuilder, EngineError, Format, MaskValues,
    Precision, Reader, Request, RunControl, Shard, SlideOutcome, SummaryKind, TissuePolicy, Tta,
};

use crate::run::run_engine;
use crate::setting_error;

/// Parses a word the engine knows (`"f16"`, `"dihedral"`…) or raises
/// SettingError naming the keyword.
fn parse<T: FromStr>(keyword: &str, value: &str) -> PyResult<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| setting_error(format!("{keyword}={value}: {e}")))
}

/// A JSON text as Python objects (dicts, lists, numbers, strings).
pub(crate) fn json<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

fn to_json<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| crate::WsisegError::new_err(format!("internal error: {e}")))?;
    json(py, &text)
}

/// A JSON file (a report, a summary) as Python objects, None when absent.
fn json_file<'py>(py: Python<'py>, path: &Path) -> PyResult<Option<Bound<'py, PyAny>>> {
    match std::fs::read_to_string(path) {
        Ok(text) => json(py, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::OutputError::new_err(format!(
            "{}: cannot read: {e}",
            path.display()
        ))),
    }
}

/// The model argument: a path, or a list of paths or of (path, weight).
fn models(model: &Bound<'_, PyAny>) -> PyResult<Vec<(PathBuf, f64)>> {
    if let Ok(one) = model.extract::<PathBuf>() {
        return Ok(vec![(one, 1.0)]);
    }
    let list: Vec<Bound<'_, PyAny>> = if model.is_instance_of::<pyo3::types::PyString>() {
        Vec::new()
    } else {
        model.extract().map_err(|_| {
            setting_error(
                "model: give a model folder or file, or a list of them (or of (path, weight) pairs)",
            )
        })?
    };
    let mut all = Vec::new();
    for item in list {
        if let Ok(p) = item.extract::<PathBuf>() {
            all.push((p, 1.0));
        } else if let Ok(pair) = item.extract::<(PathBuf, f64)>() {
            all.push(pair);
        } else {
            return Err(setting_error(format!(
                "model: {item} is neither a path nor a (path, weight) pair"
            )));
        }
    }
    if all.is_empty() {
        return Err(setting_error("model: the list of models is empty"));
    }
    Ok(all)
}

/// Engine(model, device="auto", precision=None, batch=None, tta="none",
/// threshold=None, readers=None, decode="auto")
///
/// Models loaded once on their devices, ready to segment slides and tiles.
///
/// `model` is a model folder or file (TorchScript `.pt`, AOTInductor `.pt2`
/// or ONNX `.onnx`, with its manifest), or a list of them — or of (path,
/// weight) pairs — for an ensemble. `device`: "auto", "cpu", "cuda",
/// "cuda:1", "cuda:0,cuda:1", "cuda:all" or "cpu,cpu" (one worker each). `precision`:
/// "f32", "f16" or "bf16" (default f16 on CUDA, f32 on the CPU). `batch`:
/// tiles per model call (32 on CUDA, 8 on the CPU). `tta`: "none", "flips"
/// or "dihedral". `threshold`: binary models' P(tumor) above which a pixel
/// is tumor (default: the manifest's, else the arg-max). `readers`: reader
/// threads per slide. `decode`: where stored JPEG tiles are decoded: "auto"
/// (with nvJPEG on the model's GPU when it has one), "cpu" or "gpu".
#[pyclass(module = "wsiseg", frozen)]
pub struct Engine {
    engine: wsiseg_engine::Engine,
}

fn request(
    formats: Option<&Bound<'_, PyAny>>,
    mpp: Option<f64>,
    level: Option<u32>,
    slide_mpp: Option<f64>,
    tile: Option<u32>,
    overlap: Option<u32>,
    tissue: bool,
    tissue_threshold: Option<u8>,
    reader: &str,
    mask_values: &str,
    min_area: f64,
    overwrite: bool,
    bad_tiles: &str,
) -> PyResult<Request> {
    let formats = match formats {
        None => Request::default().formats,
        Some(formats) => {
            let words: Vec<String> = if let Ok(s) = formats.extract::<String>() {
                s.split(',').map(|w| w.trim().to_string()).collect()
            } else {
                formats.extract::<Vec<String>>().map_err(|_| {
                    setting_error(
                        "formats: give a list of output names (or a comma-separated string)",
                    )
                })?
            };
            words
                .iter()
                .filter(|w| !w.is_empty())
                .map(|w| parse::<Format>("formats", w))
                .collect::<PyResult<Vec<_>>>()?
        }
    };
    Ok(Request {
        level,
        mpp,
        slide_mpp,
        tile,
        overlap,
        tissue: if tissue {
            TissuePolicy::Detect(tissue_threshold)
        } else {
            TissuePolicy::All
        },
        reader: parse::<Reader>("reader", reader)?,
        formats,
        mask_values: parse::<MaskValues>("mask_values", mask_values)?,
        min_area,
        overwrite,
        bad_tiles: parse::<BadTiles>("bad_tiles", bad_tiles)?,
        ..Request::default()
    })
}

#[pymethods]
impl Engine {
    /// Loads the model(s): see the class.
    #[new]
    #[pyo3(signature = (model, device = "auto", precision = None, batch = None, tta = "none", threshold = None, readers = None, decode = "auto"))]
    fn new(
        py: Python<'_>,
        model: &Bound<'_, PyAny>,
        device: &str,
        precision: Option<&str>,
        batch: Option<usize>,
        tta: &str,
        threshold: Option<f64>,
        readers: Option<usize>,
        decode: &str,
    ) -> PyResult<Self> {
        let models = models(model)?;
        let devices: DeviceList = parse("device", device)?;
        let precision = precision
            .map(|p| parse::<Precision>("precision", p))
            .transpose()?;
        let tta: Tta = parse("tta", tta)?;
        let decode: wsiseg_engine::Decode = parse("decode", decode)?;
        let engine = py
            .detach(|| {
                let devices = devices.resolve()?;
                EngineBuilder::new(&models[0].0)
                    .models(models)
                    .devices(devices)
                    .precision(precision)
                    .batch(batch)
                    .readers(readers)
                    .tta(tta)
                    .threshold(threshold)
                    .decode(decode)
                    .build()
            })
            .map_err(crate::to_py)?;
        Ok(Self { engine })
    }

    /// The model's manifest as a dict (name, classes, tile, mpp…).
    #[getter]
    fn manifest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_json(py, self.engine.manifest())
    }

    /// The devices, one per inference worker ("cpu", "cuda:0"…).
    #[getter]
    fn devices(&self) -> Vec<String> {
        self.engine.device_names()
    }

    /// The precision the model runs in.
    #[getter]
    fn precision(&self) -> String {
        self.engine.precision().to_string()
    }

    /// Tiles per model call.
    #[getter]
    fn batch(&self) -> usize {
        self.engine.batch()
    }

    /// Each model: name, file, SHA-256, weight and the runtime that runs it.
    #[getter]
    fn members<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for m in self.engine.members() {
            let d = PyDict::new(py);
            d.set_item("name", &m.name)?;
            d.set_item("path", &m.path)?;
            d.set_item("sha256", &m.sha256)?;
            d.set_item("weight", m.weight)?;
            d.set_item("runtime", m.runtime)?;
            list.append(d)?;
        }
        Ok(list)
    }

    fn __repr__(&self) -> String {
        format!(
            "Engine(model={:?}, devices={:?}, precision={:?}, batch={})",
            self.engine.model_path().display().to_string(),
            self.engine.device_names(),
            self.engine.precision().to_string(),
            self.engine.batch()
        )
    }

    /// Segments one slide into the folder `out`, as `wsiseg segment SLIDE
    /// --out OUT` does (the slide's lock, resume by fingerprint, every
    /// output complete or none). `progress(done, total)` is called on this
    /// thread as tiles come back. Returns a SegmentResult.
    #[pyo3(signature = (slide, out, formats = None, mpp = None, level = None, slide_mpp = None, tile = None, overlap = None, tissue = true, tissue_threshold = None, reader = "auto", mask_values = "01", min_area = 500.0, overwrite = false, bad_tiles = "fail", progress = None))]
    fn segment(
        &self,
        py: Python<'_>,
        slide: PathBuf,
        out: PathBuf,
        formats: Option<&Bound<'_, PyAny>>,
        mpp: Option<f64>,
        level: Option<u32>,
        slide_mpp: Option<f64>,
        tile: Option<u32>,
        overlap: Option<u32>,
        tissue: bool,
        tissue_threshold: Option<u8>,
        reader: &str,
        mask_values: &str,
        min_area: f64,
        overwrite: bool,
        bad_tiles: &str,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<SegmentResult> {
        let request = request(
            formats,
            mpp,
            level,
            slide_mpp,
            tile,
            overlap,
            tissue,
            tissue_threshold,
            reader,
            mask_values,
            min_area,
            overwrite,
            bad_tiles,
        )?;
        let engine = &self.engine;
        engine.check(&request).map_err(crate::to_py)?;
        let outcome = run_engine(py, progress, |cancel, report| {
            let control = RunControl::new(cancel).on_progress(report);
            engine.segment(&slide, &out, &request, &control)
        })?;
        let paths = wsiseg_engine::OutputPaths::new(&out, &slide);
        let report = json_file(py, &paths.report())?.map(Bound::unbind);
        Ok(match outcome {
            SlideOutcome::Segmented {
                stats,
                files,
                figures,
            } => SegmentResult {
                slide,
                skipped: false,
                files,
                figures: to_json(py, &figures)?.unbind(),
                timings: Some(
                    to_json(
                        py,
                        &serde_json::json!({
                            "plan_s": stats.plan_s,
                            "read_s": stats.read_s,
                            "inference_s": stats.inference_s,
                            "stitch_write_s": stats.stitch_write_s,
                            "pipeline_wall_s": stats.pipeline_wall_s,
                            "outputs_s": stats.outputs_s,
                            "total_s": stats.total_s,
                            "tiles_planned": stats.tiles_planned,
                            "tiles_run": stats.tiles_run,
                        }),
                    )?
                    .unbind(),
                ),
                report,
            },
            SlideOutcome::Skipped(record) => SegmentResult {
                slide,
                skipped: true,
                files: record.files.iter().map(|f| out.join(&f.name)).collect(),
                figures: to_json(py, &record.figures)?.unbind(),
                timings: None,
                report,
            },
        })
    }

    /// Segments every slide of `inputs` (slide files, folders, glob
    /// patterns or slide lists) into `out`, as `wsiseg segment INPUTS…
    /// --out OUT` does: a failed slide is a row of the summary, never the
    /// end of the run; locks, resume, `summary.json`/`.csv` and `index.html`
    /// as the command writes them. `shard="I/N"` takes the I-th of N shares.
    /// `progress(done, total)` counts slides.
    /// Returns a dict: `slides` (each slide's status, error, figures and
    /// report path), `summary` (the merged summary.json, when written) and
    /// `page` (index.html).
    #[pyo3(signature = (inputs, out, formats = None, recursive = false, shard = None, mpp = None, level = None, slide_mpp = None, tile = None, overlap = None, tissue = true, tissue_threshold = None, reader = "auto", mask_values = "01", min_area = 500.0, overwrite = false, bad_tiles = "fail", one_at_a_time = false, progress = None))]
    fn segment_many<'py>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyAny>,
        out: PathBuf,
        formats: Option<&Bound<'py, PyAny>>,
        recursive: bool,
        shard: Option<&str>,
        mpp: Option<f64>,
        level: Option<u32>,
        slide_mpp: Option<f64>,
        tile: Option<u32>,
        overlap: Option<u32>,
        tissue: bool,
        tissue_threshold: Option<u8>,
        reader: &str,
        mask_values: &str,
        min_area: f64,
        overwrite: bool,
        bad_tiles: &str,
        one_at_a_time: bool,
        progress: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let inputs: Vec<PathBuf> = match inputs.extract::<PathBuf>() {
            Ok(one) => vec![one],
            Err(_) => inputs.extract().map_err(|_| {
                setting_error("inputs: give a slide, folder, pattern or list, or a list of them")
            })?,
        };
        let request = request(
            formats,
            mpp,
            level,
            slide_mpp,
            tile,
            overlap,
            tissue,
            tissue_threshold,
            reader,
            mask_values,
            min_area,
            overwrite,
            bad_tiles,
        )?;
        let shard: Option<Shard> = shard.map(|s| parse("shard", s)).transpose()?;
        let found = collect_inputs(&inputs, recursive)
            .map_err(|e| crate::SlideError::new_err(wsiseg_engine::error_line(&e)))?;
        let slides = match &shard {
            Some(s) => s.select(found.slides),
            None => found.slides,
        };
        let many = found.many;
        let batch = Batch {
            slides,
            out: out.clone(),
            request,
            one_at_a_time,
            summary: match &shard {
                Some(s) => SummaryKind::Own(s.summary_stem()),
                None if many => SummaryKind::Merged,
                None => SummaryKind::None,
            },
            many,
        };
        let engine = &self.engine;
        engine.check(&batch.request).map_err(crate::to_py)?;
        let total = batch.slides.len() as u64;
        let outcome = run_engine(py, progress, |cancel, report| {
            struct Slides<'a>(&'a (dyn Fn(wsiseg_engine::Progress) + Sync), u64);
            impl wsiseg_engine::BatchObserver for Slides<'_> {
                fn finished(&self, k: usize, _: &wsiseg_engine::SlideInput, _: &SlideOutcome) {
                    (self.0)(wsiseg_engine::Progress {
                        tiles_done: k as u64 + 1,
                        tiles_total: self.1,
                    });
                }
            }
            let outcome = engine.segment_many(&batch, cancel, &Slides(report, total))?;
            if outcome.cancelled() {
                return Err(EngineError::Cancelled);
            }
            Ok(outcome)
        })?;
        let result = PyDict::new(py);
        let slides = PyList::empty(py);
        for entry in outcome.entries.iter().flatten() {
            let d = PyDict::new(py);
            d.set_item("slide", &entry.slide)?;
            d.set_item("name", &entry.name)?;
            d.set_item("status", entry.status.name())?;
            d.set_item("error", &entry.error)?;
            d.set_item(
                "figures",
                entry.figures.as_ref().map(|f| to_json(py, f)).transpose()?,
            )?;
            d.set_item("report", &entry.report)?;
            slides.append(d)?;
        }
        result.set_item("slides", slides)?;
        let summary = match &outcome.summary_file {
            Some(file) => json_file(py, file)?,
            None => None,
        };
        result.set_item("summary", summary)?;
        result.set_item("page", outcome.page)?;
        Ok(result)
    }

    /// Runs tiles through the model as a slide run does (normalisation,
    /// TTA, ensemble, threshold, NaN guard): `tiles` is a `uint8` array
    /// N×H×W×3 (RGB, H = W, a multiple of the model's tile multiple).
    /// Returns the labels, `uint8` N×H×W; with `probabilities=True`, the
    /// pair (labels, probabilities) where probabilities is `uint8`
    /// N×C×H×W (P scaled to 0–255, one plane per class from class 1 on).
    #[pyo3(signature = (tiles, probabilities = false))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        tiles: &Bound<'py, PyAny>,
        probabilities: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let array: PyReadonlyArray4<'py, u8> = tiles.extract().map_err(|e: PyErr| {
            let what = tiles
                .getattr("dtype")
                .and_then(|d| d.str().map(|s| s.to_string()))
                .ok()
                .zip(
                    tiles
                        .getattr("shape")
                        .and_then(|s| s.str().map(|s| s.to_string()))
                        .ok(),
                )
                .map(|(d, s)| format!("an array of {d} with shape {s}"))
                .unwrap_or_else(|| format!("{}", e.value(py)));
            setting_error(format!(
                "tiles: give a uint8 array N×H×W×3 (RGB); this is {what}"
            ))
        })?;
        let shape = array.shape().to_vec();
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3]);
        if c != 3 || h != w {
            return Err(setting_error(format!(
                "tiles: give a uint8 array N×H×W×3 (RGB, square tiles); this one is {n}×{h}×{w}×{c}"
            )));
        }
        let owned;
        let bytes: &[u8] = match array.as_slice() {
            Ok(s) => s,
            Err(_) => {
                owned = array.as_array().iter().copied().collect::<Vec<u8>>();
                &owned
            }
        };
        let side = u32::try_from(h).map_err(|_| {
            setting_error(format!(
                "tiles: {h}×{w} px tiles are larger than any model runs"
            ))
        })?;
        let engine = &self.engine;
        let prediction = run_engine(py, None, |cancel, _| {
            engine.predict(bytes, n, side, probabilities, cancel)
        })?;
        let labels =
            Array3::from_shape_vec((n, h, w), prediction.labels).expect("n×side×side labels");
        let labels = PyArray3::from_owned_array(py, labels);
        match prediction.probabilities {
            None => Ok(labels.into_any()),
            Some(p) => {
                let p = Array4::from_shape_vec((n, prediction.planes, h, w), p)
                    .expect("n×planes×side×side probabilities");
                let p = PyArray4::from_owned_array(py, p);
                Ok((labels, p).into_pyobject(py)?.into_any())
            }
        }
    }
}

/// What `Engine.segment` did for a slide.
#[pyclass(module = "wsiseg", frozen, get_all)]
pub struct SegmentResult {
    /// The slide.
    slide: PathBuf,
    /// Whether its outputs were complete already (same model and settings).
    skipped: bool,
    /// The files written (or found complete), in order.
    files: Vec<PathBuf>,
    /// Tumor fraction, area (mm²), regions, tissue…, as the run record has them.
    figures: Py<PyAny>,
    /// Seconds per stage and tile counts (None when skipped).
    timings: Option<Py<PyAny>>,
    /// NAME.report.json as a dict (None without the report output).
    report: Option<Py<PyAny>>,
}

#[pymethods]
impl SegmentResult {
    /// Share of the working level labelled tumor.
    #[getter]
    fn tumor_fraction(&self, py: Python<'_>) -> PyResult<f64> {
        self.figures.bind(py).get_item("tumor_fraction")?.extract()
    }

    /// Tumor area in mm² (None when the slide records no resolution).
    #[getter]
    fn tumor_mm2(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        self.figures.bind(py).get_item("tumor_mm2")?.extract()
    }

    /// Connected tumor regions.
    #[getter]
    fn regions(&self, py: Python<'_>) -> PyResult<Option<usize>> {
        self.figures.bind(py).get_item("regions")?.extract()
    }

    /// The file written for an output name ("mask.png", "report.json"…),
    /// or None.
    fn file(&self, suffix: &str) -> Option<PathBuf> {
        self.files
            .iter()
            .find(|f| f.to_string_lossy().ends_with(suffix))
            .cloned()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "SegmentResult(slide={:?}, skipped={}, tumor_fraction={:.4}, files={})",
            self.slide.display().to_string(),
            if self.skipped { "True" } else { "False" },
            self.tumor_fraction(py).unwrap_or(f64::NAN),
            self.files.len()
        )
    }
}
