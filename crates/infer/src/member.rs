//! One model with its manifest on a device, whatever its runtime: input
//! normalization, the forward pass (the runtime's), the segmentation
//! element of its output brought to full size, and its class probabilities.

use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use crate::manifest::{Activation, ChannelOrder, OutputElement};
use crate::runtime::{self, Network, Output, Runtime};
use crate::{Device, InferError, Manifest, Precision};

/// A model of a [`crate::Segmenter`] (alone, or one member of an ensemble).
pub(crate) struct Member {
    network: Box<dyn Network>,
    pub(crate) runtime: &'static dyn Runtime,
    pub(crate) manifest: Manifest,
    pub(crate) path: PathBuf,
    /// Its share of an ensemble's average (1 alone).
    pub(crate) weight: f64,
    device: Device,
    precision: Precision,
    mean: Tensor,
    inv_std: Tensor,
}

/// A model file found and its manifest read, not yet loaded: what can be
/// known of a model at once, before the (slow) load onto a device.
#[derive(Clone)]
pub(crate) struct Spec {
    pub(crate) path: PathBuf,
    pub(crate) manifest: Manifest,
    pub(crate) runtime: &'static dyn Runtime,
    pub(crate) weight: f64,
}

impl Spec {
    /// The model `path` names (see [`runtime::locate`]) and its manifest.
    pub(crate) fn read(path: &Path, weight: f64) -> Result<Self, InferError> {
        let (model_path, manifest_path, runtime) = runtime::locate(path)?;
        Ok(Self {
            manifest: Manifest::read(&manifest_path)?,
            path: model_path,
            runtime,
            weight,
        })
    }
}

impl Member {
    /// Loads the model of `spec` onto `device` and checks it against its
    /// manifest with one dry run.
    pub(crate) fn load(
        spec: &Spec,
        device: Device,
        precision: Precision,
    ) -> Result<Self, InferError> {
        let Spec {
            path: model_path,
            manifest,
            runtime,
            weight,
        } = spec.clone();
        let network = runtime.load(&model_path, device, precision)?;
        let per_channel = |v: [f32; 3]| {
            Tensor::from_slice(&v)
                .view([1, 3, 1, 1])
                .to_device(device.tch())
                .to_kind(precision.kind())
        };
        let member = Self {
            mean: per_channel(manifest.mean),
            inv_std: per_channel(manifest.std.map(|s| 1.0 / s)),
            network,
            runtime,
            manifest,
            path: model_path,
            weight,
            device,
            precision,
        };
        member.check_output_shape()?;
        Ok(member)
    }

    /// One tile of white through the model: the output (the element the
    /// manifest names) must be `1×C×(tile/output_stride)²`, and finite.
    fn check_output_shape(&self) -> Result<(), InferError> {
        let t = self.manifest.tile as usize;
        let value = self.white_tile_value().map_err(|e| match e {
            InferError::Forward { path, source, .. } => InferError::ModelMismatch {
                path,
                problem: format!(
                    "it fails on a 1×3×{t}×{t} input: {}",
                    crate::error::first_line(&source)
                ),
            },
            other => other,
        })?;
        let container = match &value {
            Output::Tensor(_) => None,
            other => Some(describe(other)),
        };
        let out = self.segmentation(value)?;
        let m = &self.manifest;
        let stride = m.output_stride as usize;
        let channels = m.output_channels() as i64;
        let side = (t / stride) as i64;
        let expected = [1, channels, side, side];
        let size = out.size();
        if size != expected {
            let implies = match m.activation() {
                Activation::Sigmoid => "1 channel (sigmoid)".to_string(),
                _ => format!("{} classes", m.classes.len()),
            };
            let mut problem = format!(
                "output shape {size:?} for a 1×3×{t}×{t} input, the manifest implies {expected:?} ({implies}"
            );
            if stride > 1 {
                problem += &format!(", output_stride {stride}");
            }
            problem += ")";
            if let [1, c, h, w] = size[..] {
                if h == w && h > 0 && (t as i64) % h == 0 && h != side {
                    problem += &format!(
                        "; the output is 1/{} of the input's side: set \"output_stride\": {}",
                        t as i64 / h,
                        t as i64 / h
                    );
                }
                if c == 1 && m.activation() != Activation::Sigmoid {
                    problem += "; one channel: a sigmoid model? set \"activation\": \"sigmoid\"";
                }
            }
            if let Some(container) = container {
                let element = m
                    .output_element
                    .as_ref()
                    .map_or("the default element".to_string(), |e| {
                        format!("element {e}")
                    });
                problem += &format!(
                    "; that is {element} of what forward returned, {container}: set \"output_element\" to the segmentation's position or key"
                );
            }
            return Err(InferError::ModelMismatch {
                path: self.path.clone(),
                problem,
            });
        }
        if !bool::try_from(out.isfinite().all()).unwrap_or(false) {
            return Err(InferError::NonFinite {
                path: self.path.clone(),
                precision: self.precision,
                tile: None,
            });
        }
        Ok(())
    }

    /// What the module returns for one white tile, in words ("a tensor [1,
    /// 2, 256, 256]", "a dict with keys …"), and the shape of the
    /// segmentation in it before any upsampling (as the load-time check saw).
    pub(crate) fn output_summary(&self) -> Result<(String, Vec<i64>), InferError> {
        let value = self.white_tile_value()?;
        let described = describe(&value);
        Ok((described, self.segmentation(value)?.size()))
    }

    /// What the module returns for one tile of white (the manifest's tile).
    fn white_tile_value(&self) -> Result<Output, InferError> {
        let t = self.manifest.tile as usize;
        let x = Tensor::from_slice(&vec![255u8; t * t * 3])
            .view([1, t as i64, t as i64, 3])
            .to_device(self.device.tch());
        let (x, shape) = self.normalize(x);
        self.forward_value(x, shape)
    }

    /// The segmentation element of what the module returned (see [`select`]).
    fn segmentation(&self, value: Output) -> Result<Tensor, InferError> {
        select(value, self.manifest.output_element.as_ref()).map_err(|problem| {
            InferError::ModelMismatch {
                path: self.path.clone(),
                problem,
            }
        })
    }

    /// The model on `n×tile×tile×3` bytes already on the device: normalized
    /// there (bytes travel, 4× less than f32), in the model's precision,
    /// channel order and input scale; returns the segmentation output as
    /// the model gives it (the manifest's element, not yet upsampled).
    /// Permuting NHWC to NCHW gives exactly the channels-last layout.
    pub(crate) fn raw_output(&self, x: Tensor) -> Result<Tensor, InferError> {
        let (x, shape) = self.normalize(x);
        self.run_module(x, shape)
    }

    /// NHWC bytes → the model's NCHW input (and its shape, for errors).
    pub(crate) fn normalize(&self, x: Tensor) -> (Tensor, Vec<i64>) {
        let _no_grad = tch::no_grad_guard();
        let shape = {
            let s = x.size();
            vec![s[0], s[3], s[1], s[2]]
        };
        let mut x = x.permute([0, 3, 1, 2]);
        if self.manifest.channel_order == ChannelOrder::Bgr {
            x = x.flip([1]);
        }
        // One new tensor per batch (the conversion); the rest in place.
        let mut x = x.to_kind(self.precision.kind());
        if self.manifest.input_scale == 1.0 {
            let _ = x.g_div_scalar_(255.0);
        }
        let _ = x.g_sub_(&self.mean).g_mul_(&self.inv_std);
        (x, shape)
    }

    /// The runtime's forward pass, its output as the model returns it.
    fn forward_value(&self, x: Tensor, shape: Vec<i64>) -> Result<Output, InferError> {
        let _no_grad = tch::no_grad_guard();
        self.network
            .forward(x)
            .map_err(|source| InferError::Forward {
                path: self.path.clone(),
                shape,
                source,
            })
    }

    /// The module's forward on a normalized batch, and the segmentation
    /// element of what it returns.
    pub(crate) fn run_module(&self, x: Tensor, shape: Vec<i64>) -> Result<Tensor, InferError> {
        let out = self.forward_value(x, shape)?;
        self.segmentation(out)
    }

    /// The raw output brought to the input's side (bilinear on the logits,
    /// as the models' own heads do), when the manifest says it is smaller.
    pub(crate) fn full_size(&self, out: Tensor) -> Tensor {
        let s = i64::from(self.manifest.output_stride);
        if s == 1 {
            return out;
        }
        let size = out.size();
        out.upsample_bilinear2d([size[2] * s, size[3] * s], false, None, None)
    }

    /// Class probabilities (`n×classes×h×w`, f32) from the full-size
    /// output: softmax, or a sigmoid channel as [1 − P, P], or as given.
    pub(crate) fn probabilities(&self, out: &Tensor) -> Tensor {
        match self.manifest.activation() {
            Activation::Softmax => out.to_kind(Kind::Float).softmax(1, Kind::Float),
            Activation::Sigmoid => {
                let p = out.to_kind(Kind::Float).sigmoid();
                Tensor::cat(&[p.ones_like() - &p, p], 1)
            }
            Activation::None => out.to_kind(Kind::Float),
        }
    }
}

/// The segmentation tensor in a model's output: `element` of a tuple, list
/// or dict, or by default the tensor itself, a tuple's or list's first
/// element, a dict's `"logits"` or `"out"`. The error says what the output
/// holds and what to write in the manifest.
fn select(out: Output, element: Option<&OutputElement>) -> Result<Tensor, String> {
    // The common case first: no description is made for every batch.
    let out = match (out, element) {
        (Output::Tensor(t), None) => return Ok(t),
        (other, _) => other,
    };
    let described = describe(&out);
    let found = match (out, element) {
        (Output::Tuple(items) | Output::List(items), e) => {
            let i = match e {
                None => 0,
                Some(OutputElement::Index(i)) => *i,
                Some(OutputElement::Key(k)) => {
                    return Err(format!(
                        "forward returned {described}: output_element {k:?} names a dict key; give a position (0, 1, …)"
                    ))
                }
            };
            items.into_iter().nth(i)
        }
        (Output::TensorList(items), e) => match e {
            None => items.into_iter().next().map(Output::Tensor),
            Some(OutputElement::Index(i)) => items.into_iter().nth(*i).map(Output::Tensor),
            Some(OutputElement::Key(_)) => None,
        },
        // A dict of one value (an ONNX model's one output) is that value.
        (Output::Dict(mut pairs), None) if pairs.len() == 1 => pairs.pop().map(|(_, v)| v),
        // ONNX outputs are named and ordered: a position picks one too.
        (Output::Dict(pairs), Some(OutputElement::Index(i))) => {
            pairs.into_iter().nth(*i).map(|(_, v)| v)
        }
        (Output::Dict(pairs), e) => {
            let wanted: Vec<&str> = match e {
                Some(OutputElement::Key(k)) => vec![k.as_str()],
                _ => vec!["logits", "out"],
            };
            pairs.into_iter().find_map(|(k, v)| match k {
                Output::Str(k) if wanted.contains(&k.as_str()) => Some(v),
                _ => None,
            })
        }
        _ => None,
    };
    match found {
        Some(Output::Tensor(t)) => Ok(t),
        _ => Err(match element {
            Some(e) => format!(
                "forward returned {described}; output_element {e} is not a tensor in it"
            ),
            None => format!(
                "forward returned {described}, not a tensor: set \"output_element\" in the manifest (a position or a dict key)"
            ),
        }),
    }
}

/// A model output's structure in words: "a tensor [1, 2, 64, 64]", "a tuple
/// of (a tensor [1, 2, 64, 64], a tensor [1, 2, 16, 16])", "a dict with keys
/// \"logits\", \"aux\"".
fn describe(v: &Output) -> String {
    let list = |items: &[Output]| items.iter().map(describe).collect::<Vec<_>>().join(", ");
    match v {
        Output::Tensor(t) => format!("a tensor {:?}", t.size()),
        Output::Tuple(items) => format!("a tuple of ({})", list(items)),
        Output::List(items) => format!("a list of ({})", list(items)),
        Output::TensorList(items) => format!(
            "a list of {} tensors ({})",
            items.len(),
            items
                .iter()
                .map(|t| format!("{:?}", t.size()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Output::Dict(pairs) => format!(
            "a dict with keys {}",
            pairs
                .iter()
                .map(|(k, _)| match k {
                    Output::Str(k) => format!("{k:?}"),
                    other => describe(other),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Output::None => "None".to_string(),
        _ => "a value that is not a tensor".to_string(),
    }
}
