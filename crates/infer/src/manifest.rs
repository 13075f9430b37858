//! The JSON manifest that travels with every TorchScript model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::InferError;

/// The largest tile side the engine runs: a tile of 16384² pixels is
/// 805 MB of RGB before the model's tensors (4 bytes a value).
pub const MAX_TILE: u32 = 16384;

/// What the model's output channels hold — the manifest's older field,
/// kept so that existing manifests work: `"output": "logits"` is
/// `"activation": "softmax"`, `"probabilities"` is `"none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Unnormalized scores; the mask is their arg-max.
    Logits,
    /// Probabilities per class.
    Probabilities,
}

/// How the model's output becomes class probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Logits over C ≥ 2 channels, one per class: softmax across them.
    Softmax,
    /// One channel of logits: sigmoid gives P(tumor) (binary models trained
    /// with BCE, e.g. segmentation-models-pytorch with `classes=1`).
    Sigmoid,
    /// The channels already hold probabilities, one per class.
    None,
}

/// Which element of a tuple, list or dict output is the segmentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OutputElement {
    /// Position in a tuple or list (0 first).
    Index(usize),
    /// Key of a dict (e.g. `"logits"`, `"out"`).
    Key(String),
}

impl std::fmt::Display for OutputElement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputElement::Index(i) => write!(f, "{i}"),
            OutputElement::Key(k) => write!(f, "{k:?}"),
        }
    }
}

/// The order of the input's colour channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Red, green, blue (PIL, OpenSlide, torchvision).
    #[default]
    Rgb,
    /// Blue, green, red (OpenCV's `imread`).
    Bgr,
}

/// What a model expects and returns. Input: `N×3×tile×tile` float pixels,
/// `[0, 1]` (or `[0, 255]` with `input_scale` 255), in `channel_order`,
/// normalized by `(x − mean) / std`. Output (the tensor, or the
/// `output_element` of a tuple/list/dict): `N×C×(tile/output_stride)²`,
/// with C the number of classes (1 for `sigmoid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short model name, shown in logs and reports.
    pub name: String,
    /// What the model is and how it was made, in a sentence.
    #[serde(default)]
    pub description: String,
    /// The tile side the model was trained on (the default `--tile`).
    pub tile: u32,
    /// Tile sides must be multiples of this (2^pooling steps of a UNet).
    #[serde(default = "one")]
    pub tile_multiple: u32,
    /// Microns per pixel the model was trained at, when it matters.
    #[serde(default)]
    pub mpp: Option<f64>,
    /// Per-channel mean subtracted, in the input's scale and channel order.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by (same scale and order).
    pub std: [f32; 3],
    /// Pixel values fed to the model before normalization: 1 for `[0, 1]`
    /// (the default), 255 for `[0, 255]`.
    #[serde(default = "one_f32")]
    pub input_scale: f32,
    /// The input's channel order (default RGB).
    #[serde(default)]
    pub channel_order: ChannelOrder,
    /// Class names; index 0 is background, the mask stores the class index.
    /// A `sigmoid` model may list its one class alone (`["tumor"]`):
    /// background is then added in front.
    pub classes: Vec<String>,
    /// The older way to say the activation (see [`OutputKind`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputKind>,
    /// How the output becomes probabilities (see [`Activation`]); may be
    /// left out when `output` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    /// Which element of a tuple/list/dict output is the segmentation. Left
    /// out: a tensor is used as is, the first element of a tuple or list,
    /// and a dict's `"logits"` or `"out"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_element: Option<OutputElement>,
    /// The output's side is the input's divided by this (SegFormer: 4); it
    /// is upsampled on the device (bilinear, before the activation).
    #[serde(default = "one")]
    pub output_stride: u32,
    /// Binary models: a pixel is tumor when P(tumor) > threshold (overridden
    /// by `--threshold`). Left out: the arg-max (the same as 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Each class's colour as "#rrggbb", background first (the mask TIFF's
    /// palette, the GeoJSON classifications, the overlay). Left out:
    /// [`CLASS_COLOURS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colors: Option<Vec<String>>,
    /// Anything else the exporter recorded (training seeds, versions…).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The class colours used when a manifest gives none, background first:
/// tumor is a red that stands out from eosin pink; the others are far from
/// H&E's hues and from each other.
pub const CLASS_COLOURS: [[u8; 3]; 8] = [
    [0, 0, 0],
    [230, 30, 30],
    [30, 100, 230],
    [30, 170, 70],
    [240, 160, 0],
    [160, 60, 200],
    [0, 180, 190],
    [120, 80, 40],
];

/// "#rrggbb" → its colour.
fn parse_hex_colour(s: &str) -> Option<[u8; 3]> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let v = u32::from_str_radix(hex, 16).ok()?;
    Some([(v >> 16) as u8, (v >> 8) as u8, v as u8])
}

fn one() -> u32 {
    1
}

fn one_f32() -> f32 {
    1.0
}

impl Manifest {
    /// Each class's colour: the manifest's `colors`, else [`CLASS_COLOURS`]
    /// (grey past its end).
    pub fn class_colours(&self) -> Vec<[u8; 3]> {
        (0..self.classes.len())
            .map(|k| {
                self.colors
                    .as_ref()
                    .and_then(|c| c.get(k))
                    .and_then(|c| parse_hex_colour(c))
                    .or_else(|| CLASS_COLOURS.get(k).copied())
                    .unwrap_or([128, 128, 128])
            })
            .collect()
    }

    /// Reads and checks a manifest file.
    pub fn read(path: &Path) -> Result<Self, InferError> {
        let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => InferError::ManifestNotFound {
                path: path.to_path_buf(),
            },
            _ => InferError::ManifestIo {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let mut manifest: Manifest =
            serde_json::from_str(&text).map_err(|source| InferError::ManifestSyntax {
                path: path.to_path_buf(),
                source,
            })?;
        manifest.resolve(path)?;
        Ok(manifest)
    }

    /// How the output becomes probabilities (resolved by [`Self::read`]).
    pub fn activation(&self) -> Activation {
        match (self.activation, self.output) {
            (Some(a), _) => a,
            (None, Some(OutputKind::Probabilities)) => Activation::None,
            (None, _) => Activation::Softmax,
        }
    }

    /// Output channels the model returns: 1 for a sigmoid model, else one
    /// per class.
    pub fn output_channels(&self) -> usize {
        match self.activation() {
            Activation::Sigmoid => 1,
            _ => self.classes.len(),
        }
    }

    /// Fills what `output`/`activation` and a one-class sigmoid list imply,
    /// then checks every field.
    /// Checks `colors` (one "#rrggbb" per class, all different); a sigmoid
    /// model may give its one class's colour alone.
    fn check_colours(&mut self, activation: Activation) -> Result<(), String> {
        let Some(colors) = &mut self.colors else {
            return Ok(());
        };
        if colors.len() + 1 == self.classes.len() && activation == Activation::Sigmoid {
            colors.insert(0, "#000000".to_string());
        }
        if colors.len() != self.classes.len() {
            return Err("must give one \"#rrggbb\" colour per class, background first".into());
        }
        if let Some(c) = colors.iter().find(|c| parse_hex_colour(c).is_none()) {
            return Err(format!(
                "{c:?} is not a colour: write \"#rrggbb\" (e.g. \"#e61e1e\")"
            ));
        }
        let parsed: Vec<_> = colors.iter().filter_map(|c| parse_hex_colour(c)).collect();
        if (1..parsed.len()).any(|i| parsed[..i].contains(&parsed[i])) {
            return Err(
                "two classes have the same colour: the mask TIFF's palette could not tell them apart"
                    .into(),
            );
        }
        Ok(())
    }

    /// The tile's geometry: its side, the multiple it must be of, the
    /// output's stride; the field and the problem when one is wrong.
    fn check_tile(&self) -> Result<(), (&'static str, String)> {
        if self.tile_multiple == 0 {
            return Err(("tile_multiple", "must be at least 1".into()));
        }
        if self.tile == 0 || !self.tile.is_multiple_of(self.tile_multiple) {
            return Err((
                "tile",
                "must be a positive multiple of tile_multiple".into(),
            ));
        }
        if self.tile > MAX_TILE {
            return Err((
                "tile",
                format!(
                    "{} pixels is more than the largest tile wsiseg runs ({MAX_TILE} pixels)",
                    self.tile
                ),
            ));
        }
        if self.output_stride == 0 || !self.tile_multiple.is_multiple_of(self.output_stride) {
            return Err((
                "output_stride",
                "must be at least 1 and divide tile_multiple (every tile side must divide by it)"
                    .into(),
            ));
        }
        Ok(())
    }

    fn resolve(&mut self, path: &Path) -> Result<(), InferError> {
        let bad = |field, problem: &str| InferError::ManifestValue {
            path: path.to_path_buf(),
            field,
            problem: problem.to_string(),
        };
        let implied = self.output.map(|o| match o {
            OutputKind::Logits => Activation::Softmax,
            OutputKind::Probabilities => Activation::None,
        });
        let activation = match (self.activation, implied) {
            (None, None) => {
                return Err(bad(
                    "activation",
                    "missing: say \"softmax\" (C ≥ 2 channels of logits), \"sigmoid\" (1 channel, P(tumor)) or \"none\" (probabilities)",
                ))
            }
            (Some(a), Some(i)) if a != i => {
                return Err(bad(
                    "activation",
                    "contradicts \"output\": give one of the two",
                ))
            }
            (Some(a), _) | (None, Some(a)) => a,
        };
        self.activation = Some(activation);
        if activation == Activation::Sigmoid && self.classes.len() == 1 {
            self.classes.insert(0, "background".to_string());
        }
        if activation == Activation::Sigmoid && self.classes.len() != 2 {
            return Err(bad(
                "classes",
                "a sigmoid model has one class besides background: list [\"background\", \"tumor\"] or [\"tumor\"]",
            ));
        }
        if self.classes.len() < 2 || self.classes.len() > 255 {
            return Err(bad(
                "classes",
                "must list 2 to 255 class names, background first (a sigmoid model: its one class)",
            ));
        }
        self.check_colours(activation)
            .map_err(|problem| bad("colors", &problem))?;
        self.check_tile()
            .map_err(|(field, problem)| bad(field, &problem))?;
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(bad("std", "must be positive"));
        }
        if self.input_scale != 1.0 && self.input_scale != 255.0 {
            return Err(bad(
                "input_scale",
                "must be 1 (pixels in [0, 1]) or 255 ([0, 255])",
            ));
        }
        if self.mpp.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
            return Err(bad("mpp", "must be positive"));
        }
        if let Some(t) = self.threshold {
            check_threshold(t).map_err(|problem| bad("threshold", &problem))?;
            if self.classes.len() != 2 {
                return Err(bad(
                    "threshold",
                    "applies to binary models only (background and one class); this one has more classes",
                ));
            }
        }
        Ok(())
    }
}

/// `ensemble.json`: a folder that names other models (paths relative to
/// the folder) and their weights, used as one `--model`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnsembleFile {
    /// For the reader of the file (the report lists every member).
    #[serde(default, rename = "name")]
    _name: String,
    #[serde(default, rename = "description")]
    _description: String,
    members: Vec<EnsembleMember>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnsembleMember {
    model: PathBuf,
    #[serde(default = "one_f64")]
    weight: f64,
}

fn one_f64() -> f64 {
    1.0
}

/// The members of the ensemble `path` names — a folder with an
/// `ensemble.json` (`{"members": [{"model": "../unet", "weight": 0.6}, …]}`,
/// paths relative to the folder) — or `None` when `path` is not one.
pub fn ensemble_members(path: &Path) -> Result<Option<Vec<(PathBuf, f64)>>, InferError> {
    let file = path.join("ensemble.json");
    if !path.is_dir() || !file.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&file).map_err(|source| InferError::ManifestIo {
        path: file.clone(),
        source,
    })?;
    let ensemble: EnsembleFile =
        serde_json::from_str(&text).map_err(|source| InferError::ManifestSyntax {
            path: file.clone(),
            source,
        })?;
    let bad = |problem: String| InferError::ManifestValue {
        path: file.clone(),
        field: "members",
        problem,
    };
    if ensemble.members.is_empty() {
        return Err(bad("must name at least one model".into()));
    }
    let mut members = Vec::new();
    for m in ensemble.members {
        let model = path.join(&m.model);
        if model.join("ensemble.json").is_file() {
            return Err(bad(format!(
                "{} is itself an ensemble: list its models instead",
                m.model.display()
            )));
        }
        members.push((model, m.weight));
    }
    Ok(Some(members))
}

/// A decision threshold on P(tumor) must lie strictly between 0 and 1.
pub fn check_threshold(t: f64) -> Result<(), String> {
    if t.is_finite() && t > 0.0 && t < 1.0 {
        Ok(())
    } else {
        Err(format!("{t} must lie strictly between 0 and 1"))
    }
}

/// The model file and manifest that a model path names (see
/// [`crate::runtime::locate`], which also says which runtime runs it).
pub fn locate(path: &Path) -> Result<(PathBuf, PathBuf), InferError> {
    crate::runtime::locate(path).map(|(model, manifest, _)| (model, manifest))
}

/// The name of the runtime that runs the model a path names
/// ("torchscript", "aotinductor", "onnx"…), without loading it.
pub fn runtime_of(path: &Path) -> Result<&'static str, InferError> {
    crate::runtime::locate(path).map(|(_, _, runtime)| runtime.name())
}
