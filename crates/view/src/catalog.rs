//! The slides of an output folder the viewer serves: from the folder's
//! merged summary (run records, reports, recorded failures) and `eval.json`,
//! worst first. Only these slides and their outputs under the folder are
//! ever read; an output that resolves outside the folder (a symbolic link
//! out of it) is not served.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};
use wsiseg_report::SlideReport;

use crate::render::Pyramid;

/// Slides kept open at once (each holds its reader's decoded-tile cache).
const OPEN_SLIDES: usize = 4;

/// One slide of the folder.
pub struct Entry {
    /// Its output name (`x`, or `a/x` in a subfolder).
    pub name: String,
    /// The slide file (where the run record says, or found under --input).
    pub slide: PathBuf,
    /// `done`, `failed` or `missing`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Its report, when there is one.
    pub report: Option<SlideReport>,
    /// Its summary figures, for the list.
    pub figures: Value,
    /// Its entry of `eval.json`.
    pub eval: Option<Value>,
    /// NAME.mask.tiff, when it is a file under the folder.
    pub mask: Option<PathBuf>,
    /// NAME.prob.tiff.
    pub prob: Option<PathBuf>,
    /// NAME.heatmap.png (shown when there is no NAME.prob.tiff).
    pub heatmap: Option<PathBuf>,
    /// NAME.geojson.
    pub geojson: Option<PathBuf>,
    /// The truth `wsiseg eval` compared it with, and the prediction it
    /// compared (for the truth's outline).
    pub truth: Option<(PathBuf, PathBuf)>,
    /// The open readers.
    pub opened: Mutex<Option<Arc<Opened>>>,
    /// The truth's outline (PNG), once made.
    pub outline: OnceLock<Result<Arc<Vec<u8>>, String>>,
    /// The regions (JSON), once read.
    pub regions: OnceLock<Result<Arc<Vec<u8>>, String>>,
}

/// A slide's readers.
pub struct Opened {
    /// The slide, or why it cannot be read.
    pub slide: Result<Pyramid, String>,
    /// The label mask.
    pub mask: Option<Result<Pyramid, String>>,
    /// The probability map.
    pub prob: Option<Result<Pyramid, String>>,
    /// The mask's background colour (drawn transparent).
    pub background: [u8; 3],
}

/// The folder's slides.
pub struct Catalog {
    /// The output folder (canonical).
    pub out: PathBuf,
    /// Its slides, worst first.
    pub entries: Vec<Entry>,
    /// `eval.json`'s pooled figures, when there is one.
    pub eval: Option<Value>,
    open_order: Mutex<VecDeque<usize>>,
}

/// `path` if it is a file that resolves inside `root` (canonical).
pub fn inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let real = path.canonicalize().ok()?;
    (real.starts_with(root) && real.is_file()).then_some(real)
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// `slide` where it is, or a file of the same name (and subfolder) under
/// one of `inputs` (results copied away from the slides).
fn locate(slide: &Path, name: &str, inputs: &[PathBuf]) -> PathBuf {
    if slide.is_file() || inputs.is_empty() {
        return slide.to_path_buf();
    }
    let Some(file) = slide.file_name() else {
        return slide.to_path_buf();
    };
    let sub = Path::new(name).parent().unwrap_or(Path::new(""));
    inputs
        .iter()
        .flat_map(|i| [i.join(sub).join(file), i.join(file)])
        .chain(
            inputs
                .iter()
                .filter(|i| i.file_name() == Some(file))
                .cloned(),
        )
        .find(|p| p.is_file())
        .unwrap_or_else(|| slide.to_path_buf())
}

impl Catalog {
    /// Reads the folder `out`; `inputs` are folders where slides that moved
    /// since their run are looked for.
    pub fn read(out: &Path, inputs: &[PathBuf]) -> Result<Self, String> {
        let root = out
            .canonicalize()
            .map_err(|e| format!("{}: {e}", out.display()))?;
        if !root.is_dir() {
            return Err(format!("{}: not a folder", out.display()));
        }
        let rows = wsiseg_engine::merge_summary(&root, Vec::new());
        let eval = read_json(&root.join("eval.json"));
        let eval_of = |name: &str| -> Option<Value> {
            eval.as_ref()?["slides"]
                .as_array()?
                .iter()
                .find(|s| s["slide"].as_str() == Some(name))
                .cloned()
        };
        let mut entries: Vec<Entry> = rows
            .iter()
            .map(|r| {
                let file = |suffix: &str| inside(&root, &root.join(format!("{}.{suffix}", r.name)));
                let report = r
                    .report
                    .as_deref()
                    .and_then(|p| wsiseg_report::read::<SlideReport>(p).ok());
                let line = r.line();
                let eval = eval_of(&r.name).or_else(|| {
                    // eval names a slide by its mask's file name.
                    let base = Path::new(&r.name).file_name()?.to_str()?.to_string();
                    eval_of(&base)
                });
                let truth = eval.as_ref().and_then(|e| {
                    let truth = PathBuf::from(e["truth"].as_str()?);
                    let pred = PathBuf::from(e["pred"].as_str()?);
                    (truth.is_file() && pred.is_file()).then_some((truth, pred))
                });
                Entry {
                    slide: locate(&r.slide, &r.name, inputs),
                    status: r.status.name().to_string(),
                    error: r.error.clone(),
                    figures: json!({
                        "tumor_pct": line.tumor_fraction.map(|f| f * 100.0),
                        "tumor_mm2": line.tumor_mm2,
                        "regions": line.regions,
                        "largest_mm2": line.largest_region_mm2,
                        "tissue_mm2": line.tissue_mm2,
                        "dice": eval.as_ref().and_then(dice),
                    }),
                    mask: file("mask.tiff"),
                    prob: file("prob.tiff"),
                    heatmap: file("heatmap.png"),
                    geojson: file("geojson"),
                    name: r.name.clone(),
                    report,
                    eval,
                    truth,
                    opened: Mutex::new(None),
                    outline: OnceLock::new(),
                    regions: OnceLock::new(),
                }
            })
            .collect();
        // Worst first: failures, then the lowest Dice, then the most tumor.
        let key = |e: &Entry| {
            (
                e.status != "failed",
                e.figures["dice"].as_f64().unwrap_or(f64::INFINITY),
                -e.figures["tumor_pct"].as_f64().unwrap_or(-1.0),
            )
        };
        entries.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0)
                .then(ka.1.total_cmp(&kb.1))
                .then(ka.2.total_cmp(&kb.2))
                .then(a.name.cmp(&b.name))
        });
        Ok(Self {
            out: root,
            entries,
            eval: eval
                .map(|e| json!({"mean": e["mean"], "micro": e["micro"], "lesions": e["lesions"]})),
            open_order: Mutex::new(VecDeque::new()),
        })
    }

    /// The readers of slide `id`, opened now if they are not; at most
    /// [`OPEN_SLIDES`] slides stay open.
    pub fn open(&self, id: usize) -> Arc<Opened> {
        let entry = &self.entries[id];
        let mut slot = entry.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = slot.as_ref() {
            return o.clone();
        }
        let opened = Arc::new(open_entry(entry));
        *slot = Some(opened.clone());
        drop(slot);
        let mut order = self.open_order.lock().unwrap_or_else(|p| p.into_inner());
        order.retain(|&i| i != id);
        order.push_back(id);
        while order.len() > OPEN_SLIDES {
            if let Some(old) = order.pop_front() {
                *self.entries[old]
                    .opened
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
            }
        }
        opened
    }
}

/// The tumor Dice of an `eval.json` entry.
fn dice(e: &Value) -> Option<f64> {
    e["classes"].as_object()?.values().next()?["dice"].as_f64()
}

fn pyramid(path: &Path, reader: wsiseg_slide::Reader, mpp: Option<f64>) -> Result<Pyramid, String> {
    let slide = wsiseg_slide::open_with(path, reader).map_err(|e| e.to_string())?;
    let slide = match mpp {
        Some(m) => wsiseg_slide::with_mpp(slide, m),
        None => slide,
    };
    Pyramid::new(slide).ok_or_else(|| format!("{}: the slide has no pixels", path.display()))
}

fn open_entry(e: &Entry) -> Opened {
    let params = e.report.as_ref().map(|r| &r.parameters);
    let reader = params
        .and_then(|p| p.reader.parse().ok())
        .unwrap_or_default();
    let slide = if e.status == "missing" {
        Err(format!("{}: not segmented yet", e.slide.display()))
    } else {
        pyramid(&e.slide, reader, params.and_then(|p| p.slide_mpp))
    };
    let output = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| pyramid(p, wsiseg_slide::Reader::Auto, None))
    };
    let background = e
        .mask
        .as_deref()
        .and_then(wsiseg_slide::tiff_palette)
        .and_then(|c| c.first().copied())
        .unwrap_or([0, 0, 0]);
    Opened {
        slide,
        mask: output(&e.mask),
        prob: output(&e.prob),
        background,
    }
}
