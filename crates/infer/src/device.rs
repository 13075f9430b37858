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
                    let why = if cuda_support_linked() {
                        "libtorch has CUDA support but finds no GPU or driver"
                    } else {
                        "this wsiseg runs on a libtorch without CUDA support (libtorch_cuda is not loaded)"
                    };
                    return Err(InferError::CudaUnavailable {
                        requested: self.to_string(),
                        why: why.to_string(),
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
    if tch::Cuda::is_available() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    }
}

/// Whether libtorch's CUDA library is loaded in this process. It is when the
/// binary was linked with it kept (see crates/torch-link) against a CUDA
/// libtorch; without it libtorch never sees a GPU, even on a GPU server.
pub fn cuda_support_linked() -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .map(|maps| maps.contains("libtorch_cuda.so"))
        .unwrap_or(false)
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
    fn loaded_libtorch_dir() -> std::path::PathBuf {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let lib = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.ends_with("/libtorch_cpu.so"))
            .expect("libtorch_cpu.so is loaded");
        std::path::Path::new(lib).parent().unwrap().to_path_buf()
    }

    /// The build keeps libtorch_cuda in the link whenever the libtorch the
    /// process runs on has it (DESIGN.md: CUDA silently disappears
    /// otherwise); a CPU-only libtorch has no CUDA to offer.
    #[test]
    fn libtorch_cuda_is_linked_when_libtorch_has_it() {
        let dir = loaded_libtorch_dir();
        if dir.join("libtorch_cuda.so").exists() {
            assert!(
                cuda_support_linked(),
                "{} has libtorch_cuda.so but it is not loaded",
                dir.display()
            );
        } else {
            assert!(!cuda_support_linked());
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
