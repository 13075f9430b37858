use std::path::PathBuf;

/// Errors loading or running a model. Each message names the file or the device.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("{}: no such model (give a model folder with model.pt and manifest.json, or a .pt file with a .json manifest beside it)", path.display())]
    ModelNotFound { path: PathBuf },

    #[error("{}: model manifest not found (expected beside the TorchScript file)", path.display())]
    ManifestNotFound { path: PathBuf },

    #[error("{}: cannot read model manifest: {source}", path.display())]
    ManifestIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: invalid model manifest: {source}", path.display())]
    ManifestSyntax {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{}: invalid model manifest: {field} {problem}", path.display())]
    ManifestValue {
        path: PathBuf,
        field: &'static str,
        problem: String,
    },

    #[error("{}: not a TorchScript model libtorch can load: {}", path.display(), first_line(source))]
    ModelLoad {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },

    #[error("{}: the model does not fit its manifest: {problem}", path.display())]
    ModelMismatch { path: PathBuf, problem: String },

    #[error("{}: the model failed on a {shape:?} batch: {}", path.display(), first_line(source))]
    Forward {
        path: PathBuf,
        shape: Vec<i64>,
        #[source]
        source: tch::TchError,
    },

    #[error("invalid --device '{given}': use auto, cpu, cuda or cuda:N")]
    DeviceSyntax { given: String },

    #[error("--device {requested}: CUDA is not available ({why}); use --device cpu or auto")]
    CudaUnavailable { requested: String, why: String },

    #[error("--device cuda:{index}: this machine has {count} CUDA device(s)")]
    CudaIndex { index: usize, count: usize },

    #[error("invalid --precision '{given}': use f32, f16 or bf16")]
    PrecisionSyntax { given: String },
}

/// libtorch errors carry a C++ backtrace; one line is what a user needs.
fn first_line(e: &tch::TchError) -> String {
    let text = e.to_string();
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error");
    line.trim_start_matches("Internal torch error: ")
        .to_string()
}
