//! AOTInductor packages (`model.pt2`: `torch.export.export` then
//! `torch._inductor.aoti_compile_and_package`), run by libtorch's
//! `AOTIModelPackageLoader` through a small C++ shim (`csrc/aoti.cpp`,
//! compiled by build.rs against libtorch's headers). Its tensors are
//! libtorch tensors on the model's device, so everything above the forward
//! pass works as for TorchScript.
//!
//! A package holds native code compiled for one device (CPU code for one
//! instruction set, or CUDA kernels) and weights in one precision. Its
//! metadata (read from the archive before anything is loaded) says which:
//! a package for another device, for instructions this CPU lacks, or in
//! another precision is refused with a message — loading it would fail deep
//! in libtorch, or crash on an illegal instruction.

use std::collections::HashMap;
use std::path::Path;

use tch::Tensor;

use super::{Network, Output, Runtime};
use crate::{Device, InferError, Precision};

/// The AOTInductor runtime.
pub struct Aoti;

/// The most tensors a package may return.
#[cfg(wsiseg_aoti)]
const MAX_OUTPUTS: usize = 64;

/// The metadata of the package at `file`: AOTInductor's own keys
/// (`AOTI_DEVICE_KEY`…) and those the exporter adds (`wsiseg_precision`…).
/// An error says why the file is no package.
pub(crate) fn metadata(file: &Path) -> Result<HashMap<String, String>, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("cannot open it: {e}"))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| {
        format!(
            "it is not a complete .pt2 package (a zip archive): {e} (truncated or not a package?)"
        )
    })?;
    let name = zip
        .file_names()
        .find(|n| n.contains("aotinductor/model/") && n.ends_with("_metadata.json"))
        .map(str::to_string)
        .ok_or("it holds no AOTInductor model (no aotinductor/model/…_metadata.json): is it a torch.export program rather than an AOTInductor package?")?;
    let mut entry = zip
        .by_name(&name)
        .map_err(|e| format!("cannot read {name} in it: {e}"))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text)
        .map_err(|e| format!("cannot read {name} in it: {e} (truncated?)"))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("its {name} is not JSON: {e}"))?;
    let Some(map) = value.as_object() else {
        return Err(format!("its {name} is not a JSON object"));
    };
    Ok(map
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            (k.clone(), v)
        })
        .collect())
}

/// The precision a package's weights are in: the exporter's
/// `wsiseg_precision`, else f32.
fn package_precision(meta: &HashMap<String, String>) -> Result<Precision, String> {
    match meta.get("wsiseg_precision").map(String::as_str) {
        None | Some("f32") => Ok(Precision::F32),
        Some("f16") => Ok(Precision::F16),
        Some("bf16") => Ok(Precision::BF16),
        Some(other) => Err(format!("its metadata names an unknown precision {other:?}")),
    }
}

/// Whether a package compiled for `key` (its `AOTI_DEVICE_KEY`) runs on
/// `device`; the message says what to do instead.
pub(crate) fn check_device(key: Option<&str>, device: Device) -> Result<(), String> {
    match (key.unwrap_or("cpu"), device) {
        ("cpu", Device::Cpu) | ("cuda", Device::Cuda(_)) => Ok(()),
        ("cuda", Device::Cpu) => Err(
            "it was compiled for CUDA and cannot run on the CPU: give --device cuda on a GPU server, or export it on this machine (scripts/export_model.py … --format pt2)".into(),
        ),
        ("cpu", Device::Cuda(_)) => Err(format!(
            "it was compiled for the CPU and cannot run on {device}: give --device cpu, or export it on the GPU server (scripts/export_model.py … --format pt2 --half)"
        )),
        (other, _) => Err(format!(
            "it was compiled for device {other:?}, which wsiseg does not run"
        )),
    }
}

/// Whether this CPU has the instructions a CPU package was compiled for
/// (its `AOTI_CPU_ISA`: "AVX512", "AVX2"…); `flags` are /proc/cpuinfo's.
pub(crate) fn check_isa(meta: &HashMap<String, String>, flags: &str) -> Result<(), String> {
    let Some(isa) = meta.get("AOTI_CPU_ISA") else {
        return Ok(());
    };
    let wanted = isa.to_ascii_lowercase();
    let needs: &[&str] = if wanted.contains("avx512") {
        &["avx512f"]
    } else if wanted.contains("avx2") {
        &["avx2"]
    } else {
        &[]
    };
    let have: Vec<&str> = flags.split_whitespace().collect();
    match needs.iter().find(|f| !have.contains(f)) {
        Some(missing) => Err(format!(
            "it was compiled for {isa} instructions, which this CPU lacks ({missing}): export it on this machine"
        )),
        None => Ok(()),
    }
}

/// The flags line of /proc/cpuinfo (empty when unreadable).
fn cpu_flags() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("flags"))
                .map(str::to_string)
        })
        .unwrap_or_default()
}

impl Runtime for Aoti {
    fn name(&self) -> &'static str {
        "aotinductor"
    }

    fn file_name(&self) -> &'static str {
        "model.pt2"
    }

    fn claims(&self, file: &Path) -> bool {
        file.extension().is_some_and(|e| e == "pt2")
    }

    fn load(
        &self,
        file: &Path,
        device: Device,
        precision: Precision,
    ) -> Result<Box<dyn Network>, InferError> {
        let refuse = |problem: String| InferError::RuntimeLoad {
            path: file.to_path_buf(),
            runtime: "AOTInductor",
            problem,
        };
        let meta = metadata(file).map_err(refuse)?;
        check_device(meta.get("AOTI_DEVICE_KEY").map(String::as_str), device).map_err(refuse)?;
        if let Some(machine) = meta.get("AOTI_MACHINE") {
            if machine != std::env::consts::ARCH {
                return Err(refuse(format!(
                    "it was compiled for {machine} machines, this is {}",
                    std::env::consts::ARCH
                )));
            }
        }
        if !device.is_cuda() {
            check_isa(&meta, &cpu_flags()).map_err(refuse)?;
        }
        let compiled = package_precision(&meta).map_err(refuse)?;
        if compiled != precision {
            return Err(refuse(format!(
                "its weights were compiled in {compiled}, so it runs in {compiled} only: give --precision {compiled} (asked: {precision})"
            )));
        }
        let channels_last = meta.get("wsiseg_channels_last").is_some_and(|v| v == "1");
        loaded(file, device, channels_last).map_err(refuse)
    }

    fn precisions(&self, file: &Path) -> Vec<Precision> {
        metadata(file)
            .ok()
            .and_then(|m| package_precision(&m).ok())
            .map_or_else(|| vec![Precision::F32], |p| vec![p])
    }

    fn libraries(&self) -> Vec<(&'static str, Option<String>)> {
        // libtorch, which the shared layer lists for every model.
        Vec::new()
    }
}

/// Whether this build can load `.pt2` packages, or why not (for doctor).
pub fn support() -> Result<(), String> {
    if cfg!(wsiseg_aoti) {
        Ok(())
    } else {
        Err("this wsiseg was built without libtorch's AOTInductor headers: .pt2 models are refused (rebuild with scripts/setup.sh)".into())
    }
}

#[cfg(not(wsiseg_aoti))]
fn loaded(_file: &Path, _device: Device, _channels_last: bool) -> Result<Box<dyn Network>, String> {
    Err(support().expect_err("built without the shim"))
}

#[cfg(wsiseg_aoti)]
use shim::loaded;

#[cfg(wsiseg_aoti)]
mod shim {
    use std::ffi::{c_char, c_int, c_void, CStr, CString};
    use std::path::Path;

    use tch::Tensor;

    use super::{rebuild, Network, Output, MAX_OUTPUTS};
    use crate::Device;

    /// libtorch's `at::Tensor`, opaque (tch's C API hands out the same
    /// pointers).
    type AtTensor = c_void;

    extern "C" {
        fn wsiseg_aoti_free_string(s: *mut c_char);
        fn wsiseg_aoti_load(
            path: *const c_char,
            device_index: c_int,
            loader: *mut *mut c_void,
        ) -> *mut c_char;
        fn wsiseg_aoti_free(loader: *mut c_void);
        fn wsiseg_aoti_call_spec(
            loader: *mut c_void,
            in_spec: *mut *mut c_char,
            out_spec: *mut *mut c_char,
        ) -> *mut c_char;
        fn wsiseg_aoti_run(
            loader: *mut c_void,
            inputs: *const *mut AtTensor,
            n_in: usize,
            outputs: *mut *mut AtTensor,
            cap: usize,
            n_out: *mut usize,
        ) -> *mut c_char;
    }

    /// A string the shim allocated, taken over (and freed).
    fn take(s: *mut c_char) -> Option<String> {
        if s.is_null() {
            return None;
        }
        // SAFETY: the shim returns null or a NUL-terminated malloc'd string,
        // freed once here.
        let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
        unsafe { wsiseg_aoti_free_string(s) };
        Some(text)
    }

    /// The package's code links `libtorch.so`, which wsiseg's binary does not
    /// need itself: load it (from the folder libtorch_cpu came from) so the
    /// package's library finds its symbols.
    fn load_libtorch() -> Result<(), String> {
        static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        LOADED
            .get_or_init(|| {
                if crate::loaded_library("libtorch.so").is_some() {
                    return Ok(());
                }
                let dir = crate::libtorch_dir().ok_or("libtorch_cpu.so is not loaded")?;
                let path = dir.join("libtorch.so");
                // SAFETY: libtorch.so belongs to the libtorch already loaded
                // (a thin library over libtorch_cpu).
                unsafe { crate::device::open_global(&path) }
            })
            .clone()
    }

    /// A loaded package and how to rebuild its outputs.
    struct Package {
        loader: *mut c_void,
        out_spec: serde_json::Value,
        channels_last: bool,
    }

    // SAFETY: the loader is used by one thread at a time (`Network` is
    // `Send`, not `Sync`; forward takes it exclusively through `&self` on
    // the owning worker) and owns no thread-local state.
    unsafe impl Send for Package {}

    impl Drop for Package {
        fn drop(&mut self) {
            // SAFETY: made by wsiseg_aoti_load, freed once.
            unsafe { wsiseg_aoti_free(self.loader) };
        }
    }

    pub(super) fn loaded(
        file: &Path,
        device: Device,
        channels_last: bool,
    ) -> Result<Box<dyn Network>, String> {
        load_libtorch()?;
        let path = CString::new(file.as_os_str().as_encoded_bytes())
            .map_err(|_| "its path holds a NUL byte".to_string())?;
        let index = match device {
            Device::Cpu => -1,
            Device::Cuda(i) => c_int::try_from(i).map_err(|_| format!("no such GPU {i}"))?,
        };
        let mut loader = std::ptr::null_mut();
        // SAFETY: a valid C string; the shim writes the loader or an error.
        if let Some(e) = take(unsafe { wsiseg_aoti_load(path.as_ptr(), index, &mut loader) }) {
            return Err(first_line(&e));
        }
        let mut package = Package {
            loader,
            out_spec: serde_json::Value::Null,
            channels_last,
        };
        let (mut ins, mut outs) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: a live loader; the shim writes two strings or an error.
        if let Some(e) = take(unsafe { wsiseg_aoti_call_spec(loader, &mut ins, &mut outs) }) {
            return Err(first_line(&e));
        }
        let (_, outs) = (take(ins), take(outs).unwrap_or_default());
        package.out_spec = serde_json::from_str(&outs)
            .map_err(|e| format!("its output spec is not JSON ({e}): {outs}"))?;
        Ok(Box::new(package))
    }

    /// The first line of libtorch's message (its errors carry C++ context).
    fn first_line(s: &str) -> String {
        s.lines().next().unwrap_or_default().trim().to_string()
    }

    impl Network for Package {
        fn forward(&self, x: Tensor) -> Result<Output, tch::TchError> {
            let mut x = if self.channels_last {
                // NCHW sizes with NHWC strides: the layout it was compiled for.
                x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
            } else {
                x.contiguous()
            };
            let inputs = [x.as_mut_ptr().cast::<AtTensor>()];
            let mut outputs = [std::ptr::null_mut::<AtTensor>(); MAX_OUTPUTS];
            let mut n = 0usize;
            // SAFETY: `x` outlives the call; the shim writes `n` ≤ cap new
            // tensors, owned here from now on.
            let error = take(unsafe {
                wsiseg_aoti_run(
                    self.loader,
                    inputs.as_ptr(),
                    1,
                    outputs.as_mut_ptr(),
                    MAX_OUTPUTS,
                    &mut n,
                )
            });
            // SAFETY: each pointer is a new at::Tensor the shim allocated.
            let tensors: Vec<Tensor> = outputs[..n]
                .iter()
                .map(|&p| unsafe { Tensor::from_ptr(p.cast()) })
                .collect();
            if let Some(e) = error {
                return Err(tch::TchError::Torch(format!(
                    "AOTInductor: {}",
                    first_line(&e)
                )));
            }
            rebuild(&self.out_spec, tensors).map_err(tch::TchError::Torch)
        }
    }
}

/// The output as the exported program returned it, from the flat tensors
/// and the out spec (`[protocol, treespec]` as torch.utils._pytree's
/// `treespec_dumps` writes it): a leaf is a tensor, tuples, lists and dicts
/// hold their children in order (a dict's keys are in its `context`).
pub(crate) fn rebuild(spec: &serde_json::Value, tensors: Vec<Tensor>) -> Result<Output, String> {
    let tree = match spec {
        serde_json::Value::Array(parts) if parts.len() == 2 => &parts[1],
        serde_json::Value::Null => {
            return match <[Tensor; 1]>::try_from(tensors) {
                Ok([t]) => Ok(Output::Tensor(t)),
                Err(all) => Ok(Output::Tuple(all.into_iter().map(Output::Tensor).collect())),
            }
        }
        other => return Err(format!("unexpected output spec {other}")),
    };
    let count = tensors.len();
    let mut leaves = tensors.into_iter();
    let out = node(tree, &mut leaves)?;
    if leaves.next().is_some() {
        return Err(format!(
            "the package returned {count} tensors, more than its output spec holds"
        ));
    }
    Ok(out)
}

/// One node of a treespec (see [`rebuild`]).
fn node(
    spec: &serde_json::Value,
    leaves: &mut impl Iterator<Item = Tensor>,
) -> Result<Output, String> {
    let kind = spec.get("type").and_then(|t| t.as_str());
    let children: Vec<&serde_json::Value> = spec
        .get("children_spec")
        .and_then(|c| c.as_array())
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let Some(kind) = kind else {
        return leaves
            .next()
            .map(Output::Tensor)
            .ok_or_else(|| "the package returned fewer tensors than its output spec holds".into());
    };
    let items = children
        .iter()
        .map(|c| node(c, leaves))
        .collect::<Result<Vec<_>, _>>()?;
    // builtins.dict, collections.OrderedDict, torch.fx's immutable_dict…
    let base = kind.rsplit('.').next().unwrap_or(kind).to_ascii_lowercase();
    Ok(match base.as_str() {
        "list" | "immutable_list" => Output::List(items),
        "dict" | "ordereddict" | "defaultdict" | "immutable_dict" => {
            // The keys: a JSON text of a list (defaultdict: inside an object).
            let context = spec.get("context").and_then(|c| c.as_str()).unwrap_or("[]");
            let keys: serde_json::Value = serde_json::from_str(context).unwrap_or_default();
            let keys = keys
                .get("dict_context")
                .unwrap_or(&keys)
                .as_array()
                .cloned()
                .unwrap_or_default();
            if keys.len() != items.len() {
                return Err(format!(
                    "a dict in the output spec has {} keys for {} values",
                    keys.len(),
                    items.len()
                ));
            }
            Output::Dict(
                keys.into_iter()
                    .map(|k| match k {
                        serde_json::Value::String(s) => Output::Str(s),
                        _ => Output::Other,
                    })
                    .zip(items)
                    .collect(),
            )
        }
        // Tuples, named tuples and other containers: their children in order.
        _ => Output::Tuple(items),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Tensor {
        Tensor::zeros([1, 2, 4, 4], (tch::Kind::Float, tch::Device::Cpu))
    }

    #[test]
    fn outputs_are_rebuilt_from_the_spec() {
        let leaf = r#"{"type": null, "context": null, "children_spec": []}"#;
        let one: serde_json::Value = serde_json::from_str(&format!("[1, {leaf}]")).unwrap();
        assert!(matches!(
            rebuild(&one, vec![t()]).unwrap(),
            Output::Tensor(_)
        ));
        let dict: serde_json::Value = serde_json::from_str(&format!(
            r#"[1, {{"type": "builtins.dict", "context": "[\"logits\", \"aux\"]", "children_spec": [{leaf}, {leaf}]}}]"#
        ))
        .unwrap();
        match rebuild(&dict, vec![t(), t()]).unwrap() {
            Output::Dict(pairs) => {
                assert!(matches!(&pairs[0].0, Output::Str(k) if k == "logits"));
                assert!(matches!(&pairs[1].0, Output::Str(k) if k == "aux"));
            }
            other => panic!("{other:?}"),
        }
        // torch.export of a TorchScript module (TS2EPConverter) returns fx's dict.
        let fx: serde_json::Value = serde_json::from_str(&format!(
            r#"[1, {{"type": "torch.fx.immutable_collections.immutable_dict", "context": "[\"logits\"]", "children_spec": [{leaf}]}}]"#
        ))
        .unwrap();
        assert!(matches!(rebuild(&fx, vec![t()]).unwrap(), Output::Dict(p) if p.len() == 1));
        let tuple: serde_json::Value = serde_json::from_str(&format!(
            r#"[1, {{"type": "builtins.tuple", "context": "null", "children_spec": [{leaf}, {leaf}]}}]"#
        ))
        .unwrap();
        assert!(
            matches!(rebuild(&tuple, vec![t(), t()]).unwrap(), Output::Tuple(v) if v.len() == 2)
        );
        assert!(rebuild(&tuple, vec![t()]).unwrap_err().contains("fewer"));
        assert!(rebuild(&one, vec![t(), t()]).unwrap_err().contains("more"));
    }

    #[test]
    fn packages_for_another_device_or_isa_are_refused() {
        assert!(check_device(Some("cpu"), Device::Cpu).is_ok());
        assert!(check_device(None, Device::Cpu).is_ok());
        assert!(check_device(Some("cuda"), Device::Cpu)
            .unwrap_err()
            .contains("compiled for CUDA"));
        assert!(check_device(Some("cpu"), Device::Cuda(0))
            .unwrap_err()
            .contains("compiled for the CPU"));
        let meta = HashMap::from([("AOTI_CPU_ISA".to_string(), "AVX512".to_string())]);
        assert!(check_isa(&meta, "flags : fpu avx2 avx512f").is_ok());
        assert!(check_isa(&meta, "flags : fpu avx2")
            .unwrap_err()
            .contains("avx512f"));
        assert!(check_isa(&HashMap::new(), "").is_ok());
    }
}
