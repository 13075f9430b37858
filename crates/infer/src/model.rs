//! A loaded model that turns batches of RGB tiles into label tiles.

use std::path::{Path, PathBuf};

use tch::{CModule, Device, Kind, Tensor};

use crate::{manifest, InferError, Manifest, OutputKind, Precision};

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
        let mut module = CModule::load_on_device(&model_path, device).map_err(|source| {
            InferError::ModelLoad {
                path: model_path.clone(),
                source,
            }
        })?;
        module.to(device, precision.kind(), false);
        module.set_eval();
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(true);
        }
        let per_channel = |v: [f32; 3]| {
            Tensor::from_slice(&v)
                .view([1, 3, 1, 1])
                .to_device(device)
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

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Runs the model on `n` tiles of `tile × tile` RGB pixels packed as
    /// `n×tile×tile×3` bytes, and returns the model's raw output (`n×C×tile×tile`).
    fn forward(&self, tiles: &[u8], n: usize, tile: u32) -> Result<Tensor, InferError> {
        let _no_grad = tch::no_grad_guard();
        let t = i64::from(tile);
        let shape = vec![n as i64, 3, t, t];
        assert_eq!(
            tiles.len(),
            n * (tile as usize).pow(2) * 3,
            "batch buffer size"
        );
        // Upload bytes (4× less traffic than f32), normalize on the device.
        // Permuting NHWC to NCHW gives exactly the channels-last layout.
        let x = Tensor::from_slice(tiles)
            .view([n as i64, t, t, 3])
            .to_device(self.device)
            .permute([0, 3, 1, 2])
            .to_kind(self.precision.kind());
        let x = (x / 255.0 - &self.mean) * &self.inv_std;
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
    /// feeds it), after `warmup` passes; the device is synchronized before
    /// the clock stops.
    pub fn time_forward(
        &self,
        n: usize,
        tile: u32,
        warmup: usize,
        iterations: usize,
    ) -> Result<f64, InferError> {
        let _no_grad = tch::no_grad_guard();
        let t = i64::from(tile);
        let x = Tensor::rand([n as i64, t, t, 3], (Kind::Float, self.device))
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
        self.synchronize();
        let start = std::time::Instant::now();
        for _ in 0..iterations.max(1) {
            drop(pass()?);
        }
        self.synchronize();
        Ok(start.elapsed().as_secs_f64() / iterations.max(1) as f64)
    }

    fn synchronize(&self) {
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }

    /// Segments `n` tiles (`n×tile×tile×3` RGB bytes) and writes each
    /// pixel's most likely class into `labels` (`n×tile×tile` bytes) and,
    /// when asked, the probability of class 1 (tumor) scaled to 0–255 into
    /// `probability` (same size). Only bytes leave the device.
    pub fn segment(
        &self,
        tiles: &[u8],
        n: usize,
        tile: u32,
        labels: &mut [u8],
        probability: Option<&mut [u8]>,
    ) -> Result<(), InferError> {
        let out = self.forward(tiles, n, tile)?;
        let _no_grad = tch::no_grad_guard();
        let numel = n * (tile as usize).pow(2);
        let classes = out
            .argmax(1, false)
            .to_kind(Kind::Uint8)
            .to_device(Device::Cpu);
        classes.copy_data(&mut labels[..numel], numel);
        if let Some(probability) = probability {
            let p = match self.manifest.output {
                OutputKind::Logits => out.to_kind(Kind::Float).softmax(1, Kind::Float),
                OutputKind::Probabilities => out.to_kind(Kind::Float),
            };
            let tumor = (p.select(1, 1) * 255.0)
                .round()
                .clamp(0.0, 255.0)
                .to_kind(Kind::Uint8)
                .to_device(Device::Cpu);
            tumor.copy_data(&mut probability[..numel], numel);
        }
        Ok(())
    }
}
