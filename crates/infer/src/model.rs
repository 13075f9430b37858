//! A loaded model that turns batches of RGB tiles into label tiles.

use std::path::{Path, PathBuf};

use tch::{CModule, Kind, Tensor};

use crate::{manifest, Device, InferError, Manifest, OutputKind, Precision};

/// A TorchScript segmentation model on one device, with its manifest.
pub struct Segmenter {
    module: CModule,
    manifest: Manifest,
    path: PathBuf,
    device: Device,
    precision: Precision,
    mean: Tensor,
    inv_std: Tensor,
}

impl Segmenter {
    /// Loads the model `path` names (see [`manifest::locate`]) onto `device`
    /// and checks it against its manifest with one dry run.
    pub fn load(path: &Path, device: Device, precision: Precision) -> Result<Self, InferError> {
        let (model_path, manifest_path) = manifest::locate(path)?;
        let manifest = Manifest::read(&manifest_path)?;
        let mut module = CModule::load_on_device(&model_path, device.tch()).map_err(|source| {
            InferError::ModelLoad {
                path: model_path.clone(),
                source,
            }
        })?;
        module.to(device.tch(), precision.kind(), false);
        module.set_eval();
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(true);
        }
        let per_channel = |v: [f32; 3]| {
            Tensor::from_slice(&v)
                .view([1, 3, 1, 1])
                .to_device(device.tch())
                .to_kind(precision.kind())
        };
        let segmenter = Self {
            mean: per_channel(manifest.mean),
            inv_std: per_channel(manifest.std.map(|s| 1.0 / s)),
            module,
            manifest,
            path: model_path,
            device,
            precision,
        };
        segmenter.check_output_shape()?;
        Ok(segmenter)
    }

    /// One tile of white through the model: the output must be `1×classes×tile×tile`.
    fn check_output_shape(&self) -> Result<(), InferError> {
        let t = self.manifest.tile as usize;
        let white = vec![255u8; t * t * 3];
        let out = self
            .forward(&white, 1, self.manifest.tile)
            .map_err(|e| match e {
                InferError::Forward { path, source, .. } => InferError::ModelMismatch {
                    path,
                    problem: format!(
                        "it fails on a 1×3×{t}×{t} input: {}",
                        source.to_string().lines().next().unwrap_or_default()
                    ),
                },
                other => other,
            })?;
        if !bool::try_from(out.isfinite().all()).unwrap_or(false) {
            return Err(InferError::NonFinite {
                path: self.path.clone(),
                precision: self.precision,
                tile: None,
            });
        }
        let expected = [1, self.manifest.classes.len() as i64, t as i64, t as i64];
        if out.size() != expected {
            return Err(InferError::ModelMismatch {
                path: self.path.clone(),
                problem: format!(
                    "output shape {:?} for a 1×3×{t}×{t} input, the manifest implies {expected:?} ({} classes)",
                    out.size(),
                    self.manifest.classes.len()
                ),
            });
        }
        Ok(())
    }

    /// Prepares the calling thread to drive this model: on CUDA, makes the
    /// model's GPU current, so that a worker thread's events and default
    /// stream are that GPU's. Nothing to do on the CPU.
    pub fn bind_thread(&self) {
        if let Device::Cuda(i) = self.device {
            if !crate::cuda::make_current(i) {
                warn_no_context(i);
            }
        }
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// The TorchScript file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
    }
    /// The precision it runs in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Runs the model on `n` tiles of `tile × tile` RGB pixels packed as
    /// `n×tile×tile×3` bytes, and returns the model's raw output (`n×C×tile×tile`).
    fn forward(&self, tiles: &[u8], n: usize, tile: u32) -> Result<Tensor, InferError> {
        assert_eq!(
            tiles.len(),
            n * (tile as usize).pow(2) * 3,
            "batch buffer size"
        );
        let t = i64::from(tile);
        let x = Tensor::from_slice(tiles)
            .view([n as i64, t, t, 3])
            .to_device(self.device.tch());
        self.forward_bytes(x)
    }

    /// The model on `n×tile×tile×3` bytes already on the device: normalized
    /// there (bytes travel, 4× less than f32), in the model's precision.
    /// Permuting NHWC to NCHW gives exactly the channels-last layout.
    fn forward_bytes(&self, x: Tensor) -> Result<Tensor, InferError> {
        let _no_grad = tch::no_grad_guard();
        let shape = {
            let s = x.size();
            vec![s[0], s[3], s[1], s[2]]
        };
        // One new tensor per batch (the conversion); the rest in place.
        let mut x = x.permute([0, 3, 1, 2]).to_kind(self.precision.kind());
        let _ = x
            .g_div_scalar_(255.0)
            .g_sub_(&self.mean)
            .g_mul_(&self.inv_std);
        self.module
            .forward_ts(&[x])
            .map_err(|source| InferError::Forward {
                path: self.path.clone(),
                shape,
                source,
            })
    }

    /// Model-only speed: seconds per forward pass of one batch of `n` tiles
    /// already on the device (the same layout and precision as [`Self::segment`]
    /// feeds it), after `warmup` passes: the best of three timings of
    /// `iterations` passes each; the device is synchronized before each
    /// clock stops (scripts/compare_pytorch.py times PyTorch the same way).
    pub fn time_forward(
        &self,
        n: usize,
        tile: u32,
        warmup: usize,
        iterations: usize,
    ) -> Result<f64, InferError> {
        let _no_grad = tch::no_grad_guard();
        let t = i64::from(tile);
        let x = Tensor::rand([n as i64, t, t, 3], (Kind::Float, self.device.tch()))
            .permute([0, 3, 1, 2])
            .to_kind(self.precision.kind());
        let x = (x - &self.mean) * &self.inv_std;
        let pass = || {
            self.module
                .forward_ts(&[&x])
                .map_err(|source| InferError::Forward {
                    path: self.path.clone(),
                    shape: vec![n as i64, 3, t, t],
                    source,
                })
        };
        for _ in 0..warmup {
            drop(pass()?);
        }
        let mut best = f64::MAX;
        for _ in 0..3 {
            self.synchronize();
            let start = std::time::Instant::now();
            for _ in 0..iterations.max(1) {
                drop(pass()?);
            }
            self.synchronize();
            best = best.min(start.elapsed().as_secs_f64() / iterations.max(1) as f64);
        }
        Ok(best)
    }

    fn synchronize(&self) {
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }

    /// Segments `n` tiles (`n×tile×tile×3` RGB bytes) and writes each
    /// pixel's most likely class into `labels` (`n×tile×tile` bytes) and,
    /// when asked, the probability of class 1 (tumor) scaled to 0–255 into
    /// `probability` (same size). Only bytes leave the device. One batch at a
    /// time; the engine overlaps batches with [`Self::submit`].
    pub fn segment(
        &self,
        tiles: &[u8],
        n: usize,
        tile: u32,
        labels: &mut [u8],
        probability: Option<&mut [u8]>,
    ) -> Result<(), InferError> {
        let mut staging = self.staging(n, tile);
        staging.tiles_mut(n).copy_from_slice(tiles);
        self.submit(staging, n, probability.is_some())?
            .wait_into(labels, probability)?;
        Ok(())
    }

    /// Runs two batches of `batch` blank tiles through the model, so that
    /// one-time work for that input shape (cuDNN's algorithm search,
    /// TorchScript's profiling runs) happens before a slide's clock starts.
    pub fn warm_up(&self, batch: usize, tile: u32) -> Result<(), InferError> {
        let px = batch * (tile as usize).pow(2);
        let mut labels = vec![0u8; px];
        for _ in 0..2 {
            let mut staging = self.staging(batch, tile);
            staging.tiles_mut(batch).fill(255);
            self.submit(staging, batch, false)?
                .wait_into(&mut labels, None)?;
        }
        Ok(())
    }

    /// Host buffers for batches of up to `capacity` tiles, reused batch after
    /// batch; page-locked on CUDA so that uploads run asynchronously.
    pub fn staging(&self, capacity: usize, tile: u32) -> Staging {
        let t = i64::from(tile);
        let shape = [capacity as i64, t, t, 3];
        let host = match self.device {
            // A non-blocking download lands in page-locked memory from
            // libtorch's pinned allocator (`pin_memory` would need a device
            // argument, which libtorch 2.11 deprecates with a warning per call).
            Device::Cuda(i) => {
                let host = Tensor::empty(shape, (Kind::Uint8, self.device.tch())).to_device_(
                    tch::Device::Cpu,
                    Kind::Uint8,
                    true,
                    false,
                );
                tch::Cuda::synchronize(i as i64);
                host
            }
            Device::Cpu => Tensor::empty(shape, (Kind::Uint8, tch::Device::Cpu)),
        };
        Staging {
            host,
            capacity,
            tile,
        }
    }

    /// Queues the first `n` tiles of `staging` through the model and returns
    /// at once on CUDA (upload, normalization, model, argmax and download
    /// are queued on the device); [`InFlight::wait_into`] collects the
    /// results and gives the staging buffer back. On the CPU the work is
    /// done before this returns.
    pub fn submit(
        &self,
        staging: Staging,
        n: usize,
        with_probability: bool,
    ) -> Result<InFlight, InferError> {
        assert!(
            n <= staging.capacity,
            "batch larger than its staging buffer"
        );
        let _no_grad = tch::no_grad_guard();
        let cuda = self.device.is_cuda();
        let host = staging.host.narrow(0, 0, n as i64);
        let x = if cuda {
            host.to_device_(self.device.tch(), Kind::Uint8, true, false)
        } else {
            host
        };
        let out = self.forward_bytes(x)?;
        // One flag per tile: every output value finite (checked on arrival,
        // a pass over the output, small beside the model).
        let finite = out
            .isfinite()
            .flatten(1, -1)
            .all_dim(1, false)
            .to_kind(Kind::Uint8);
        let classes = out.argmax(1, false).to_kind(Kind::Uint8);
        let tumor = with_probability.then(|| {
            let p = match self.manifest.output {
                OutputKind::Logits => out.to_kind(Kind::Float).softmax(1, Kind::Float),
                OutputKind::Probabilities => out.to_kind(Kind::Float),
            };
            (p.select(1, 1) * 255.0)
                .round()
                .clamp(0.0, 255.0)
                .to_kind(Kind::Uint8)
        });
        // Downloads into page-locked memory, asynchronous on CUDA; the event
        // marks their end, so waiting for it does not wait for later batches.
        let download = |t: Tensor| {
            if cuda {
                t.to_device_(tch::Device::Cpu, Kind::Uint8, true, false)
            } else {
                t
            }
        };
        let classes = download(classes);
        let tumor = tumor.map(download);
        let finite = download(finite);
        let done = if cuda {
            crate::cuda::Event::record()
        } else {
            None
        };
        if cuda && done.is_none() {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "CUDA events are unavailable (libcuda.so.1 not found or no current context); each batch waits for the whole device, so batches do not overlap"
                );
            });
        }
        let numel = n * (staging.tile as usize).pow(2);
        Ok(InFlight {
            staging,
            classes,
            tumor,
            finite,
            numel,
            device: self.device,
            done,
            model: (self.path.clone(), self.precision),
        })
    }
}

fn warn_no_context(i: usize) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!("cannot make cuda:{i} current on a worker thread (libcuda.so.1 not found?); batches wait for the whole device");
    });
}

/// Reusable host memory for one batch of `capacity` RGB tiles (see
/// [`Segmenter::staging`]).
pub struct Staging {
    /// `capacity×tile×tile×3` bytes, contiguous, on the CPU.
    host: Tensor,
    capacity: usize,
    tile: u32,
}

impl Staging {
    /// Tiles one batch holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the buffer is page-locked (CUDA staging buffers are, so that
    /// uploads and downloads run asynchronously).
    pub fn is_page_locked(&self) -> bool {
        tch::Cuda::is_available() && self.host.f_is_pinned(tch::Device::Cuda(0)).unwrap_or(false)
    }

    /// The bytes of the first `n` tiles, packed `n×tile×tile×3`, to fill.
    pub fn tiles_mut(&mut self, n: usize) -> &mut [u8] {
        assert!(
            n <= self.capacity,
            "{n} tiles in a buffer for {}",
            self.capacity
        );
        let len = n * (self.tile as usize).pow(2) * 3;
        // SAFETY: `host` is a contiguous uint8 CPU tensor of capacity×tile²×3
        // bytes that this struct alone owns (created in `Segmenter::staging`,
        // never shared); `&mut self` guarantees no other slice of it is alive,
        // and the device reads it only while an `InFlight` owns this struct.
        unsafe { std::slice::from_raw_parts_mut(self.host.data_ptr() as *mut u8, len) }
    }

    /// The bytes of tile `i`.
    pub fn tile_mut(&mut self, i: usize) -> &mut [u8] {
        let len = (self.tile as usize).pow(2) * 3;
        &mut self.tiles_mut(i + 1)[i * len..]
    }
}

/// A batch queued on the device (see [`Segmenter::submit`]).
pub struct InFlight {
    staging: Staging,
    classes: Tensor,
    tumor: Option<Tensor>,
    /// Per tile: 1 when all its outputs are finite.
    finite: Tensor,
    numel: usize,
    device: Device,
    done: Option<crate::cuda::Event>,
    /// The model file and precision, for errors.
    model: (PathBuf, Precision),
}

impl InFlight {
    /// Whether [`Self::wait_into`] waits for this batch alone (a CUDA event
    /// recorded after its downloads), not for the whole device; always
    /// true on the CPU, where the work is done already.
    pub fn waits_for_this_batch_only(&self) -> bool {
        !self.device.is_cuda() || self.done.is_some()
    }

    /// Waits for this batch only, copies its labels (and tumor probability,
    /// when it was asked for) into the slices, and returns the staging
    /// buffer for the next batch. A tile whose outputs are not all finite
    /// is an error ([`InferError::NonFinite`]), never a mask.
    pub fn wait_into(
        self,
        labels: &mut [u8],
        probability: Option<&mut [u8]>,
    ) -> Result<Staging, InferError> {
        if let Device::Cuda(i) = self.device {
            if !self.done.as_ref().is_some_and(|e| e.wait()) {
                tch::Cuda::synchronize(i as i64);
            }
        }
        let tiles = self.finite.numel();
        let mut finite = vec![0u8; tiles];
        self.finite.copy_data(&mut finite, tiles);
        if let Some(tile) = finite.iter().position(|&f| f == 0) {
            let (path, precision) = self.model;
            return Err(InferError::NonFinite {
                path,
                precision,
                tile: Some(tile),
            });
        }
        let numel = self.numel;
        self.classes.copy_data(&mut labels[..numel], numel);
        if let (Some(t), Some(p)) = (&self.tumor, probability) {
            t.copy_data(&mut p[..numel], numel);
        }
        Ok(self.staging)
    }
}
