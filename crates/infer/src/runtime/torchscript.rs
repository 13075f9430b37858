//! TorchScript (`model.pt`, made by `torch.jit.trace` or `torch.jit.script`),
//! run by libtorch.

use std::path::Path;

use tch::{CModule, IValue, Tensor};

use super::{Network, Output, Runtime};
use crate::{Device, InferError, Precision};

/// The TorchScript runtime.
pub struct TorchScript;

impl Runtime for TorchScript {
    fn name(&self) -> &'static str {
        "torchscript"
    }

    fn file_name(&self) -> &'static str {
        "model.pt"
    }

    fn claims(&self, file: &Path) -> bool {
        file.extension().is_some_and(|e| e == "pt")
    }

    fn load(
        &self,
        file: &Path,
        device: Device,
        precision: Precision,
    ) -> Result<Box<dyn Network>, InferError> {
        let mut module = CModule::load_on_device(file, device.tch()).map_err(|source| {
            InferError::ModelLoad {
                path: file.to_path_buf(),
                source,
            }
        })?;
        module.to(device.tch(), precision.kind(), false);
        module.set_eval();
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(true);
        }
        Ok(Box::new(Module(module)))
    }

    fn libraries(&self) -> Vec<(&'static str, Option<String>)> {
        // libtorch itself, which the shared layer lists for every model.
        Vec::new()
    }
}

/// A loaded TorchScript module.
struct Module(CModule);

impl Network for Module {
    fn forward(&self, x: Tensor) -> Result<Output, tch::TchError> {
        let _no_grad = tch::no_grad_guard();
        Ok(output(self.0.forward_is(&[IValue::Tensor(x)])?))
    }
}

/// libtorch's value as the runtime-neutral [`Output`] (a tensor moves as it is).
fn output(v: IValue) -> Output {
    let all = |items: Vec<IValue>| items.into_iter().map(output).collect();
    match v {
        IValue::Tensor(t) => Output::Tensor(t),
        IValue::Tuple(items) => Output::Tuple(all(items)),
        IValue::GenericList(items) => Output::List(all(items)),
        IValue::TensorList(items) => Output::TensorList(items),
        IValue::GenericDict(pairs) => Output::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (output(k), output(v)))
                .collect(),
        ),
        IValue::String(s) => Output::Str(s),
        IValue::None => Output::None,
        _ => Output::Other,
    }
}
