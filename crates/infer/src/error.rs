use std::path::PathBuf;

/// Errors loading or running a model. Each message names the file or the device.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The model path does not exist.
    #[error("{}: no such model (give a model folder with model.pt and manifest.json, or a .pt file with a .json manifest beside it)", path.display())]
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
    #[error("{}: the model failed on a {shape:?} batch: {}", path.display(), first_line(source))]
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
