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
/// nvjpegOutputFormat_t NVJPEG_OUTPUT_RGBI: YCbCr converted to interleaved
/// RGB in channel 0.
const OUTPUT_RGBI: c_int = 5;
/// NVJPEG_OUTPUT_UNCHANGED: the components as stored, one plane each (for
/// RGB-component streams: R, G, B planes, no colour transform).
const OUTPUT_UNCHANGED: c_int = 0;
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
/// a time (one per inference worker), on that worker's current device. It
/// decodes on a stream of its own, beside the model's work on libtorch's
/// default stream (events order the two), into two device buffers used in
/// turn: while the model runs on one batch's tiles the next batch decodes.
pub(crate) struct NvJpeg {
    lib: &'static Library,
    handle: Handle,
    state: State,
    /// The batch size and output format the state was initialised for.
    batch: (c_int, c_int),
    /// Whether the handle uses the GPU's hardware JPEG engines.
    pub hardware: bool,
    device: tch::Device,
    /// Its stream; `None`: the default stream (no overlap).
    stream: Option<crate::cuda::Stream>,
    /// Two output buffers, and for each the event after the last work that
    /// read it (none yet: free).
    buffers: [Option<(Tensor, Option<crate::cuda::Event>)>; 2],
    /// The buffer the next batch decodes into.
    next: usize,
}

// SAFETY: the handle, state, stream and events are used by one thread at a
// time (the owner holds `&mut self` for every call); nvJPEG handles and
// CUDA streams may move between threads.
unsafe impl Send for NvJpeg {}

impl NvJpeg {
    /// A decoder on the calling thread's current CUDA device `device`.
    pub fn new(device: tch::Device) -> Result<Self, String> {
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
            batch: (0, -1),
            hardware,
            device,
            stream: crate::cuda::Stream::new(),
            buffers: [None, None],
            next: 0,
        })
    }

    /// Decodes `streams` (complete baseline JPEGs of `width`×`height`;
    /// `rgb`: R, G, B components) into one of its buffers; returns the
    /// `k×height×width×3` RGB view of them. Work queued on libtorch's
    /// default stream after this sees the pixels; call [`Self::release`]
    /// once the work that reads them is queued.
    pub fn decode(
        &mut self,
        streams: &[&[u8]],
        width: u32,
        height: u32,
        rgb: bool,
    ) -> Result<Tensor, String> {
        let k = streams.len();
        let (w, h) = (width as usize, height as usize);
        if k == 0 {
            let shape = [0, h as i64, w as i64, 3];
            return Ok(Tensor::empty(shape, (Kind::Uint8, self.device)));
        }
        let per = h * w * 3;
        let b = self.next;
        self.next = 1 - b;
        if self.buffers[b]
            .as_ref()
            .is_none_or(|(t, _)| (t.numel()) < k * per)
        {
            // A new buffer: once the device is idle, so that no queued work
            // still uses the memory libtorch's allocator hands out (this
            // decoder writes it on its own stream).
            if let tch::Device::Cuda(i) = self.device {
                tch::Cuda::synchronize(i as i64);
            }
            let t = Tensor::empty([(k * per).max(1) as i64], (Kind::Uint8, self.device));
            self.buffers[b] = Some((t, None));
        }
        let format = if rgb { OUTPUT_UNCHANGED } else { OUTPUT_RGBI };
        self.batch_size(k, format)?;
        let stream = self
            .stream
            .as_ref()
            .map_or(std::ptr::null_mut(), |s| s.raw());
        let (buffer, free) = self.buffers[b].as_mut().expect("a buffer");
        if let Some(free) = free.take() {
            // The model's reads of this buffer's last batch come first.
            if stream.is_null() || !free.wait_on(stream) {
                free.wait();
            }
        }
        let base = buffer.data_ptr() as *mut u8;
        let mut images: Vec<Image> = (0..k)
            .map(|i| {
                let mut channel = [std::ptr::null_mut(); MAX_COMPONENT];
                let mut pitch = [0; MAX_COMPONENT];
                // SAFETY (both arms): inside the buffer, which holds at
                // least k·h·w·3 bytes.
                if rgb {
                    for (c, (ch, p)) in channel.iter_mut().zip(&mut pitch).take(3).enumerate() {
                        *ch = unsafe { base.add(i * per + c * h * w) };
                        *p = w;
                    }
                } else {
                    channel[0] = unsafe { base.add(i * per) };
                    pitch[0] = w * 3;
                }
                Image { channel, pitch }
            })
            .collect();
        let data: Vec<*const u8> = streams.iter().map(|s| s.as_ptr()).collect();
        let lengths: Vec<usize> = streams.iter().map(|s| s.len()).collect();
        // SAFETY: k streams, lengths and destinations inside the buffer;
        // `stream` is this decoder's (or null: the default stream).
        let s = unsafe {
            (self.lib.batched)(
                self.handle,
                self.state,
                data.as_ptr(),
                lengths.as_ptr(),
                images.as_mut_ptr(),
                stream,
            )
        };
        if s != 0 {
            // A failed batch leaves the state to be initialised again.
            self.batch = (0, -1);
            return Err(status_text(s));
        }
        if !stream.is_null() {
            // libtorch's default stream waits for the decode.
            let done = crate::cuda::Event::record_on(stream);
            if !done.is_some_and(|e| e.wait_on(std::ptr::null_mut())) {
                self.stream.as_ref().expect("a stream").synchronize();
            }
        }
        let view = buffer.narrow(0, 0, (k * per) as i64);
        let (k, h, w) = (k as i64, h as i64, w as i64);
        Ok(if rgb {
            view.view([k, 3, h, w]).permute([0, 2, 3, 1])
        } else {
            view.view([k, h, w, 3])
        })
    }

    /// The work that reads the last decoded batch is queued on libtorch's
    /// default stream: its buffer is free once that work is done.
    pub fn release(&mut self) {
        let last = 1 - self.next;
        if let Some((_, free)) = self.buffers[last].as_mut() {
            *free = crate::cuda::Event::record();
            if free.is_none() {
                if let tch::Device::Cuda(i) = self.device {
                    tch::Cuda::synchronize(i as i64);
                }
            }
        }
    }

    /// Initialises the decode state for batches of `k` in `format` when it
    /// was not already.
    fn batch_size(&mut self, k: usize, format: c_int) -> Result<(), String> {
        let n = c_int::try_from(k).map_err(|_| "too many tiles in one batch".to_string())?;
        if (n, format) != self.batch {
            // SAFETY: handle and state are this decoder's own.
            let s = unsafe { (self.lib.batched_initialize)(self.handle, self.state, n, 1, format) };
            if s != 0 {
                self.batch = (0, -1);
                return Err(status_text(s));
            }
            self.batch = (n, format);
        }
        Ok(())
    }
}

impl Drop for NvJpeg {
    fn drop(&mut self) {
        // Nothing of this decoder's may still run when its buffers go.
        if let Some(s) = &self.stream {
            s.synchronize();
        }
        if let tch::Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
        // SAFETY: this decoder's own state and handle, not used after this.
        unsafe {
            (self.lib.state_destroy)(self.state);
            (self.lib.destroy)(self.handle);
        }
    }
}
