//! NVIDIA's nvJPEG, loaded at run time (like libcuda): batches of JPEG
//! tiles decoded on the GPU straight into a device tensor. The library is
//! looked for at `WSISEG_NVJPEG` (a file), beside the binary (`lib/`,
//! `../lib/`), in the `nvidia/cu13/lib` folder of the Python environment
//! libtorch came from (`pip install nvidia-nvjpeg`), then by its name on
//! the loader's path. CPU-only machines never need it.
//!
//! The hardware JPEG engines (A100, H100, H200…) are used when the GPU has
//! them, else nvJPEG's default (hybrid) backend.

use std::ffi::{c_int, c_uint, c_void};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tch::{Kind, Tensor};

type Status = c_int;
type Handle = *mut c_void;
type State = *mut c_void;

/// The library's soname.
const LIBRARY: &str = "libnvjpeg.so.13";
/// nvjpegOutputFormat_t NVJPEG_OUTPUT_RGBI: interleaved RGB in channel 0.
const OUTPUT_RGBI: c_int = 5;
/// nvjpegBackend_t NVJPEG_BACKEND_HARDWARE.
const BACKEND_HARDWARE: c_int = 3;
/// NVJPEG_MAX_COMPONENT.
const MAX_COMPONENT: usize = 4;

/// nvjpegImage_t.
#[repr(C)]
struct Image {
    channel: [*mut u8; MAX_COMPONENT],
    pitch: [usize; MAX_COMPONENT],
}

/// The entry points used, with their signatures from nvjpeg.h (CUDA 13).
struct Library {
    _lib: libloading::Library,
    path: PathBuf,
    version: String,
    create_simple: unsafe extern "C" fn(*mut Handle) -> Status,
    create_ex: unsafe extern "C" fn(c_int, *mut c_void, *mut c_void, c_uint, *mut Handle) -> Status,
    destroy: unsafe extern "C" fn(Handle) -> Status,
    state_create: unsafe extern "C" fn(Handle, *mut State) -> Status,
    state_destroy: unsafe extern "C" fn(State) -> Status,
    batched_initialize: unsafe extern "C" fn(Handle, State, c_int, c_int, c_int) -> Status,
    batched: unsafe extern "C" fn(
        Handle,
        State,
        *const *const u8,
        *const usize,
        *mut Image,
        *mut c_void,
    ) -> Status,
}

// SAFETY: the struct holds function pointers into a library that stays
// loaded for the process's life; nvJPEG's functions are thread-safe on
// distinct handles.
unsafe impl Send for Library {}
unsafe impl Sync for Library {}

/// Where the library is looked for, in order (see the module).
fn candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("WSISEG_NVJPEG") {
        return vec![PathBuf::from(p)];
    }
    let mut all = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        all.push(dir.join("lib").join(LIBRARY));
        all.push(dir.join("../lib").join(LIBRARY));
    }
    // torch/lib → site-packages/nvidia/cu13/lib.
    if let Some(lib) = crate::libtorch_dir() {
        all.push(lib.join("../../nvidia/cu13/lib").join(LIBRARY));
    }
    all
}

fn library() -> Result<&'static Library, String> {
    static LIB: OnceLock<Result<Library, String>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Library, String> {
    let found = candidates().into_iter().find(|p| p.exists());
    let path = found.clone().unwrap_or_else(|| PathBuf::from(LIBRARY));
    // SAFETY: loading NVIDIA's nvJPEG runs only its own initialisers.
    let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| {
        format!(
            "nvJPEG ({LIBRARY}) cannot be loaded ({}): install the nvidia-nvjpeg wheel beside PyTorch, or set WSISEG_NVJPEG to the library's path",
            crate::device::dl_error(&e)
        )
    })?;
    let missing = |e: libloading::Error| {
        format!(
            "{} is not a usable nvJPEG: {}",
            path.display(),
            crate::device::dl_error(&e)
        )
    };
    // SAFETY: each symbol is read with the signature nvjpeg.h declares.
    unsafe {
        let get_property: unsafe extern "C" fn(c_int, *mut c_int) -> Status =
            *lib.get(b"nvjpegGetProperty\0").map_err(missing)?;
        let mut v = [0 as c_int; 3];
        for (i, part) in v.iter_mut().enumerate() {
            get_property(i as c_int, part);
        }
        Ok(Library {
            create_simple: *lib.get(b"nvjpegCreateSimple\0").map_err(missing)?,
            create_ex: *lib.get(b"nvjpegCreateEx\0").map_err(missing)?,
            destroy: *lib.get(b"nvjpegDestroy\0").map_err(missing)?,
            state_create: *lib.get(b"nvjpegJpegStateCreate\0").map_err(missing)?,
            state_destroy: *lib.get(b"nvjpegJpegStateDestroy\0").map_err(missing)?,
            batched_initialize: *lib
                .get(b"nvjpegDecodeBatchedInitialize\0")
                .map_err(missing)?,
            batched: *lib.get(b"nvjpegDecodeBatched\0").map_err(missing)?,
            version: format!("{}.{}.{}", v[0], v[1], v[2]),
            path: found.and_then(|p| p.canonicalize().ok()).unwrap_or(path),
            _lib: lib,
        })
    }
}

/// The nvJPEG library this process would use and its version, or why
/// there is none (for doctor and reports).
pub fn nvjpeg_library() -> Result<(PathBuf, String), String> {
    library().map(|l| (l.path.clone(), l.version.clone()))
}

/// The words for an nvjpegStatus_t.
fn status_text(s: Status) -> String {
    let what = match s {
        1 => "not initialized",
        2 => "invalid parameter",
        3 => "bad JPEG",
        4 => "JPEG not supported",
        5 => "allocator failure",
        6 => "execution failed (no usable GPU?)",
        7 => "architecture mismatch",
        8 => "internal error",
        9 => "implementation not supported",
        10 => "incomplete bitstream",
        _ => "unknown status",
    };
    format!("nvJPEG status {s}: {what}")
}

/// One decoder: an nvJPEG handle and decode state, used by one thread at
/// a time (one per inference worker), on that worker's current device.
pub(crate) struct NvJpeg {
    lib: &'static Library,
    handle: Handle,
    state: State,
    /// The batch size the state was initialised for.
    batch: c_int,
    /// Whether the handle uses the GPU's hardware JPEG engines.
    pub hardware: bool,
}

// SAFETY: the handle and state are used by one thread at a time (the
// owner holds `&mut self` for every call); nvJPEG handles may move
// between threads.
unsafe impl Send for NvJpeg {}

impl NvJpeg {
    /// A decoder on the calling thread's current CUDA device.
    pub fn new() -> Result<Self, String> {
        let lib = library()?;
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: out-pointers to locals; null allocators mean cudaMalloc.
        let hardware = unsafe {
            (lib.create_ex)(
                BACKEND_HARDWARE,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
                &mut handle,
            )
        } == 0;
        if !hardware {
            handle = std::ptr::null_mut();
            // SAFETY: as above.
            let s = unsafe { (lib.create_simple)(&mut handle) };
            if s != 0 {
                return Err(format!("nvJPEG cannot start: {}", status_text(s)));
            }
        }
        let mut state: State = std::ptr::null_mut();
        // SAFETY: a handle just created; out-pointer to a local.
        let s = unsafe { (lib.state_create)(handle, &mut state) };
        if s != 0 {
            // SAFETY: the handle was created above and is not used again.
            unsafe { (lib.destroy)(handle) };
            return Err(format!("nvJPEG cannot start: {}", status_text(s)));
        }
        Ok(Self {
            lib,
            handle,
            state,
            batch: 0,
            hardware,
        })
    }

    /// Decodes `streams` (complete baseline JPEGs of `width`×`height`) into
    /// `out`, a contiguous `k×height×width×3` uint8 tensor on the current
    /// CUDA device (k = streams), queued on the default stream that
    /// libtorch's work uses, so later tensor work sees the pixels.
    pub fn decode_into(
        &mut self,
        streams: &[&[u8]],
        out: &Tensor,
        width: u32,
        height: u32,
    ) -> Result<(), String> {
        let k = streams.len();
        if k == 0 {
            return Ok(());
        }
        let (w, h) = (width as usize, height as usize);
        assert_eq!(out.size(), [k as i64, h as i64, w as i64, 3]);
        assert_eq!(out.kind(), Kind::Uint8);
        assert!(out.is_contiguous() && out.device().is_cuda());
        let n = c_int::try_from(k).map_err(|_| "too many tiles in one batch".to_string())?;
        if n != self.batch {
            // SAFETY: handle and state are this decoder's own.
            let s = unsafe {
                (self.lib.batched_initialize)(self.handle, self.state, n, 1, OUTPUT_RGBI)
            };
            if s != 0 {
                self.batch = 0;
                return Err(status_text(s));
            }
            self.batch = n;
        }
        let base = out.data_ptr() as *mut u8;
        let mut images: Vec<Image> = (0..k)
            .map(|i| {
                let mut channel = [std::ptr::null_mut(); MAX_COMPONENT];
                // SAFETY: inside `out`, which holds k·h·w·3 bytes.
                channel[0] = unsafe { base.add(i * h * w * 3) };
                let mut pitch = [0; MAX_COMPONENT];
                pitch[0] = w * 3;
                Image { channel, pitch }
            })
            .collect();
        let data: Vec<*const u8> = streams.iter().map(|s| s.as_ptr()).collect();
        let lengths: Vec<usize> = streams.iter().map(|s| s.len()).collect();
        // SAFETY: k streams, lengths and destinations, each destination
        // w·3 bytes a row for h rows inside `out`; stream null is the
        // default stream.
        let s = unsafe {
            (self.lib.batched)(
                self.handle,
                self.state,
                data.as_ptr(),
                lengths.as_ptr(),
                images.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        if s != 0 {
            // A failed batch leaves the state to be initialised again.
            self.batch = 0;
            return Err(status_text(s));
        }
        Ok(())
    }
}

impl Drop for NvJpeg {
    fn drop(&mut self) {
        // SAFETY: this decoder's own state and handle, not used after this.
        unsafe {
            (self.lib.state_destroy)(self.state);
            (self.lib.destroy)(self.handle);
        }
    }
}
