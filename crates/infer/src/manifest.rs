//! The JSON manifest that travels with every TorchScript model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::InferError;

/// Whether the model's output channels are logits (softmax is applied) or probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Unnormalized scores; the mask is their arg-max.
    Logits,
    /// Probabilities per class.
    Probabilities,
}

/// What a model expects and returns. Input: `N×3×tile×tile` float RGB in
/// `[0, 1]`, normalized by `(x − mean) / std`. Output: `N×classes×tile×tile`.
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
    /// Per-channel mean subtracted from RGB in [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
    /// Class names; index 0 is background, the mask stores the class index.
    pub classes: Vec<String>,
    /// What the output channels hold.
    pub output: OutputKind,
    /// Anything else the exporter recorded (training seeds, versions…).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn one() -> u32 {
    1
}

impl Manifest {
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
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|source| InferError::ManifestSyntax {
                path: path.to_path_buf(),
                source,
            })?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    fn validate(&self, path: &Path) -> Result<(), InferError> {
        let bad = |field, problem: &str| InferError::ManifestValue {
            path: path.to_path_buf(),
            field,
            problem: problem.to_string(),
        };
        if self.classes.len() < 2 || self.classes.len() > 255 {
            return Err(bad(
                "classes",
                "must list 2 to 255 class names, background first",
            ));
        }
        if self.tile_multiple == 0 {
            return Err(bad("tile_multiple", "must be at least 1"));
        }
        if self.tile == 0 || !self.tile.is_multiple_of(self.tile_multiple) {
            return Err(bad("tile", "must be a positive multiple of tile_multiple"));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(bad("std", "must be positive"));
        }
        if self.mpp.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
            return Err(bad("mpp", "must be positive"));
        }
        Ok(())
    }
}

/// The TorchScript file and manifest that `--model PATH` names: a folder
/// holding `model.pt` and `manifest.json`, or a `.pt` file with a `.json` of
/// the same stem (or `manifest.json`) beside it.
pub fn locate(path: &Path) -> Result<(PathBuf, PathBuf), InferError> {
    if path.is_dir() {
        let model = path.join("model.pt");
        if !model.is_file() {
            return Err(InferError::ModelNotFound { path: model });
        }
        return Ok((model, path.join("manifest.json")));
    }
    if !path.is_file() {
        return Err(InferError::ModelNotFound {
            path: path.to_path_buf(),
        });
    }
    let same_stem = path.with_extension("json");
    let manifest = if same_stem.is_file() {
        same_stem
    } else {
        path.with_file_name("manifest.json")
    };
    Ok((path.to_path_buf(), manifest))
}
