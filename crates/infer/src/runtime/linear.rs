//! A per-pixel linear model in plain Rust (`model.linear`): each output
//! channel is `bias + w·(r, g, b)` of the normalized input. It needs no
//! model library, so the engine's own tests can run the whole pipeline with
//! a model whose answer they know (for example "tumor where the normalized
//! green channel is below a cut"), and it shows the least a runtime writes.
//!
//! ```json
//! {"weights": [[0, 0, 0], [0, -8, 0]], "bias": [0, -2]}
//! ```

use std::path::Path;

use serde::Deserialize;
use tch::{Kind, Tensor};

use super::{Network, Output, Runtime};
use crate::{Device, InferError, Precision};

/// The per-pixel linear runtime.
pub struct Linear;

/// The file: one row of three weights and one bias per output channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Weights {
    weights: Vec<[f32; 3]>,
    bias: Vec<f32>,
}

impl Runtime for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn file_name(&self) -> &'static str {
        "model.linear"
    }

    fn claims(&self, file: &Path) -> bool {
        file.extension().is_some_and(|e| e == "linear")
    }

    fn load(
        &self,
        file: &Path,
        _device: Device,
        _precision: Precision,
    ) -> Result<Box<dyn Network>, InferError> {
        let problem = |problem: String| InferError::RuntimeLoad {
            path: file.to_path_buf(),
            runtime: self.name(),
            problem,
        };
        let text = std::fs::read_to_string(file).map_err(|e| problem(e.to_string()))?;
        let w: Weights = serde_json::from_str(&text).map_err(|e| problem(e.to_string()))?;
        if w.weights.is_empty() || w.weights.len() != w.bias.len() {
            return Err(problem(format!(
                "{} rows of weights and {} biases: give one of each per output channel",
                w.weights.len(),
                w.bias.len()
            )));
        }
        Ok(Box::new(w))
    }

    fn libraries(&self) -> Vec<(&'static str, Option<String>)> {
        Vec::new()
    }
}

impl Network for Weights {
    fn forward(&self, x: Tensor) -> Result<Output, tch::TchError> {
        let size = x.size();
        let [n, 3, h, w] = size[..] else {
            return Err(tch::TchError::Shape(format!(
                "a per-pixel linear model takes N×3×H×W, not {size:?}"
            )));
        };
        let plane = (h * w) as usize;
        let input = x
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let len = n as usize * 3 * plane;
        let mut pixels = vec![0f32; len];
        input.copy_data(&mut pixels, len);
        let c = self.weights.len();
        let mut out = vec![0f32; n as usize * c * plane];
        for (tile, planes) in pixels.chunks_exact(3 * plane).enumerate() {
            let (r, rest) = planes.split_at(plane);
            let (g, b) = rest.split_at(plane);
            for (k, (wk, bias)) in self.weights.iter().zip(&self.bias).enumerate() {
                let start = (tile * c + k) * plane;
                for (i, o) in out[start..start + plane].iter_mut().enumerate() {
                    *o = bias + wk[0] * r[i] + wk[1] * g[i] + wk[2] * b[i];
                }
            }
        }
        let y = Tensor::from_slice(&out)
            .view([n, c as i64, h, w])
            .to_device(x.device())
            .to_kind(x.kind());
        Ok(Output::Tensor(y))
    }
}
