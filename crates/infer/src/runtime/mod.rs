//! Model runtimes: how a file of one model format is loaded onto a device
//! and run forward. Everything else a model does — normalization, the
//! output element, upsampling, activation, the decision, test-time
//! augmentation, ensembles and the NaN guard — is shared above this, on
//! libtorch tensors on the model's device (`crate::member`, `crate::model`),
//! so a runtime implements [`Runtime::load`] and [`Network::forward`] only.
//!
//! A new runtime is a module here and one line in [`RUNTIMES`].

use std::path::{Path, PathBuf};

use tch::Tensor;

use crate::{Device, InferError, Precision};

mod aoti;
mod linear;
mod onnx;
mod torchscript;

pub use aoti::{support as aotinductor_support, Aoti};
pub use linear::Linear;
pub use onnx::{library as onnx_runtime_library, Onnx};
pub use torchscript::TorchScript;

/// Every runtime, in the order a model folder is searched for their files.
static RUNTIMES: &[&dyn Runtime] = &[&TorchScript, &Aoti, &Onnx, &Linear];

/// One model format.
pub trait Runtime: Sync {
    /// Its name in reports and messages ("torchscript").
    fn name(&self) -> &'static str;

    /// The model file a model folder holds for it ("model.pt").
    fn file_name(&self) -> &'static str;

    /// Whether `file` is a model of this format (by its name).
    fn claims(&self, file: &Path) -> bool;

    /// Loads `file` onto `device`, its weights in `precision`.
    fn load(
        &self,
        file: &Path,
        device: Device,
        precision: Precision,
    ) -> Result<Box<dyn Network>, InferError>;

    /// The precisions it runs the model `file` in (default: all of f32,
    /// f16, bf16; an AOTInductor package only the one it was compiled in).
    fn precisions(&self, file: &Path) -> Vec<Precision> {
        let _ = file;
        vec![Precision::F32, Precision::F16, Precision::BF16]
    }

    /// The libraries it runs on and their versions (`None`: not loaded),
    /// for reports; keys are stable JSON names ("libtorch", "onnxruntime").
    /// libtorch, the CUDA runtime and cuDNN are listed for every model (the
    /// layer above the runtimes uses them).
    fn libraries(&self) -> Vec<(&'static str, Option<String>)>;
}

/// A loaded model: one forward pass at a time.
pub trait Network: Send {
    /// The forward pass on a normalized `N×3×H×W` batch on the model's
    /// device, in its precision; what the model returns, as it returns it.
    fn forward(&self, x: Tensor) -> Result<Output, tch::TchError>;
}

/// What a forward pass returned: a tensor, or a container holding the
/// segmentation among other things (TorchScript modules return tuples,
/// lists and dicts; the manifest's `output_element` picks one).
#[derive(Debug)]
pub enum Output {
    /// A tensor.
    Tensor(Tensor),
    /// A tuple.
    Tuple(Vec<Output>),
    /// A list of values.
    List(Vec<Output>),
    /// A list of tensors.
    TensorList(Vec<Tensor>),
    /// A dict: (key, value) pairs.
    Dict(Vec<(Output, Output)>),
    /// A string (dict keys are).
    Str(String),
    /// Nothing.
    None,
    /// Anything else (a number, a flag…).
    Other,
}

/// The model file, its manifest and its runtime for a model path as a user
/// gives it: a folder holding one runtime's model file (`model.pt`…) and
/// `manifest.json`, or a model file with a `.json` of the same stem (or
/// `manifest.json`) beside it. A file no runtime claims is tried as
/// TorchScript, which names no extension of its own.
pub fn locate(path: &Path) -> Result<(PathBuf, PathBuf, &'static dyn Runtime), InferError> {
    if path.is_dir() {
        let found = RUNTIMES
            .iter()
            .map(|r| (path.join(r.file_name()), *r))
            .find(|(file, _)| file.is_file());
        return match found {
            Some((file, runtime)) => Ok((file, path.join("manifest.json"), runtime)),
            None => Err(InferError::ModelNotFound {
                path: path.join(RUNTIMES[0].file_name()),
            }),
        };
    }
    if !path.is_file() {
        return Err(InferError::ModelNotFound {
            path: path.to_path_buf(),
        });
    }
    let runtime = RUNTIMES
        .iter()
        .copied()
        .find(|r| r.claims(path))
        .unwrap_or(RUNTIMES[0]);
    let same_stem = path.with_extension("json");
    let manifest = if same_stem.is_file() {
        same_stem
    } else {
        path.with_file_name("manifest.json")
    };
    Ok((path.to_path_buf(), manifest, runtime))
}

/// The names of every runtime, in search order.
pub fn runtime_names() -> Vec<&'static str> {
    RUNTIMES.iter().map(|r| r.name()).collect()
}
