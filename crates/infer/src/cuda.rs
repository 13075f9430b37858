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
}

fn driver() -> Option<&'static Driver> {
    static DRIVER: OnceLock<Option<Driver>> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            // SAFETY: libcuda.so.1 is NVIDIA's driver library; each symbol is
            // read with the signature cuda.h declares for it.
            unsafe {
                let lib = libloading::Library::new("libcuda.so.1").ok()?;
                let init = *lib.get(b"cuInit\0").ok()?;
                let device_get = *lib.get(b"cuDeviceGet\0").ok()?;
                let device_get_name = *lib.get(b"cuDeviceGetName\0").ok()?;
                let event_create = *lib.get(b"cuEventCreate\0").ok()?;
                let event_record = *lib.get(b"cuEventRecord\0").ok()?;
                let event_synchronize = *lib.get(b"cuEventSynchronize\0").ok()?;
                let event_destroy = *lib.get(b"cuEventDestroy_v2\0").ok()?;
                let primary_ctx_retain = *lib.get(b"cuDevicePrimaryCtxRetain\0").ok()?;
                let ctx_set_current = *lib.get(b"cuCtxSetCurrent\0").ok()?;
                Some(Driver {
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
                })
            }
        })
        .as_ref()
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
        let d = driver()?;
        let mut event: CuEvent = std::ptr::null_mut();
        // SAFETY: valid entry points; the out-pointer is a live local; the
        // null stream is the legacy default stream of the current context.
        unsafe {
            if (d.event_create)(&mut event, DISABLE_TIMING) != 0 {
                return None;
            }
            let e = Self(event);
            ((d.event_record)(event, std::ptr::null_mut()) == 0).then_some(e)
        }
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
