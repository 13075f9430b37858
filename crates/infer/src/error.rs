use std::path::PathBuf;

/// Errors loading or running a model. Each message names the file or the device.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The model path does not exist.
    #[error("{}: no such model (give a model folder with model.pt, model.pt2 or model.onnx and manifest.json, or such a file with a .json manifest beside it)", path.display())]
    ModelNotFound {
        /// The path given.
        path: PathBuf,
    },

    /// The TorchScript file has no manifest beside it.
    #[error("{}: model manifest not found (expected beside the TorchScript file)", path.display())]
    ManifestNotFound {
        /// Where the manifest was looked for.
        path: PathBuf,
    },

    /// The manifest cannot be read.
    #[error("{}: cannot read model manifest: {source}", path.display())]
    ManifestIo {
        /// The manifest.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },

    /// The manifest is not valid JSON of the expected shape.
    #[error("{}: invalid model manifest: {source}", path.display())]
    ManifestSyntax {
        /// The manifest.
        path: PathBuf,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },

    /// A manifest field has an impossible value.
    #[error("{}: invalid model manifest: {field} {problem}", path.display())]
    ManifestValue {
        /// The manifest.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong with its value.
        problem: String,
    },

    /// libtorch cannot load the file.
    #[error("{}: not a TorchScript model libtorch can load: {}", path.display(), first_line(source))]
    ModelLoad {
        /// The TorchScript file.
        path: PathBuf,
        /// What libtorch said.
        #[source]
        source: tch::TchError,
    },

    /// A runtime other than libtorch cannot load the file.
    #[error("{}: cannot load this {runtime} model: {problem}", path.display())]
    RuntimeLoad {
        /// The model file.
        path: PathBuf,
        /// The runtime's name.
        runtime: &'static str,
        /// What is wrong.
        problem: String,
    },

    /// The model's output does not match what its manifest says.
    #[error("{}: the model does not fit its manifest: {problem}", path.display())]
    ModelMismatch {
        /// The TorchScript file.
        path: PathBuf,
        /// What does not match.
        problem: String,
    },

    /// A decision threshold that cannot apply (out of range, or the model is
    /// not binary).
    #[error("{}: threshold {problem}", path.display())]
    Threshold {
        /// The TorchScript file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },

    /// A model that cannot join an ensemble.
    #[error("{}: {problem}", path.display())]
    Ensemble {
        /// The model (its folder or file as given, or its TorchScript file).
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },

    /// A `--tta` value that is not one of none, flips, dihedral.
    #[error("'{given}' is not a test-time augmentation: use none, flips or dihedral")]
    TtaSyntax {
        /// What was given.
        given: String,
    },

    /// The model's forward pass failed.
    #[error("{}: the model failed on a {shape:?} batch: {}", path.display(), forward_failure(source, shape))]
    Forward {
        /// The TorchScript file.
        path: PathBuf,
        /// The input batch's shape.
        shape: Vec<i64>,
        /// What libtorch said.
        #[source]
        source: tch::TchError,
    },

    /// The model's output holds NaN or Inf (a common overflow in f16).
    #[error("{}: the model's output is NaN or Inf in {precision} {}", path.display(), match tile {
        Some(i) => format!("(tile {i} of its batch)"),
        None => "on a white test tile".to_string(),
    })]
    NonFinite {
        /// The TorchScript file.
        path: PathBuf,
        /// The precision it ran in.
        precision: crate::Precision,
        /// Which tile of the batch (`None`: the load-time dry run).
        tile: Option<usize>,
    },

    /// The device's JPEG decoder failed on a batch of stored tiles.
    #[error("the GPU's JPEG decoder failed: {detail}")]
    Decode {
        /// What it said.
        detail: String,
    },

    /// A device name that is not one.
    #[error("'{given}' is not a device: use auto, cpu, cuda or cuda:N")]
    DeviceSyntax {
        /// The name given.
        given: String,
    },

    /// A CUDA device was asked for on a machine or build without CUDA.
    #[error("{requested}: CUDA is not available ({why})")]
    CudaUnavailable {
        /// The device asked for.
        requested: String,
        /// Why CUDA is missing.
        why: String,
    },

    /// A CUDA device number beyond the machine's GPUs.
    #[error("cuda:{index}: this machine has {count} CUDA device(s)")]
    CudaIndex {
        /// The device number asked for.
        index: usize,
        /// The machine's CUDA devices.
        count: usize,
    },

    /// A precision name that is not one.
    #[error("'{given}' is not a precision: use f32, f16 or bf16")]
    PrecisionSyntax {
        /// The name given.
        given: String,
    },
}

impl InferError {
    /// For a forward pass that ran out of device (or host) memory: the
    /// batch to try instead (half the one that failed).
    pub fn smaller_batch(&self) -> Option<i64> {
        match self {
            Self::Forward { source, shape, .. } if out_of_memory(source) => {
                Some((shape.first().copied().unwrap_or(0) / 2).max(1))
            }
            _ => None,
        }
    }
}

fn out_of_memory(e: &tch::TchError) -> bool {
    let lower = first_line(e).to_ascii_lowercase();
    lower.contains("out of memory") || lower.contains("can't allocate memory")
}

/// What libtorch said of a failed forward pass, in one line; when the
/// device ran out of memory, what to do about it.
fn forward_failure(e: &tch::TchError, shape: &[i64]) -> String {
    let line = first_line(e);
    if out_of_memory(e) {
        let tiles = shape.first().copied().unwrap_or(0);
        let smaller = (tiles / 2).max(1);
        format!("{line} (a batch of {tiles} tiles does not fit: try a batch of {smaller})")
    } else {
        line
    }
}

/// libtorch errors carry a C++ backtrace; one line is what a user needs.
pub(crate) fn first_line(e: &tch::TchError) -> String {
    let text = e.to_string();
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error");
    line.trim_start_matches("Internal torch error: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(message: &str) -> String {
        InferError::Forward {
            path: PathBuf::from("m/model.pt"),
            shape: vec![32, 3, 512, 512],
            source: tch::TchError::Torch(message.to_string()),
        }
        .to_string()
    }

    /// Out of device (or host) memory: the message says which batch to try.
    #[test]
    fn out_of_memory_names_a_smaller_batch() {
        let cuda = forward(
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 15.77 GiB\n\
             Exception raised from malloc at c10/cuda/CUDACachingAllocator.cpp",
        );
        assert_eq!(
            cuda,
            "m/model.pt: the model failed on a [32, 3, 512, 512] batch: CUDA out of memory. \
             Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 15.77 GiB \
             (a batch of 32 tiles does not fit: try a batch of 16)"
        );
        let cpu = forward("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 103079215104 bytes.");
        assert!(
            cpu.ends_with("(a batch of 32 tiles does not fit: try a batch of 16)"),
            "{cpu}"
        );
        // Other failures are told as libtorch told them, one line.
        let other = forward("Expected 4-dimensional input\nException raised from …");
        assert_eq!(
            other,
            "m/model.pt: the model failed on a [32, 3, 512, 512] batch: Expected 4-dimensional input"
        );
    }
}
