//! ONNX models (`model.onnx`: `torch.onnx.export`, tf2onnx, mmdeploy…), run
//! by ONNX Runtime through the `ort` crate, on its CPU execution provider, or
//! its CUDA one for `--device cuda` when the library loaded has it
//! (onnxruntime-gpu's does; the `onnxruntime` wheel setup.sh installs has
//! CPU providers only, and a CUDA device is then refused with a message).
//!
//! libonnxruntime is loaded at run time, not linked: from `WSISEG_ONNXRUNTIME`
//! (a path to the library), else `lib/` beside the binary (the offline
//! bundle), else the `.onnxruntime/` link `scripts/setup.sh` makes in the
//! checkout the binary was built from. A missing or too old library is an
//! error naming what was looked for, when an ONNX model is loaded — never
//! before, so TorchScript users need none.
//!
//! The model takes one float input, N×3×H×W with a dynamic batch; its
//! outputs become an [`Output::Dict`] by output name, on which the manifest's `output_element` and
//! the shared layer work as for TorchScript. Weights run in f32 only.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::value::{TensorRef, ValueType};
use tch::{Kind, Tensor};

use super::{Network, Output, Runtime};
use crate::{Device, InferError, Precision};

/// The ONNX runtime.
pub struct Onnx;

/// The ONNX Runtime this process loaded: its environment and the version
/// the library reports.
struct Loaded {
    env: ort::environment::Environment,
    path: PathBuf,
    version: Option<String>,
}

/// [`Loaded`], or why no library could be loaded: once per process (ort
/// allows one environment).
static ENVIRONMENT: OnceLock<Result<Loaded, String>> = OnceLock::new();

/// The library's file name in each folder looked in.
const LIBRARY: &str = "libonnxruntime.so";

/// Where libonnxruntime is looked for, in order (see the module).
fn library_candidates() -> Vec<PathBuf> {
    let mut all = Vec::new();
    if let Some(p) = std::env::var_os("WSISEG_ONNXRUNTIME") {
        all.push(PathBuf::from(p));
        return all;
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        all.push(dir.join("lib").join(LIBRARY));
        all.push(dir.join("../lib").join(LIBRARY));
    }
    all.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../.onnxruntime")
            .join(LIBRARY),
    );
    all
}

/// The loaded library, loading it on first use.
fn environment() -> Result<&'static Loaded, String> {
    ENVIRONMENT
        .get_or_init(|| {
            let candidates = library_candidates();
            let Some(path) = candidates.iter().find(|p| p.exists()) else {
                let looked: Vec<String> =
                    candidates.iter().map(|p| p.display().to_string()).collect();
                return Err(format!(
                    "ONNX Runtime (libonnxruntime) is not installed: looked for {} (run scripts/setup.sh, or set WSISEG_ONNXRUNTIME to the library's path)",
                    looked.join(", ")
                ));
            };
            let builder = ort::init_from(path)
                .map_err(|e| format!("ONNX Runtime at {}: {e}", path.display()))?;
            let env = builder
                .with_name("wsiseg")
                .build()
                .map_err(|e| format!("ONNX Runtime at {}: {e}", path.display()))?;
            Ok(Loaded {
                env,
                path: path.canonicalize().unwrap_or_else(|_| path.clone()),
                version: version(path),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The ONNX Runtime library this process uses (loading it on first use)
/// and its version, or why there is none (for doctor).
pub fn library() -> Result<(PathBuf, Option<String>), String> {
    environment().map(|l| (l.path.clone(), l.version.clone()))
}

/// The version (`1.31.1`) the library at `path` (loaded by ort) reports.
fn version(path: &Path) -> Option<String> {
    /// The start of ONNX Runtime's `OrtApiBase`: `GetApi`, `GetVersionString`.
    #[repr(C)]
    struct ApiBase {
        get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const std::ffi::c_char,
    }
    // SAFETY: the library is already loaded (ort opened it); OrtGetApiBase
    // returns a static table whose version string is a static C string.
    unsafe {
        let lib = libloading::Library::new(path).ok()?;
        let base: libloading::Symbol<unsafe extern "C" fn() -> *const ApiBase> =
            lib.get(b"OrtGetApiBase").ok()?;
        let base = base();
        if base.is_null() {
            return None;
        }
        let v = ((*base).get_version_string)();
        Some(std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

impl Runtime for Onnx {
    fn name(&self) -> &'static str {
        "onnx"
    }

    fn file_name(&self) -> &'static str {
        "model.onnx"
    }

    fn claims(&self, file: &Path) -> bool {
        file.extension().is_some_and(|e| e == "onnx")
    }

    fn load(
        &self,
        file: &Path,
        device: Device,
        precision: Precision,
    ) -> Result<Box<dyn Network>, InferError> {
        let refuse = |problem: String| InferError::RuntimeLoad {
            path: file.to_path_buf(),
            runtime: "ONNX",
            problem,
        };
        if precision != Precision::F32 {
            return Err(refuse(format!(
                "ONNX models run in f32 here, not {precision} (give --precision f32)"
            )));
        }
        let loaded = environment().map_err(refuse)?;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let mut builder = Session::builder(&loaded.env)
            .and_then(|b| Ok(b.with_intra_threads(threads)?))
            .map_err(|e| refuse(first_line(&e.to_string())))?;
        if let Device::Cuda(i) = device {
            // The CPU wheel (`onnxruntime`) has no CUDA execution provider;
            // onnxruntime-gpu's library has. Asked of the library loaded.
            if !<ort::ep::CUDA as ort::ep::ExecutionProvider>::is_available().unwrap_or(false) {
                return Err(refuse(format!(
                    "the ONNX Runtime at {} ({}) has no CUDA execution provider (it lists only CPU ones): give --device cpu, or set WSISEG_ONNXRUNTIME to onnxruntime-gpu's libonnxruntime.so",
                    loaded.path.display(),
                    loaded.version.as_deref().unwrap_or("version unknown")
                )));
            }
            let id = i32::try_from(i).map_err(|_| refuse(format!("no such GPU {i}")))?;
            let cuda = ort::ep::CUDA::default()
                .with_device_id(id)
                .build()
                .error_on_failure();
            builder = builder.with_execution_providers([cuda]).map_err(|e| {
                refuse(format!(
                    "its CUDA execution provider: {}",
                    first_line(&e.to_string())
                ))
            })?;
        }
        let session = builder
            .commit_from_file(file)
            .map_err(|e| refuse(first_line(&e.to_string())))?;
        let network = OnnxNetwork::new(session, device).map_err(refuse)?;
        Ok(Box::new(network))
    }

    fn precisions(&self, _file: &Path) -> Vec<Precision> {
        vec![Precision::F32]
    }

    fn libraries(&self) -> Vec<(&'static str, Option<String>)> {
        let version = environment().ok().and_then(|l| l.version.clone());
        vec![("onnxruntime", version)]
    }
}

/// The first line of ONNX Runtime's message (its protobuf errors run on).
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim().to_string()
}

/// A loaded ONNX session (run needs it exclusively).
struct OnnxNetwork {
    session: Mutex<Session>,
    outputs: Vec<String>,
    /// Where the model's tensors live (ONNX Runtime is given host memory and
    /// copies to its CUDA provider itself).
    device: Device,
}

impl OnnxNetwork {
    /// Checks the model takes what wsiseg gives: one float tensor of 4
    /// dimensions, 3 channels, any batch; float tensors out.
    fn new(session: Session, device: Device) -> Result<Self, String> {
        let inputs = session.inputs();
        if inputs.len() != 1 {
            let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
            return Err(format!(
                "it takes {} inputs ({}); wsiseg gives one, the N×3×H×W tile batch",
                inputs.len(),
                names.join(", ")
            ));
        }
        let input = &inputs[0];
        let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
            return Err(format!("its input {:?} is not a tensor", input.name()));
        };
        if *ty != ort::value::TensorElementType::Float32 {
            return Err(format!(
                "its input {:?} holds {ty:?}, not float32",
                input.name()
            ));
        }
        if shape.len() != 4 || !matches!(shape[1], -1 | 3) {
            return Err(format!(
                "its input {:?} has shape {:?}; wsiseg gives N×3×H×W",
                input.name(),
                &shape[..]
            ));
        }
        if shape[0] != -1 {
            return Err(format!(
                "its input {:?} has a fixed batch of {} (shape {:?}): export it with a dynamic batch dimension (torch.onnx.export(…, dynamic_axes={{\"{}\": {{0: \"batch\"}}}}))",
                input.name(),
                shape[0],
                &shape[..],
                input.name()
            ));
        }
        let outputs: Vec<String> = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        if outputs.is_empty() {
            return Err("it has no outputs".into());
        }
        Ok(Self {
            session: Mutex::new(session),
            outputs,
            device,
        })
    }
}

fn ort_error(e: impl std::fmt::Display) -> tch::TchError {
    tch::TchError::Torch(format!("ONNX Runtime: {}", first_line(&e.to_string())))
}

impl Network for OnnxNetwork {
    fn forward(&self, x: Tensor) -> Result<Output, tch::TchError> {
        let x = x.to_kind(Kind::Float).to(tch::Device::Cpu).contiguous();
        let shape: Vec<i64> = x.size();
        let n = x.numel();
        // SAFETY: `x` is a contiguous f32 CPU tensor of `n` elements, alive
        // (and not written) until the run below returns.
        let data = unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, n) };
        let input = TensorRef::from_array_view((shape.clone(), data)).map_err(ort_error)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(ort::inputs![input]).map_err(ort_error)?;
        let mut all = Vec::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let (dims, values) = outputs[name.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(ort_error)?;
            // One copy, into memory libtorch owns.
            let t = Tensor::from_slice(values)
                .view(&dims[..])
                .to(self.device.tch());
            all.push((Output::Str(name.clone()), Output::Tensor(t)));
        }
        // By name, so that `output_element` can name any output (a dict of
        // one stands for its value when the manifest names none).
        Ok(Output::Dict(all))
    }
}
