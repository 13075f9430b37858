//! `wsiseg doctor`: can this machine run wsiseg? One screen (or `--json`)
//! that a closed server's user reads before the day's run: where libtorch and
//! OpenSlide were loaded from, whether CUDA is there and why not, the driver
//! against the CUDA runtime libtorch needs, the models, a smoke inference on
//! the CPU and GPU, free disk, cores and memory. Exits 1 when something
//! needed is missing, with the fix in one line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use serde_json::{json, Value};
use wsiseg_engine::{Device, Precision};
use wsiseg_infer::{cuda_version_text, DeviceChoice, Segmenter};

use crate::args::DoctorArgs;

/// The libtorch release tch 0.24 is built for.
const LIBTORCH_SERIES: &str = "2.11.";

/// Below this much free space in the output folder, a run of big slides may
/// not fit (a 100k × 80k slide's outputs are about 1 GiB).
const LOW_DISK: u64 = 2 << 30;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    /// Worth knowing, not a problem (no GPU on a CPU machine).
    Note,
    Fail,
}

impl Status {
    /// A GPU that is simply not there is a note, unless `--device cuda`
    /// requires one; anything broken is a failure.
    fn note_unless_required(absent: bool, required: bool) -> Self {
        if absent && !required {
            Self::Note
        } else {
            Self::Fail
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Note => "note",
            Self::Fail => "FAIL",
        }
    }
}

struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
    data: Value,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
            fix: None,
            data: Value::Null,
        }
    }
    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
    fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
}

/// Runs every check and prints them; returns whether nothing needed is missing.
pub(crate) fn run(args: &DoctorArgs) -> Result<bool> {
    let choice = args.device;
    let started = Instant::now();
    let mut checks = vec![wsiseg_check()];
    checks.push(libtorch_check());
    let (cuda, runtime_major) = cuda_check(choice);
    checks.push(cuda);
    let (driver, gpus) = driver_check(choice, runtime_major);
    checks.push(driver);
    checks.push(openslide_check());
    checks.extend(format_checks());
    let models = find_models(&args.model);
    checks.extend(model_checks(&models, gpus));
    checks.push(disk_check(&args.out));
    checks.push(machine_check());
    let ready = checks.iter().all(|c| c.status != Status::Fail);
    if args.json {
        let value = json!({
            "ready": ready,
            "seconds": started.elapsed().as_secs_f64(),
            "checks": checks.iter().map(|c| json!({
                "name": c.name,
                "status": c.status.word().to_ascii_lowercase(),
                "detail": c.detail,
                "fix": c.fix,
                "data": c.data,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("wsiseg doctor — can this machine run wsiseg?");
        for c in &checks {
            println!("  {:<5} {:<13} {}", c.status.word(), c.name, c.detail);
        }
        let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
        let on = if gpus > 0 { "CUDA and CPU" } else { "CPU only" };
        if ready {
            println!(
                "ready: wsiseg can run here ({on}); checked in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        } else {
            println!("NOT READY: {failed} problem(s)");
        }
    }
    for c in checks.iter().filter(|c| c.status == Status::Fail) {
        let fix = c.fix.as_deref().unwrap_or("see `wsiseg doctor` above");
        eprintln!("error: {}: {} — fix: {fix}", c.name, c.detail);
    }
    Ok(ready)
}

fn wsiseg_check() -> Check {
    let exe = std::env::current_exe().unwrap_or_default();
    Check::new(
        "wsiseg",
        Status::Ok,
        format!("{} ({})", env!("CARGO_PKG_VERSION"), exe.display()),
    )
    .data(json!({"version": env!("CARGO_PKG_VERSION"), "path": exe}))
}

fn libtorch_check() -> Check {
    let Some(dir) = wsiseg_infer::libtorch_dir() else {
        return Check::new("libtorch", Status::Fail, "libtorch_cpu.so is not loaded")
            .fix("unpack the whole wsiseg bundle (its lib/ folder), or run scripts/setup.sh");
    };
    let threads = tch::get_num_threads();
    let version = wsiseg_infer::libtorch_version();
    let data = json!({"version": version, "dir": dir, "threads": threads});
    match &version {
        Some(v) if v.starts_with(LIBTORCH_SERIES) => Check::new(
            "libtorch",
            Status::Ok,
            format!("{v} from {} ({threads} CPU threads)", dir.display()),
        )
        .data(data),
        Some(v) => Check::new(
            "libtorch",
            Status::Fail,
            format!(
                "{v} from {}, but wsiseg is built for libtorch {LIBTORCH_SERIES}x",
                dir.display()
            ),
        )
        .fix("unset LD_LIBRARY_PATH (or point it at a libtorch 2.11) so the libraries wsiseg was built with are loaded")
        .data(data),
        None => Check::new(
            "libtorch",
            Status::Note,
            format!("from {} (version not recorded beside it)", dir.display()),
        )
        .data(data),
    }
}

/// Whether libtorch's CUDA half is loaded, and the CUDA runtime's major
/// version when it is.
fn cuda_check(choice: DeviceChoice) -> (Check, Option<i64>) {
    let required = matches!(choice, DeviceChoice::Cuda(_));
    match wsiseg_infer::load_cuda_support() {
        Ok(path) => {
            let (cudart, cudnn) = wsiseg_infer::cuda_library_versions();
            let cudnn_text = cudnn.map(wsiseg_infer::cudnn_version_text);
            let detail = format!(
                "libtorch_cuda.so loaded; CUDA runtime {}, cuDNN {}",
                cudart.map_or("?".to_string(), cuda_version_text),
                cudnn_text.clone().unwrap_or_else(|| "?".to_string()),
            );
            let check = Check::new("CUDA support", Status::Ok, detail).data(json!({
                "loaded": true,
                "path": path,
                "cuda_runtime": cudart.map(cuda_version_text),
                "cudnn": cudnn_text,
            }));
            (check, cudart.map(|v| v / 1000))
        }
        Err(why) => {
            let absent = why.contains("no libtorch_cuda.so");
            let status = Status::note_unless_required(absent, required);
            let detail = if absent {
                format!("none — CPU only: {why}")
            } else {
                format!("libtorch_cuda.so is there but does not load: {why}")
            };
            let fix = if absent {
                "use the CUDA bundle (wsiseg-VERSION-linux-x86_64.tar.zst), or point LD_LIBRARY_PATH at a CUDA build of libtorch 2.11"
            } else {
                "a CUDA library libtorch needs is missing: unpack the whole CUDA bundle again (lib/ holds them all), or reinstall torch 2.11 with its nvidia-* packages"
            };
            let check = Check::new("CUDA support", status, detail)
                .fix(fix)
                .data(json!({"loaded": false, "why": why}));
            (check, None)
        }
    }
}

/// The minimum Linux driver for a CUDA major version (NVIDIA's CUDA
/// compatibility tables).
fn minimum_driver(cuda_major: i64) -> &'static str {
    match cuda_major {
        11 => "450.80",
        12 => "525.60",
        13 => "580.65",
        _ => "a newer one",
    }
}

/// The driver and its GPUs; returns the check and how many GPUs libtorch can use.
fn driver_check(choice: DeviceChoice, runtime_major: Option<i64>) -> (Check, usize) {
    let required = matches!(choice, DeviceChoice::Cuda(_));
    match wsiseg_infer::driver_info() {
        Ok(info) => judge_driver(
            &info,
            runtime_major,
            wsiseg_infer::cuda_device_count(),
            required,
        ),
        Err(why) => (no_driver(why, required), 0),
    }
}

/// The verdict on a driver that started: too old for libtorch's CUDA
/// runtime, no usable GPU, or fine; with the number of usable GPUs.
fn judge_driver(
    info: &wsiseg_infer::DriverInfo,
    runtime_major: Option<i64>,
    usable: usize,
    required: bool,
) -> (Check, usize) {
    let driver_cuda = i64::from(info.cuda_version);
    let (gpus, list) = describe_gpus(&info.gpus);
    let version = info.version.clone().unwrap_or_else(|| "?".to_string());
    let data = json!({
        "loaded": true,
        "version": info.version,
        "cuda": cuda_version_text(driver_cuda),
        "gpus": gpus,
        "usable_by_libtorch": usable,
    });
    let detail = format!(
        "NVIDIA {version} (supports CUDA {}); {list}",
        cuda_version_text(driver_cuda)
    );
    if let Some(major) = runtime_major {
        if driver_cuda / 1000 < major {
            return (
                Check::new(
                    "GPU driver",
                    Status::Fail,
                    format!(
                        "driver {version} supports CUDA {} but this libtorch needs CUDA {major}: the GPUs cannot be used",
                        cuda_version_text(driver_cuda)
                    ),
                )
                .fix(format!(
                    "update the NVIDIA driver to {} or newer (CUDA {major}), or use a wsiseg bundle built for CUDA {}",
                    minimum_driver(major),
                    driver_cuda / 1000
                ))
                .data(data),
                0,
            );
        }
    }
    if info.gpus.is_empty() || (runtime_major.is_some() && usable == 0) {
        let status = Status::note_unless_required(true, required);
        return (
            Check::new(
                "GPU driver",
                status,
                format!("{detail}; libtorch sees no usable GPU"),
            )
            .fix("check `nvidia-smi` and CUDA_VISIBLE_DEVICES")
            .data(data),
            0,
        );
    }
    (
        Check::new("GPU driver", Status::Ok, detail).data(data),
        usable,
    )
}

/// The driver check when libcuda.so.1 is absent or does not start.
fn no_driver(why: String, required: bool) -> Check {
    let no_driver = why.starts_with("no NVIDIA driver");
    let status = Status::note_unless_required(no_driver, required);
    let detail = if no_driver {
        format!("{why} — runs on the CPU")
    } else {
        why.clone()
    };
    let fix = if no_driver {
        "install the NVIDIA driver (and check that /dev/nvidia* exist), or run with --device cpu"
    } else {
        "check `nvidia-smi`: the driver is installed but does not start (reboot after a driver update; in a container, pass the GPUs through)"
    };
    Check::new("GPU driver", status, detail)
        .fix(fix)
        .data(json!({"loaded": false, "why": why}))
}

/// The GPUs as JSON and as one line.
fn describe_gpus(gpus: &[wsiseg_infer::GpuInfo]) -> (Vec<Value>, String) {
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    let json = gpus
        .iter()
        .map(|g| {
            json!({
                "name": g.name,
                "memory_gib": gib(g.memory_bytes),
                "compute_capability": format!("{}.{}", g.capability.0, g.capability.1),
            })
        })
        .collect();
    let list = gpus
        .iter()
        .enumerate()
        .map(|(i, g)| {
            format!(
                "cuda:{i} {} ({:.0} GiB, sm {}.{})",
                g.name,
                gib(g.memory_bytes),
                g.capability.0,
                g.capability.1
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    (json, list)
}

fn openslide_check() -> Check {
    let Some(version) = wsiseg_slide::openslide_version() else {
        return Check::new("OpenSlide", Status::Fail, "openslide_get_version failed").fix(
            "unpack the whole wsiseg bundle (lib/libopenslide.so.1), or run scripts/setup.sh",
        );
    };
    let path = wsiseg_infer::loaded_library("libopenslide.so.1")
        .or_else(|| wsiseg_infer::loaded_library("libopenslide.so.0"));
    let formats = wsiseg_slide::openslide_formats(&version);
    let names: Vec<&str> = formats
        .iter()
        .map(|f| f.split(' ').next().unwrap_or(f))
        .collect();
    Check::new(
        "OpenSlide",
        Status::Ok,
        format!(
            "{version} from {}: {}; plain PNG/JPEG/TIFF by wsiseg",
            path.as_ref()
                .map_or("?".to_string(), |p| p.display().to_string()),
            names.join(", ")
        ),
    )
    .data(json!({"version": version, "path": path, "formats": formats}))
}

/// The runtimes of model formats beside TorchScript: ONNX Runtime (loaded
/// now, as an ONNX model would load it; absent is a note: only `.onnx`
/// models need it), AOTInductor (built in, or not) and nvJPEG (the GPU's
/// JPEG decoder: absent is a note, tiles are then decoded on the CPU).
fn format_checks() -> Vec<Check> {
    let onnx = match wsiseg_infer::onnx_runtime_library() {
        Ok((path, version)) => Check::new(
            "ONNX Runtime",
            Status::Ok,
            format!(
                "{} from {} (model.onnx, CPU)",
                version.as_deref().unwrap_or("version unknown"),
                path.display()
            ),
        )
        .data(json!({"version": version, "path": path})),
        Err(why) => Check::new(
            "ONNX Runtime",
            Status::Note,
            format!("{why}; only .onnx models need it"),
        ),
    };
    let aoti = match wsiseg_infer::aotinductor_support() {
        Ok(()) => Check::new(
            "AOTInductor",
            Status::Ok,
            "model.pt2 packages run by libtorch's AOTIModelPackageLoader",
        ),
        Err(why) => Check::new("AOTInductor", Status::Note, why),
    };
    let nvjpeg = match wsiseg_infer::nvjpeg_library() {
        Ok((path, version)) => Check::new(
            "nvJPEG",
            Status::Ok,
            format!(
                "{version} from {} (--decode gpu|auto: JPEG tiles decoded on the GPU)",
                path.display()
            ),
        )
        .data(json!({"version": version, "path": path})),
        Err(why) => Check::new(
            "nvJPEG",
            Status::Note,
            format!("{why}; without it JPEG tiles are decoded on the CPU"),
        ),
    };
    vec![onnx, aoti, nvjpeg]
}

/// Model folders: the ones given, else every folder with a manifest.json in
/// `models/` beside the binary and in the current folder.
fn find_models(given: &[PathBuf]) -> Vec<PathBuf> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let mut roots = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        roots.push(dir.join("models"));
    }
    roots.push(PathBuf::from("models"));
    let mut found: Vec<PathBuf> = Vec::new();
    let mut seen = Vec::new();
    for root in roots {
        let Ok(canonical) = root.canonicalize() else {
            continue;
        };
        if seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical);
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("manifest.json").is_file())
            .collect();
        dirs.sort();
        found.extend(dirs);
    }
    found
}

/// Loads each model on the CPU (and the first on GPU 0 when there is one) and
/// times a forward pass.
fn model_checks(models: &[PathBuf], gpus: usize) -> Vec<Check> {
    if models.is_empty() {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("models")))
            .unwrap_or_default();
        return vec![Check::new(
            "model",
            Status::Fail,
            format!(
                "no model found (looked for folders with a manifest.json in {} and ./models)",
                beside.display()
            ),
        )
        .fix("pass --model DIR (a folder with model.pt and manifest.json), or put models/ beside the wsiseg binary")
        .data(json!({"found": []}))];
    }
    let mut checks = Vec::new();
    for (i, path) in models.iter().enumerate() {
        checks.push(smoke(path, Device::Cpu, Precision::F32));
        if i == 0 && gpus > 0 {
            checks.push(smoke(path, Device::Cuda(0), Precision::F16));
        }
    }
    checks
}

/// One model on one device: load, a warm-up pass and a timed pass.
fn smoke(path: &Path, device: Device, precision: Precision) -> Check {
    let name = if device.is_cuda() {
        "GPU smoke"
    } else {
        "model"
    };
    let started = Instant::now();
    let model = match Segmenter::load(path, device, precision) {
        Ok(m) => m,
        Err(e) => {
            return Check::new(name, Status::Fail, format!("{}: {e}", path.display()))
                .fix("check the model with `wsiseg model check MODEL`; re-export it with scripts/export_model.py")
                .data(json!({"path": path, "device": device.to_string(), "error": e.to_string()}));
        }
    };
    let m = model.manifest().clone();
    let sha = wsiseg_engine::file_sha256(model.path()).unwrap_or_default();
    let batch = if device.is_cuda() { 8 } else { 1 };
    match model.time_forward(batch, m.tile, 1, 1) {
        Ok(per_pass) => {
            let rate = batch as f64 / per_pass;
            let detail = format!(
                "{} ({}): {} classes, {} px tiles, {}; {:.1} tiles/s on {device} in {precision} (checked in {:.1} s)",
                path.display(),
                m.name,
                m.classes.len(),
                m.tile,
                m.mpp.map_or("no mpp".to_string(), |x| format!("{x} µm/px")),
                rate,
                started.elapsed().as_secs_f64()
            );
            Check::new(name, Status::Ok, detail).data(json!({
                "path": path,
                "name": m.name,
                "classes": m.classes,
                "tile": m.tile,
                "mpp": m.mpp,
                "sha256": sha,
                "device": device.to_string(),
                "precision": precision.to_string(),
                "tiles_per_s": rate,
            }))
        }
        Err(e) => Check::new(
            name,
            Status::Fail,
            format!("{}: forward pass on {device} failed: {e}", path.display()),
        )
        .fix(if device.is_cuda() {
            "run with --device cpu, and check the driver and GPU memory (`nvidia-smi`)"
        } else {
            "check the model with `wsiseg model check MODEL`"
        })
        .data(json!({"path": path, "device": device.to_string(), "error": e.to_string()})),
    }
}

/// Free space where outputs go (the nearest existing folder above `out`).
fn disk_check(out: &Path) -> Check {
    let mut dir = out.to_path_buf();
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => {
                dir = PathBuf::from(".");
                break;
            }
        }
    }
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return Check::new("disk", Status::Fail, format!("{}: bad path", dir.display()));
    };
    // SAFETY: statvfs fills the struct it is given; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Check::new(
            "disk",
            Status::Fail,
            format!("{}: {}", dir.display(), std::io::Error::last_os_error()),
        );
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    // SAFETY: access only reads the path.
    let writable = unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0;
    let gib = free as f64 / f64::from(1u32 << 30);
    let data = json!({"folder": dir, "free_gib": gib, "writable": writable});
    if !writable {
        return Check::new(
            "disk",
            Status::Fail,
            format!("{} is not writable", dir.display()),
        )
        .fix("choose an output folder you can write to with --out")
        .data(data);
    }
    let status = if free < LOW_DISK {
        Status::Note
    } else {
        Status::Ok
    };
    Check::new(
        "disk",
        status,
        format!("{}: {gib:.1} GiB free", dir.display()),
    )
    .data(data)
}

fn machine_check() -> Check {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = wsiseg_slide::machine_memory();
    let budget = wsiseg_engine::memory::default_budget();
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    Check::new(
        "machine",
        Status::Ok,
        format!(
            "{cores} cores, {:.1} GiB memory (default --max-memory {:.1} GiB)",
            gib(memory),
            gib(budget)
        ),
    )
    .data(json!({"cores": cores, "memory_gib": gib(memory), "max_memory_gib": gib(budget)}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsiseg_infer::{DriverInfo, GpuInfo};

    fn h100(cuda_version: i32) -> DriverInfo {
        DriverInfo {
            cuda_version,
            version: Some("550.54.15".to_string()),
            gpus: vec![GpuInfo {
                name: "NVIDIA H100 80GB HBM3".to_string(),
                memory_bytes: 80 << 30,
                capability: (9, 0),
            }],
        }
    }

    /// A driver for CUDA 12.4 under a CUDA 13 libtorch: the classic
    /// closed-server failure, said plainly with the driver to install.
    #[test]
    fn a_driver_too_old_for_the_cuda_runtime_fails_with_the_fix() {
        let (check, usable) = judge_driver(&h100(12040), Some(13), 0, false);
        assert!(check.status == Status::Fail);
        assert_eq!(usable, 0);
        assert_eq!(
            check.detail,
            "driver 550.54.15 supports CUDA 12.4 but this libtorch needs CUDA 13: the GPUs cannot be used"
        );
        assert!(check
            .fix
            .unwrap()
            .starts_with("update the NVIDIA driver to 580.65 or newer"));
    }

    #[test]
    fn a_recent_driver_with_a_usable_gpu_is_ok() {
        let (check, usable) = judge_driver(&h100(13000), Some(13), 1, true);
        assert!(check.status == Status::Ok, "{}", check.detail);
        assert_eq!(usable, 1);
        assert!(check
            .detail
            .contains("cuda:0 NVIDIA H100 80GB HBM3 (80 GiB, sm 9.0)"));
        // A newer driver runs an older runtime.
        let (check, _) = judge_driver(&h100(13010), Some(12), 1, false);
        assert!(check.status == Status::Ok);
    }

    /// No driver on a CPU machine is a note; with `--device cuda` a failure.
    #[test]
    fn no_driver_is_a_note_unless_cuda_is_required() {
        let why = "no NVIDIA driver: libcuda.so.1 cannot be loaded (not found)".to_string();
        assert!(no_driver(why.clone(), false).status == Status::Note);
        assert!(no_driver(why, true).status == Status::Fail);
        let broken = no_driver("CUDA driver error 804: ...".to_string(), false);
        assert!(broken.status == Status::Fail);
    }

    /// A driver that starts but whose GPUs libtorch cannot use.
    #[test]
    fn no_usable_gpu_fails_only_when_required() {
        let (check, usable) = judge_driver(&h100(13000), Some(13), 0, false);
        assert!(check.status == Status::Note && usable == 0);
        let (check, _) = judge_driver(&h100(13000), Some(13), 0, true);
        assert!(check.status == Status::Fail);
    }
}
