//! Runs a segmentation model on batches of tiles, on libtorch tensors on
//! the CPU or a CUDA GPU.
//!
//! A model is a file of one runtime's format (TorchScript `model.pt`,
//! AOTInductor `model.pt2`, ONNX `model.onnx`; see
//! [`Runtime`]) plus a JSON [`Manifest`] (tile size, mpp, normalization,
//! classes). [`Segmenter::segment`] takes tiles as packed `N×H×W×3` bytes,
//! uploads them as bytes, normalizes on the device, runs the model and
//! returns one class index per pixel. Normalization, test-time
//! augmentation, ensembles, activation, the decision and the NaN guard are
//! the same for every runtime: a runtime only loads a file and runs it forward.
//!
//! ```
//! use wsiseg_infer::{DeviceChoice, Precision, Segmenter};
//!
//! let device = DeviceChoice::Cpu.resolve()?; // or Auto: CUDA when there is a GPU
//! let model = Segmenter::load("../../models/unet".as_ref(), device, Precision::default_for(device))?;
//! let t = model.manifest().tile;
//! let tiles = vec![255u8; 2 * (t * t * 3) as usize]; // two white tiles, N×H×W×3
//! let mut labels = vec![9u8; 2 * (t * t) as usize];
//! model.segment(&tiles, 2, t, &mut labels, None)?;
//! assert!(labels.iter().all(|&l| l == 0), "white glass is background");
//! # Ok::<(), wsiseg_infer::InferError>(())
//! ```

mod cuda;
mod decode;
mod device;
mod error;
mod manifest;
mod member;
mod model;
mod nvjpeg;
mod runtime;
mod tta;

pub use cuda::{driver_info, gpu_name, DriverInfo, GpuInfo};
pub use decode::{Assembly, DecodeFailure, HostDecode, Placement, Source, TileDecoder};
pub use device::{
    cuda_device_count, cuda_library_versions, cuda_support_linked, cuda_version_text,
    cudnn_version_text, describe, libtorch_dir, libtorch_version, load_cuda_support,
    loaded_library, Device, DeviceChoice, Precision,
};
pub use error::InferError;
pub use manifest::{
    check_threshold, ensemble_members, locate, runtime_of, Activation, ChannelOrder, Manifest,
    OutputElement, OutputKind, CLASS_COLOURS, MAX_TILE,
};
pub use model::{InFlight, ModelSet, Segmenter, Staging};
pub use nvjpeg::nvjpeg_library;
pub use runtime::{
    aotinductor_support, onnx_runtime_library, runtime_names, Aoti, Linear, Network, Onnx, Output,
    Runtime, TorchScript,
};
pub use tta::Tta;
