//! The few CUDA driver calls libtorch's C API (and so tch) does not offer:
//! the GPU's name, and events that let the host wait for one batch's results
//! while the next batch is already running. `libcuda.so.1` is loaded at run
//! time, so CPU-only machines never need it.

use std::ffi::{c_char, c_void};
use std::sync::OnceLock;

type CuResult = i32;
type CuEvent = *mut c_void;
type CuStream = *mut c_void;
type CuContext = *mut c_void;

/// Entry points of NVIDIA's driver library, with their C signatures from
/// cuda.h (unchanged since CUDA 4).
struct Driver {
    _lib: libloading::Library,
    init: unsafe extern "C" fn(u32) -> CuResult,
    device_get: unsafe extern "C" fn(*mut i32, i32) -> CuResult,
    device_get_name: unsafe extern "C" fn(*mut c_char, i32, i32) -> CuResult,
    event_create: unsafe extern "C" fn(*mut CuEvent, u32) -> CuResult,
    event_record: unsafe extern "C" fn(CuEvent, CuStream) -> CuResult,
    event_synchronize: unsafe extern "C" fn(CuEvent) -> CuResult,
    event_destroy: unsafe extern "C" fn(CuEvent) -> CuResult,
    primary_ctx_retain: unsafe extern "C" fn(*mut CuContext, i32) -> CuResult,
    ctx_set_current: unsafe extern "C" fn(CuContext) -> CuResult,
    driver_get_version: unsafe extern "C" fn(*mut i32) -> CuResult,
    device_get_count: unsafe extern "C" fn(*mut i32) -> CuResult,
    device_total_mem: unsafe extern "C" fn(*mut usize, i32) -> CuResult,
    device_get_attribute: unsafe extern "C" fn(*mut i32, i32, i32) -> CuResult,
    /// Streams (for decoding beside the model's work): optional, so that a
    /// driver without them still gives events.
    streams: Option<StreamCalls>,
}

/// cuStreamCreate, cuStreamWaitEvent, cuStreamSynchronize, cuStreamDestroy_v2.
struct StreamCalls {
    create: unsafe extern "C" fn(*mut CuStream, u32) -> CuResult,
    wait_event: unsafe extern "C" fn(CuStream, CuEvent, u32) -> CuResult,
    synchronize: unsafe extern "C" fn(CuStream) -> CuResult,
    destroy: unsafe extern "C" fn(CuStream) -> CuResult,
}

fn driver() -> Option<&'static Driver> {
    load_driver().ok()
}

/// NVIDIA's driver library, loaded once, or why it cannot be.
fn load_driver() -> Result<&'static Driver, &'static str> {
    static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            // SAFETY: loading NVIDIA's driver library runs only its own initialisers.
            let lib = match unsafe { libloading::Library::new("libcuda.so.1") } {
                Ok(lib) => lib,
                Err(e) => {
                    return Err(format!(
                        "no NVIDIA driver: libcuda.so.1 cannot be loaded ({})",
                        crate::device::dl_error(&e)
                    ))
                }
            };
            let missing = |e: libloading::Error| {
                format!(
                    "libcuda.so.1 is incomplete: {}",
                    crate::device::dl_error(&e)
                )
            };
            // SAFETY: libcuda.so.1 is NVIDIA's driver library; each symbol is
            // read with the signature cuda.h declares for it.
            unsafe {
                let init = *lib.get(b"cuInit\0").map_err(missing)?;
                let device_get = *lib.get(b"cuDeviceGet\0").map_err(missing)?;
                let device_get_name = *lib.get(b"cuDeviceGetName\0").map_err(missing)?;
                let event_create = *lib.get(b"cuEventCreate\0").map_err(missing)?;
                let event_record = *lib.get(b"cuEventRecord\0").map_err(missing)?;
                let event_synchronize = *lib.get(b"cuEventSynchronize\0").map_err(missing)?;
                let event_destroy = *lib.get(b"cuEventDestroy_v2\0").map_err(missing)?;
                let primary_ctx_retain =
                    *lib.get(b"cuDevicePrimaryCtxRetain\0").map_err(missing)?;
                let ctx_set_current = *lib.get(b"cuCtxSetCurrent\0").map_err(missing)?;
                let driver_get_version = *lib.get(b"cuDriverGetVersion\0").map_err(missing)?;
                let device_get_count = *lib.get(b"cuDeviceGetCount\0").map_err(missing)?;
                let device_total_mem = *lib.get(b"cuDeviceTotalMem_v2\0").map_err(missing)?;
                let device_get_attribute = *lib.get(b"cuDeviceGetAttribute\0").map_err(missing)?;
                let streams = (|| {
                    Some(StreamCalls {
                        create: *lib.get(b"cuStreamCreate\0").ok()?,
                        wait_event: *lib.get(b"cuStreamWaitEvent\0").ok()?,
                        synchronize: *lib.get(b"cuStreamSynchronize\0").ok()?,
                        destroy: *lib.get(b"cuStreamDestroy_v2\0").ok()?,
                    })
                })();
                Ok(Driver {
                    _lib: lib,
                    init,
                    device_get,
                    device_get_name,
                    event_create,
                    event_record,
                    event_synchronize,
                    event_destroy,
                    primary_ctx_retain,
                    ctx_set_current,
                    driver_get_version,
                    device_get_count,
                    device_total_mem,
                    device_get_attribute,
                    streams,
                })
            }
        })
        .as_ref()
        .map_err(|e| e.as_str())
}

/// One GPU as the driver describes it.
#[derive(Debug, Clone)]
pub struct GpuInfo {
    /// `cuDeviceGetName`.
    pub name: String,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// Compute capability (major, minor).
    pub capability: (i32, i32),
}

/// What NVIDIA's driver reports, without going through libtorch.
#[derive(Debug, Clone)]
pub struct DriverInfo {
    /// The newest CUDA version the driver supports, as `cuDriverGetVersion`
    /// gives it (1000 × major + 10 × minor: 13000 is CUDA 13.0).
    pub cuda_version: i32,
    /// The driver's own version (e.g. 580.65.06), from
    /// `/proc/driver/nvidia/version`, when it is there.
    pub version: Option<String>,
    /// Its GPUs.
    pub gpus: Vec<GpuInfo>,
}

/// A CUDA driver API error code in words (the codes cuda.h names that a
/// machine check meets).
fn cu_error(code: CuResult) -> String {
    let what = match code {
        3 => "not initialized",
        35 => "the driver is older than the CUDA runtime (CUDA_ERROR_INSUFFICIENT_DRIVER)",
        100 => "no CUDA-capable device is detected (CUDA_ERROR_NO_DEVICE)",
        101 => "invalid device ordinal",
        304 => "the OS call failed: is /dev/nvidia* accessible? (CUDA_ERROR_OPERATING_SYSTEM)",
        803 => "the driver and its kernel module differ in version (CUDA_ERROR_SYSTEM_DRIVER_MISMATCH)",
        804 => "forward compatibility is not supported on this GPU (CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE)",
        999 => "unknown error (CUDA_ERROR_UNKNOWN)",
        _ => "see cuda.h's CUresult",
    };
    format!("CUDA driver error {code}: {what}")
}

/// Asks NVIDIA's driver (libcuda.so.1) for its version and GPUs; one line
/// saying why not when there is no driver or it does not start.
pub fn driver_info() -> Result<DriverInfo, String> {
    let d = load_driver().map_err(str::to_string)?;
    let version = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.to_string();
            let words: Vec<&str> = line.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "Module")?;
            words.get(i + 1).map(|v| v.to_string())
        });
    // SAFETY: valid driver entry points; every out-pointer is a live local
    // and the name buffer's length is passed.
    unsafe {
        let mut cuda_version = 0i32;
        let rc = (d.driver_get_version)(&mut cuda_version);
        if rc != 0 {
            return Err(cu_error(rc));
        }
        let rc = (d.init)(0);
        if rc != 0 {
            return Err(cu_error(rc));
        }
        let mut count = 0i32;
        let rc = (d.device_get_count)(&mut count);
        if rc != 0 {
            return Err(cu_error(rc));
        }
        let mut gpus = Vec::new();
        for ordinal in 0..count {
            let mut device = 0i32;
            if (d.device_get)(&mut device, ordinal) != 0 {
                continue;
            }
            let mut buf = [0 as c_char; 256];
            let name = if (d.device_get_name)(buf.as_mut_ptr(), buf.len() as i32, device) == 0 {
                std::ffi::CStr::from_ptr(buf.as_ptr())
                    .to_string_lossy()
                    .into_owned()
            } else {
                "?".to_string()
            };
            let mut bytes = 0usize;
            let _ = (d.device_total_mem)(&mut bytes, device);
            let (mut major, mut minor) = (0i32, 0i32);
            // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR.
            let _ = (d.device_get_attribute)(&mut major, 75, device);
            let _ = (d.device_get_attribute)(&mut minor, 76, device);
            gpus.push(GpuInfo {
                name,
                memory_bytes: bytes as u64,
                capability: (major, minor),
            });
        }
        Ok(DriverInfo {
            cuda_version,
            version,
            gpus,
        })
    }
}

/// The GPU's name from the CUDA driver (`cuDeviceGetName`), when there is one.
pub fn gpu_name(ordinal: usize) -> Option<String> {
    let d = driver()?;
    // SAFETY: valid driver entry points; the name buffer outlives the call
    // and its length is passed.
    unsafe {
        if (d.init)(0) != 0 {
            return None;
        }
        let mut device = 0i32;
        if (d.device_get)(&mut device, i32::try_from(ordinal).ok()?) != 0 {
            return None;
        }
        let mut buf = [0 as c_char; 256];
        if (d.device_get_name)(buf.as_mut_ptr(), buf.len() as i32, device) != 0 {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(buf.as_ptr())
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Makes GPU `ordinal`'s primary context (the one libtorch uses) current
/// on the calling thread, so that events recorded on this thread mark that
/// GPU's work; false when the driver cannot.
pub fn make_current(ordinal: usize) -> bool {
    let Some(d) = driver() else {
        return false;
    };
    let Ok(ordinal) = i32::try_from(ordinal) else {
        return false;
    };
    // SAFETY: valid driver entry points; out-pointers are live locals. The
    // primary context is retained once per call and never released: it
    // lives as long as the process, as libtorch's does.
    unsafe {
        let mut device = 0i32;
        let mut ctx: CuContext = std::ptr::null_mut();
        (d.init)(0) == 0
            && (d.device_get)(&mut device, ordinal) == 0
            && (d.primary_ctx_retain)(&mut ctx, device) == 0
            && (d.ctx_set_current)(ctx) == 0
    }
}

/// A point in the work queued so far on the calling thread's current CUDA
/// context and default stream (the one libtorch queues on): waiting for it
/// waits for that work only, not for what is queued after it.
pub struct Event(CuEvent);

// SAFETY: a CUevent is a handle the driver lets any thread use.
unsafe impl Send for Event {}

/// CU_EVENT_DISABLE_TIMING: the event only marks a point; it is cheaper.
const DISABLE_TIMING: u32 = 0x2;

impl Event {
    /// Records an event after the work queued so far; `None` when the
    /// driver cannot (no driver, no current context): callers then
    /// synchronize the whole device instead.
    pub fn record() -> Option<Self> {
        Self::record_on(std::ptr::null_mut())
    }

    /// [`Self::record`] on `stream` (null: the legacy default stream).
    pub fn record_on(stream: CuStream) -> Option<Self> {
        let d = driver()?;
        let mut event: CuEvent = std::ptr::null_mut();
        // SAFETY: valid entry points; the out-pointer is a live local; the
        // null stream is the legacy default stream of the current context.
        unsafe {
            if (d.event_create)(&mut event, DISABLE_TIMING) != 0 {
                return None;
            }
            let e = Self(event);
            ((d.event_record)(event, stream) == 0).then_some(e)
        }
    }

    /// Makes the work queued on `stream` (null: the legacy default stream)
    /// from now on wait for this event's work; false where the driver cannot.
    pub fn wait_on(&self, stream: CuStream) -> bool {
        let Some(calls) = driver().and_then(|d| d.streams.as_ref()) else {
            return false;
        };
        // SAFETY: a live event and a live stream (or null).
        unsafe { (calls.wait_event)(stream, self.0, 0) == 0 }
    }

    /// Blocks until the work before the event is done; false on a driver error.
    pub fn wait(&self) -> bool {
        // SAFETY: the event was created by `record` and is not destroyed yet.
        driver().is_some_and(|d| unsafe { (d.event_synchronize)(self.0) } == 0)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if let Some(d) = driver() {
            // SAFETY: created by `record`, destroyed once, here.
            unsafe {
                (d.event_destroy)(self.0);
            }
        }
    }
}

/// A CUDA stream of the current context that does not wait for the legacy
/// default stream (libtorch's), nor it for this one: work queued here runs
/// beside libtorch's; events order the two where needed.
pub(crate) struct Stream(CuStream);

// SAFETY: a CUDA stream handle may be used from any thread of the process;
// its owner uses it from one thread at a time.
unsafe impl Send for Stream {}

/// CU_STREAM_NON_BLOCKING.
const NON_BLOCKING: u32 = 1;

impl Stream {
    /// A new non-blocking stream in the current context; `None` where the
    /// driver cannot make one.
    pub fn new() -> Option<Self> {
        let calls = driver()?.streams.as_ref()?;
        let mut s: CuStream = std::ptr::null_mut();
        // SAFETY: the out-pointer is a live local.
        (unsafe { (calls.create)(&mut s, NON_BLOCKING) } == 0 && !s.is_null()).then_some(Self(s))
    }

    /// The handle, for libraries that take a `cudaStream_t`.
    pub fn raw(&self) -> CuStream {
        self.0
    }

    /// Blocks until its work is done.
    pub fn synchronize(&self) {
        if let Some(calls) = driver().and_then(|d| d.streams.as_ref()) {
            // SAFETY: a live stream.
            unsafe {
                (calls.synchronize)(self.0);
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.synchronize();
        if let Some(calls) = driver().and_then(|d| d.streams.as_ref()) {
            // SAFETY: created by `new`, destroyed once, here.
            unsafe {
                (calls.destroy)(self.0);
            }
        }
    }
}
