//! Which device runs the model, in which precision, and what the process can
//! tell about CUDA.

use std::fmt;
use std::str::FromStr;

use tch::Kind;

use crate::InferError;

/// Which device to run on: `auto` picks CUDA when it is available, an explicit `cuda`
/// request without CUDA is an error, never a silent fallback to the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA device 0 when there is one, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// `cuda` (device 0) or `cuda:N`.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = InferError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InferError::DeviceSyntax {
            given: s.to_string(),
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(bad),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// The libtorch device this choice means on this machine.
    pub fn resolve(self) -> Result<Device, InferError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(if cuda_device_count() > 0 {
                Device::Cuda(0)
            } else {
                Device::Cpu
            }),
            Self::Cuda(index) => {
                let count = cuda_device_count();
                if count == 0 {
                    let why = match load_cuda_support() {
                        Ok(_) => "libtorch has CUDA support but finds no GPU or driver (wsiseg doctor tells more)".to_string(),
                        Err(e) => format!("no CUDA support: {e}"),
                    };
                    return Err(InferError::CudaUnavailable {
                        requested: self.to_string(),
                        why,
                    });
                }
                if index >= count {
                    return Err(InferError::CudaIndex { index, count });
                }
                Ok(Device::Cuda(index))
            }
        }
    }
}

/// A device that runs the model: the CPU or one CUDA GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU (libtorch's intra-op threads).
    Cpu,
    /// CUDA GPU number N.
    Cuda(usize),
}

impl Device {
    /// Whether this is a CUDA GPU.
    pub fn is_cuda(self) -> bool {
        matches!(self, Self::Cuda(_))
    }

    /// libtorch's name for it.
    pub(crate) fn tch(self) -> tch::Device {
        match self {
            Self::Cpu => tch::Device::Cpu,
            Self::Cuda(n) => tch::Device::Cuda(n),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Number of CUDA devices libtorch can use.
pub fn cuda_device_count() -> usize {
    if load_cuda_support().is_err() {
        return 0;
    }
    if tch::Cuda::is_available() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    }
}

/// Whether libtorch's CUDA library is loaded in this process (see
/// [`load_cuda_support`]); without it libtorch never sees a GPU.
pub fn cuda_support_linked() -> bool {
    load_cuda_support().is_ok()
}

/// The folder libtorch was loaded from (`libtorch_cpu.so`'s), read from
/// `/proc/self/maps`: where `LD_LIBRARY_PATH` or the binary's RUNPATH found it.
pub fn libtorch_dir() -> Option<std::path::PathBuf> {
    loaded_library("libtorch_cpu.so").and_then(|p| p.parent().map(|d| d.to_path_buf()))
}

/// The version of the libtorch this process loaded, from beside its lib/
/// folder: a pip install has `torch/version.py`, the libtorch archive (and
/// wsiseg's bundle) `build-version`.
pub fn libtorch_version() -> Option<String> {
    let root = libtorch_dir()?.parent()?.to_path_buf();
    if let Ok(s) = std::fs::read_to_string(root.join("build-version")) {
        return Some(s.trim().to_string());
    }
    let py = std::fs::read_to_string(root.join("version.py")).ok()?;
    py.lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
}

/// The full path of a shared library mapped into this process, by file name.
pub fn loaded_library(name: &str) -> Option<std::path::PathBuf> {
    mapped_library(|n| n == name)
}

/// The first file mapped into this process (`/proc/self/maps`) whose file
/// name `matches`.
fn mapped_library(matches: impl Fn(&str) -> bool) -> Option<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            std::path::Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(&matches)
        })
        .map(std::path::PathBuf::from)
}

/// A loader error with the loader's own message (libloading's `Display`
/// alone says only "dlopen failed").
pub(crate) fn dl_error(e: &libloading::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => source.to_string(),
        None => e.to_string(),
    }
}

/// A CUDA version as NVIDIA encodes it (13000) in words ("13.0").
pub fn cuda_version_text(v: i64) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// A cuDNN version as `cudnnGetVersion` gives it (91900) in words ("9.19.0").
pub fn cudnn_version_text(v: i64) -> String {
    format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
}

/// The CUDA runtime and cuDNN versions of the libraries libtorch loaded,
/// asked of the libraries themselves (`cudaRuntimeGetVersion`,
/// `cudnnGetVersion`: neither needs a driver or GPU), as numbers in
/// NVIDIA's encoding (13000 is CUDA 13.0; 91000 is cuDNN 9.10.0).
pub fn cuda_library_versions() -> (Option<i64>, Option<i64>) {
    if load_cuda_support().is_err() {
        return (None, None);
    }
    let find = |prefix: &str| mapped_library(|name| name.starts_with(prefix));
    let cudart = find("libcudart.so").and_then(|p| {
        // SAFETY: the library is already loaded (libtorch_cuda needs it);
        // cudaRuntimeGetVersion(int*) is its documented signature.
        unsafe {
            let lib = libloading::Library::new(&p).ok()?;
            let f: libloading::Symbol<unsafe extern "C" fn(*mut i32) -> i32> =
                lib.get(b"cudaRuntimeGetVersion\0").ok()?;
            let mut v = 0i32;
            (f(&mut v) == 0).then_some(i64::from(v))
        }
    });
    let cudnn = find("libcudnn.so").and_then(|p| {
        // SAFETY: as above; size_t cudnnGetVersion(void).
        unsafe {
            let lib = libloading::Library::new(&p).ok()?;
            let f: libloading::Symbol<unsafe extern "C" fn() -> usize> =
                lib.get(b"cudnnGetVersion\0").ok()?;
            i64::try_from(f()).ok()
        }
    });
    (cudart, cudnn)
}

/// Loads libtorch's CUDA half, once: `libtorch_cuda.so` from the folder the
/// process's `libtorch_cpu.so` came from, with `RTLD_NOW | RTLD_GLOBAL`, so
/// that its static initialisers register CUDA with libtorch before anything
/// asks for a GPU (the way PyTorch itself loads it).
///
/// The binary is not linked against `libtorch_cuda.so`: one binary starts on
/// a CPU-only libtorch (the CPU bundle ships none of the CUDA libraries) and
/// uses CUDA where the libtorch beside it has it. Returns the loaded path, or
/// one line saying why CUDA support is absent (no such file; or the loader's
/// message, e.g. a missing `libcudnn.so.9`).
///
/// It must run before anything asks libtorch about CUDA (`has_cuda`,
/// `Cuda::is_available`, a CUDA tensor): libtorch looks its CUDA hooks up
/// once and keeps the CPU-only stub it found then. `wsiseg` calls it first
/// thing in `main`; [`cuda_device_count`] and [`crate::Segmenter::load`] call it too.
pub fn load_cuda_support() -> Result<&'static std::path::Path, &'static str> {
    static LOADED: std::sync::OnceLock<Result<std::path::PathBuf, String>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            if let Some(p) = loaded_library("libtorch_cuda.so") {
                return Ok(p);
            }
            // libtorch_cpu.so is mapped already (the binary needs it). Nothing
            // may ask libtorch about CUDA before this: it caches its first
            // answer (the CPU-only stub) for good.
            let dir = libtorch_dir().ok_or_else(|| "libtorch_cpu.so is not loaded".to_string())?;
            let path = dir.join("libtorch_cuda.so");
            if !path.exists() {
                return Err(format!(
                    "{} has no libtorch_cuda.so (a CPU-only libtorch)",
                    dir.display()
                ));
            }
            // SAFETY: libtorch_cuda.so belongs to the libtorch already loaded;
            // its initialisers only register CUDA kernels and hooks.
            unsafe { open_global(&path) }.map(|()| path)
        })
        .as_ref()
        .map(|p| p.as_path())
        .map_err(|e| e.as_str())
}

/// Loads the library at `path` for good, its symbols global (for libraries
/// loaded later that need them); the error names the file.
///
/// # Safety
/// The library's initialisers run: it must belong to the libtorch already
/// loaded (or be as harmless).
pub(crate) unsafe fn open_global(path: &std::path::Path) -> Result<(), String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: as the caller promises.
    match unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) } {
        Ok(lib) => {
            std::mem::forget(lib);
            Ok(())
        }
        Err(e) => Err(format!("cannot load {}: {}", path.display(), dl_error(&e))),
    }
}

/// Floating-point precision the model runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (CUDA).
    F16,
    /// bfloat16.
    BF16,
}

impl Precision {
    /// f16 on CUDA, f32 on the CPU.
    pub fn default_for(device: Device) -> Self {
        if device.is_cuda() {
            Self::F16
        } else {
            Self::F32
        }
    }

    /// libtorch's tensor kind for it.
    pub fn kind(self) -> Kind {
        match self {
            Self::F32 => Kind::Float,
            Self::F16 => Kind::Half,
            Self::BF16 => Kind::BFloat16,
        }
    }
}

impl FromStr for Precision {
    type Err = InferError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "f16" | "fp16" | "half" | "float16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            _ => Err(InferError::PrecisionSyntax {
                given: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
        })
    }
}

/// A one-line description of a device for logs: `cpu` or `cuda:0 (NVIDIA H200)`.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cuda(n) => match crate::cuda::gpu_name(n) {
            Some(name) => format!("cuda:{n} ({name})"),
            None => format!("cuda:{n}"),
        },
        Device::Cpu => "cpu".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_choices_parse() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("CPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!(
            "cuda".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        assert_eq!(
            "cuda:3".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(3)
        );
        for bad in ["cuda:", "cuda:x", "tpu", ""] {
            let err = bad.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(err.contains("use auto, cpu, cuda or cuda:N"), "{err}");
        }
    }

    /// The folder of the libtorch this process loaded (its libtorch_cpu.so).
    /// libtorch_cuda is loaded whenever the libtorch the process runs on has
    /// it (DESIGN.md: CUDA silently disappears otherwise); a CPU-only libtorch
    /// has no CUDA to offer, and says so.
    #[test]
    fn libtorch_cuda_is_loaded_when_libtorch_has_it() {
        let dir = libtorch_dir().expect("libtorch_cpu.so is loaded");
        if dir.join("libtorch_cuda.so").exists() {
            let path = load_cuda_support().expect("libtorch_cuda.so loads");
            assert_eq!(path, dir.join("libtorch_cuda.so"));
            assert!(loaded_library("libtorch_cuda.so").is_some());
            // With the CUDA half registered, libtorch reaches the CUDA
            // runtime: a CUDA tensor fails (on a machine without a GPU) for
            // want of a driver or device, not for want of the CUDA library.
            if cuda_device_count() == 0 {
                let err = tch::Tensor::f_zeros([1], (tch::Kind::Float, tch::Device::Cuda(0)))
                    .unwrap_err()
                    .to_string();
                assert!(!err.contains("without ATen_cuda"), "{err}");
            }
        } else {
            let why = load_cuda_support().unwrap_err();
            assert!(why.contains("no libtorch_cuda.so"), "{why}");
            assert_eq!(cuda_device_count(), 0, "no CUDA without libtorch_cuda");
        }
    }

    /// `auto` picks CUDA device 0 when there is a GPU, else the CPU; an
    /// explicit CUDA device that is not there is an error, never a fallback.
    #[test]
    fn auto_follows_the_machine_and_explicit_cuda_is_never_a_fallback() {
        let count = cuda_device_count();
        if count == 0 {
            assert_eq!(DeviceChoice::Auto.resolve().unwrap(), Device::Cpu);
            let err = DeviceChoice::Cuda(0).resolve().unwrap_err().to_string();
            assert!(err.starts_with("cuda:0: CUDA is not available"), "{err}");
        } else {
            assert_eq!(DeviceChoice::Auto.resolve().unwrap(), Device::Cuda(0));
            assert_eq!(
                DeviceChoice::Cuda(count - 1).resolve().unwrap(),
                Device::Cuda(count - 1)
            );
            let err = DeviceChoice::Cuda(count).resolve().unwrap_err().to_string();
            assert_eq!(
                err,
                format!("cuda:{count}: this machine has {count} CUDA device(s)")
            );
        }
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
    }

    #[test]
    fn precisions_parse_and_default_by_device() {
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::BF16);
        assert!("f8".parse::<Precision>().is_err());
        assert_eq!(Precision::default_for(Device::Cpu), Precision::F32);
        assert_eq!(Precision::default_for(Device::Cuda(0)), Precision::F16);
    }
}
