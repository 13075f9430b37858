//! A loaded model (or an ensemble of models) that turns batches of RGB
//! tiles into label tiles, with test-time augmentation if asked.

use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use crate::manifest::Activation;
use crate::member::{Member, Spec};
use crate::tta::{self, Tta};
use crate::{manifest, Device, InferError, Manifest, Precision};

/// The models of a [`Segmenter`], found, their manifests read and checked
/// against each other, none loaded yet: what a front end can know of them
/// at once (manifest, classes, decision, weights), before the slow load
/// onto a device ([`Self::load`]).
#[derive(Clone)]
pub struct ModelSet {
    /// The first model's manifest is the ensemble's (classes, tile, mpp).
    specs: Vec<Spec>,
    /// Binary models: tumor where P(tumor) > this; `None`: the arg-max.
    threshold: Option<f64>,
}

impl ModelSet {
    /// Several models (with their weights) as one ensemble: all must agree
    /// on classes, tile_multiple and mpp (they may differ in architecture,
    /// output form and training tile). A path may be an ensemble folder
    /// ([`manifest::ensemble_members`]): its models join with their weights
    /// times the one given.
    pub fn read(models: &[(PathBuf, f64)]) -> Result<Self, InferError> {
        assert!(!models.is_empty(), "an ensemble of no model");
        let mut expanded = Vec::with_capacity(models.len());
        for (path, weight) in models {
            match manifest::ensemble_members(path)? {
                Some(inner) => expanded.extend(inner.into_iter().map(|(p, w)| (p, w * weight))),
                None => expanded.push((path.clone(), *weight)),
            }
        }
        let mut specs: Vec<Spec> = Vec::with_capacity(expanded.len());
        for (path, weight) in &expanded {
            if !(weight.is_finite() && *weight > 0.0) {
                return Err(InferError::Ensemble {
                    path: path.clone(),
                    problem: format!("weight {weight} must be a positive number"),
                });
            }
            let spec = Spec::read(path, *weight)?;
            if let Some(first) = specs.first() {
                agree(first, &spec)?;
            }
            specs.push(spec);
        }
        Ok(Self {
            threshold: specs[0].manifest.threshold,
            specs,
        })
    }

    /// Loads every model onto `device` and checks each against its
    /// manifest with one dry run.
    pub fn load(&self, device: Device, precision: Precision) -> Result<Segmenter, InferError> {
        // Before libtorch is asked anything about CUDA (see load_cuda_support).
        let _ = crate::load_cuda_support();
        let members = self
            .specs
            .iter()
            .map(|spec| Member::load(spec, device, precision))
            .collect::<Result<_, _>>()?;
        Ok(Segmenter {
            set: self.clone(),
            members,
            device,
            precision,
            tta: Tta::None,
            pad: device.is_cuda(),
        })
    }

    /// Every model of the ensemble (one when alone): its file, manifest,
    /// weight and runtime.
    pub fn members(&self) -> impl Iterator<Item = (&Path, &Manifest, f64, &'static str)> {
        self.specs
            .iter()
            .map(|m| (m.path.as_path(), &m.manifest, m.weight, m.runtime.name()))
    }

    /// The model's manifest (an ensemble's first model's).
    pub fn manifest(&self) -> &Manifest {
        &self.specs[0].manifest
    }

    /// The model file (an ensemble's first model's).
    pub fn path(&self) -> &Path {
        &self.specs[0].path
    }

    /// Sets the decision threshold on P(tumor) (`--threshold`), overriding
    /// the manifest's; `None` keeps the manifest's. Binary models only.
    pub fn set_threshold(&mut self, threshold: Option<f64>) -> Result<(), InferError> {
        let Some(t) = threshold else {
            return Ok(());
        };
        let problem = if let Err(problem) = manifest::check_threshold(t) {
            Some(problem)
        } else if self.manifest().classes.len() != 2 {
            Some(format!(
                "{t} cannot apply: thresholds are for binary models, this one has {} classes ({})",
                self.manifest().classes.len(),
                self.manifest().classes.join(", ")
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(InferError::Threshold {
                path: self.path().to_path_buf(),
                problem,
            });
        }
        self.threshold = Some(t);
        Ok(())
    }

    /// The threshold on P(tumor) in use, if any (else the arg-max decides).
    pub fn threshold(&self) -> Option<f64> {
        self.threshold
    }

    /// How a pixel's class is decided, in words: "arg-max" or "P(tumor) > 0.3".
    pub fn decision(&self) -> String {
        let m = self.manifest();
        let sigmoid = self.specs.len() == 1 && m.activation() == Activation::Sigmoid;
        match (self.threshold, sigmoid) {
            (Some(t), _) => format!("P({}) > {t}", m.classes[1]),
            (None, true) => format!("P({}) > 0.5", m.classes[1]),
            (None, false) => "arg-max".to_string(),
        }
    }
}

/// A segmentation model on one device, with its manifest — or
/// several (an ensemble) whose class probabilities are averaged on the
/// device, with weights.
pub struct Segmenter {
    /// What was loaded, and the threshold in use.
    set: ModelSet,
    /// The models, in the order of `set`.
    members: Vec<Member>,
    device: Device,
    precision: Precision,
    tta: Tta,
    /// Short batches run at the full batch's shape ([`Self::set_pad_batches`]).
    pad: bool,
}

impl Segmenter {
    /// Loads the model `path` names (see [`manifest::locate`]) onto `device`
    /// and checks it against its manifest with one dry run.
    pub fn load(path: &Path, device: Device, precision: Precision) -> Result<Self, InferError> {
        Self::load_ensemble(&[(path.to_path_buf(), 1.0)], device, precision)
    }

    /// Loads several models (with their weights) as one ensemble
    /// ([`ModelSet::read`], then [`ModelSet::load`]). Probabilities are
    /// averaged with the weights.
    pub fn load_ensemble(
        models: &[(PathBuf, f64)],
        device: Device,
        precision: Precision,
    ) -> Result<Self, InferError> {
        ModelSet::read(models)?.load(device, precision)
    }

    /// What the module returns for one white tile, in words ("a tensor [1,
    /// 2, 256, 256]", "a dict with keys …"), and the shape of the
    /// segmentation in it before any upsampling (the first model's).
    pub fn output_summary(&self) -> Result<(String, Vec<i64>), InferError> {
        self.members[0].output_summary()
    }

    /// Sets test-time augmentation (default none).
    pub fn set_tta(&mut self, tta: Tta) {
        self.tta = tta;
    }

    /// The test-time augmentation in use.
    pub fn tta(&self) -> Tta {
        self.tta
    }

    /// Whether a batch shorter than its staging buffer (a slide's last)
    /// runs at the buffer's full shape, white tiles after its own, whose
    /// results are dropped on the device (default: on CUDA). A new input
    /// shape costs cuDNN's algorithm search and TorchScript's profiling
    /// runs again — at a slide's end, where nothing hides them; a few
    /// blank tiles on a GPU cost less. On the CPU every tile costs its
    /// compute, so short batches stay short there.
    pub fn set_pad_batches(&mut self, pad: bool) {
        self.pad = pad;
    }

    /// Every model of the ensemble (one when alone): its file, manifest and weight.
    pub fn members(&self) -> impl Iterator<Item = (&Path, &Manifest, f64, &'static str)> {
        self.set.members()
    }

    /// Sets the decision threshold ([`ModelSet::set_threshold`]).
    pub fn set_threshold(&mut self, threshold: Option<f64>) -> Result<(), InferError> {
        self.set.set_threshold(threshold)
    }

    /// The threshold on P(tumor) in use, if any (else the arg-max decides).
    pub fn threshold(&self) -> Option<f64> {
        self.set.threshold()
    }

    /// How a pixel's class is decided, in words: "arg-max" or "P(tumor) > 0.3".
    pub fn decision(&self) -> String {
        self.set.decision()
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

    /// The precisions every model's runtime supports.
    pub fn precisions(&self) -> Vec<Precision> {
        [Precision::F32, Precision::F16, Precision::BF16]
            .into_iter()
            .filter(|p| {
                self.members
                    .iter()
                    .all(|m| m.runtime.precisions(&m.path).contains(p))
            })
            .collect()
    }

    /// Each model's runtime (one when alone): "torchscript"…
    pub fn runtimes(&self) -> Vec<&'static str> {
        self.members.iter().map(|m| m.runtime.name()).collect()
    }

    /// The libraries the models run on, with their versions, each once
    /// (for reports): libtorch, the CUDA runtime and cuDNN, which the layer
    /// above every runtime uses, then each runtime's own.
    pub fn libraries(&self) -> Vec<(&'static str, Option<String>)> {
        let (cudart, cudnn) = crate::cuda_library_versions();
        let mut all = vec![
            ("libtorch", crate::libtorch_version()),
            ("cuda_runtime", cudart.map(crate::cuda_version_text)),
            ("cudnn", cudnn.map(crate::cudnn_version_text)),
        ];
        for member in &self.members {
            for (name, version) in member.runtime.libraries() {
                if !all.iter().any(|(n, _)| *n == name) {
                    all.push((name, version));
                }
            }
        }
        all
    }

    /// The model's manifest (an ensemble's first model's).
    pub fn manifest(&self) -> &Manifest {
        self.set.manifest()
    }
    /// The model file (an ensemble's first model's).
    pub fn path(&self) -> &Path {
        self.set.path()
    }
    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
    }
    /// The precision it runs in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// One model, no augmentation: labels (`n×h×w` bytes) and, when asked,
    /// the probability of every class but background as floats
    /// (`n×(classes−1)×h×w`), straight from the full-size output (the
    /// arg-max of the logits, as before ensembles existed: the same bytes).
    fn decide(&self, out: &Tensor, with_probability: bool) -> (Tensor, Option<Tensor>) {
        let labels_of = |t: Tensor| t.to_kind(Kind::Uint8);
        let member = &self.members[0];
        match member.manifest.activation() {
            Activation::Sigmoid => {
                // P > t ⇔ logit > ln(t / (1 − t)): exact at 0.5 (logit 0),
                // the same pixels a two-channel softmax's arg-max picks.
                let z = out.select(1, 0);
                let cut = self.set.threshold.map_or(0.0, |t| (t / (1.0 - t)).ln());
                let p = with_probability.then(|| not_background(&member.probabilities(out)));
                (labels_of(z.gt(cut)), p)
            }
            _ => match self.set.threshold {
                None => (
                    labels_of(out.argmax(1, false)),
                    with_probability.then(|| not_background(&member.probabilities(out))),
                ),
                Some(t) => {
                    let p = member.probabilities(out);
                    (
                        labels_of(p.select(1, 1).gt(t)),
                        with_probability.then(|| not_background(&p)),
                    )
                }
            },
        }
    }

    /// Labels and the non-background probabilities from averaged class
    /// probabilities (ensembles, augmentation): the arg-max, or P(tumor) >
    /// threshold.
    fn decide_averaged(&self, p: &Tensor, with_probability: bool) -> (Tensor, Option<Tensor>) {
        let labels = match self.set.threshold {
            None => p.argmax(1, false),
            Some(t) => p.select(1, 1).gt(t),
        };
        (
            labels.to_kind(Kind::Uint8),
            with_probability.then(|| not_background(p)),
        )
    }

    /// Probability planes per tile with `with_probability`: one per class
    /// but background (1 for a binary model: P(tumor)).
    pub fn probability_planes(&self) -> usize {
        self.manifest().classes.len() - 1
    }

    /// Whether a batch goes through the one-model path (no averaging).
    fn single(&self) -> bool {
        self.members.len() == 1 && self.tta == Tta::None
    }

    /// The batch (`n×tile×tile×3` bytes on the device) through every model
    /// and augmentation: the weighted mean of the class probabilities
    /// (`n×classes×tile×tile`, f32), and per model one flag per tile, 1
    /// when every value of its raw outputs was finite.
    fn averaged(&self, x: &Tensor) -> Result<(Tensor, Vec<Tensor>), InferError> {
        let transforms = self.tta.transforms();
        let total: f64 = self.members.iter().map(|m| m.weight).sum();
        let mut sum: Option<Tensor> = None;
        let mut flags = Vec::with_capacity(self.members.len());
        for member in &self.members {
            let (input, shape) = member.normalize(x.shallow_clone());
            let share = member.weight / (total * transforms.len() as f64);
            let mut finite: Option<Tensor> = None;
            for &t in &transforms {
                let out = member.run_module(tta::apply(&input, t), shape.clone())?;
                let ok = finite_per_tile(&out);
                finite = Some(match finite {
                    Some(f) => f.logical_and(&ok),
                    None => ok,
                });
                let p = tta::invert(&member.probabilities(&member.full_size(out)), t) * share;
                sum = Some(match sum {
                    Some(s) => s + p,
                    None => p,
                });
            }
            flags.push(finite.expect("at least one transform").to_kind(Kind::Uint8));
        }
        Ok((sum.expect("at least one model"), flags))
    }

    /// Model-only speed: seconds per forward pass of one batch of `n` tiles
    /// already on the device (the same layout and precision as [`Self::segment`]
    /// feeds it; every model of an ensemble and every augmentation), after
    /// `warmup` passes: the best of three timings of `iterations` passes
    /// each; the device is synchronized before each clock stops
    /// (scripts/compare_pytorch.py times PyTorch the same way).
    pub fn time_forward(
        &self,
        n: usize,
        tile: u32,
        warmup: usize,
        iterations: usize,
    ) -> Result<f64, InferError> {
        let _no_grad = tch::no_grad_guard();
        let t = i64::from(tile);
        let inputs: Vec<Tensor> = self
            .members
            .iter()
            .map(|m| {
                let x = Tensor::randint(256, [n as i64, t, t, 3], (Kind::Uint8, self.device.tch()));
                m.normalize(x).0
            })
            .collect();
        let transforms = self.tta.transforms();
        let pass = || -> Result<(), InferError> {
            for (member, x) in self.members.iter().zip(&inputs) {
                for &tr in &transforms {
                    let out = member.run_module(tta::apply(x, tr), vec![n as i64, 3, t, t])?;
                    drop(member.full_size(out));
                }
            }
            Ok(())
        };
        for _ in 0..warmup {
            pass()?;
        }
        let mut best = f64::MAX;
        for _ in 0..3 {
            self.synchronize();
            let start = std::time::Instant::now();
            for _ in 0..iterations.max(1) {
                pass()?;
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
    /// pixel's class into `labels` (`n×tile×tile` bytes) and, when asked,
    /// the probability of each class but background scaled to 0–255 into
    /// `probability`: per tile, one `tile×tile` plane per class from class 1
    /// on ([`Self::probability_planes`]; a binary model: P(tumor), the size
    /// of `labels`). Only bytes leave the device. One batch at a time; the
    /// engine overlaps batches with [`Self::submit`].
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
        let x = self.upload(&staging, n);
        self.submit_on_device(staging, x, n, with_probability)
    }

    /// The first `n` tiles of `staging` on the device (queued, on CUDA).
    fn upload(&self, staging: &Staging, n: usize) -> Tensor {
        let host = staging.host.narrow(0, 0, n as i64);
        if self.device.is_cuda() {
            host.to_device_(self.device.tch(), Kind::Uint8, true, false)
        } else {
            host
        }
    }

    /// The batch's `n×t×t×3` bytes made on the device from stored JPEG
    /// tiles by `decoder`, for [`Self::submit_on_device`]: the tiles of
    /// `assembly.tiles` that are `None` come from `staging` (uploaded as in
    /// [`Self::submit`]), those past its end are white.
    pub fn assemble(
        &self,
        staging: &Staging,
        n: usize,
        decoder: &mut crate::TileDecoder,
        assembly: &crate::Assembly,
    ) -> Result<Tensor, InferError> {
        assert!(n <= staging.capacity && assembly.tiles.len() <= n);
        let _no_grad = tch::no_grad_guard();
        let mut x = if assembly.tiles.iter().any(Option::is_none) {
            self.upload(staging, n)
        } else {
            let t = i64::from(staging.tile);
            Tensor::full([n as i64, t, t, 3], 255, (Kind::Uint8, self.device.tch()))
        };
        crate::decode::assemble(decoder, assembly, &mut x)?;
        Ok(x)
    }

    /// [`Self::submit`] of `x`, the batch's `n×t×t×3` bytes on the device
    /// already ([`Self::assemble`]); `staging` comes back with the results.
    pub fn submit_on_device(
        &self,
        staging: Staging,
        x: Tensor,
        n: usize,
        with_probability: bool,
    ) -> Result<InFlight, InferError> {
        let _no_grad = tch::no_grad_guard();
        let cuda = self.device.is_cuda();
        let x = if self.pad && n < staging.capacity {
            pad_batch(x, staging.capacity)
        } else {
            x
        };
        // One flag per tile and model: every output value finite (checked
        // on arrival, a pass over the output, small beside the model).
        let (classes, tumor, finite) = if self.single() {
            let member = &self.members[0];
            let out = member.raw_output(x)?;
            let finite = finite_per_tile(&out).to_kind(Kind::Uint8);
            let (classes, tumor) = self.decide(&member.full_size(out), with_probability);
            (classes, tumor, vec![finite])
        } else {
            let (p, finite) = self.averaged(&x)?;
            let (classes, tumor) = self.decide_averaged(&p, with_probability);
            (classes, tumor, finite)
        };
        // The padding's results are dropped before they leave the device.
        let rows = |t: Tensor| t.narrow(0, 0, n as i64);
        let (classes, tumor) = (rows(classes), tumor.map(rows));
        let finite: Vec<Tensor> = finite.into_iter().map(rows).collect();
        let tumor = tumor.map(|p| (p * 255.0).round().clamp(0.0, 255.0).to_kind(Kind::Uint8));
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
        let finite = finite.into_iter().map(download).collect();
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
        let planes = self.probability_planes();
        Ok(InFlight {
            staging,
            classes,
            tumor,
            finite,
            numel,
            planes,
            device: self.device,
            done,
            models: self.members.iter().map(|m| m.path.clone()).collect(),
            precision: self.precision,
        })
    }
}

/// `x` (`n×t×t×3` bytes) with white tiles after it up to `rows`.
fn pad_batch(x: Tensor, rows: usize) -> Tensor {
    let s = x.size();
    let white = Tensor::full(
        [rows as i64 - s[0], s[1], s[2], s[3]],
        255,
        (Kind::Uint8, x.device()),
    );
    Tensor::cat(&[x, white], 0)
}

/// Every class's probability but background's (`n×(C−1)×h×w`).
fn not_background(p: &Tensor) -> Tensor {
    let c = p.size()[1];
    p.narrow(1, 1, c - 1)
}

/// One flag per tile (bool): all of its values finite.
fn finite_per_tile(out: &Tensor) -> Tensor {
    out.isfinite().flatten(1, -1).all_dim(1, false)
}

/// The second model must agree with the first on what makes their
/// probabilities comparable and their tiles the same.
fn agree(first: &Spec, other: &Spec) -> Result<(), InferError> {
    let (a, b) = (&first.manifest, &other.manifest);
    let mismatch = |field: &'static str, theirs: String, ours: String| {
        InferError::Ensemble {
        path: other.path.clone(),
        problem: format!(
            "its {field} ({ours}) differ from the first model's ({theirs}): the models of an ensemble must agree on classes, tile_multiple and mpp"
        ),
    }
    };
    if a.classes != b.classes {
        return Err(mismatch(
            "classes",
            a.classes.join(", "),
            b.classes.join(", "),
        ));
    }
    if a.tile_multiple != b.tile_multiple {
        return Err(mismatch(
            "tile_multiple",
            a.tile_multiple.to_string(),
            b.tile_multiple.to_string(),
        ));
    }
    let same_mpp = match (a.mpp, b.mpp) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * x.max(y),
        (None, None) => true,
        _ => false,
    };
    if !same_mpp {
        let show = |m: Option<f64>| m.map_or("not given".to_string(), |m| format!("{m} µm/px"));
        return Err(mismatch("mpp", show(a.mpp), show(b.mpp)));
    }
    Ok(())
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
    /// `n×planes×tile×tile` bytes: each class's probability but background's.
    tumor: Option<Tensor>,
    planes: usize,
    /// Per model, per tile: 1 when all its outputs are finite.
    finite: Vec<Tensor>,
    numel: usize,
    device: Device,
    done: Option<crate::cuda::Event>,
    /// The model files (in the order of `finite`) and precision, for errors.
    models: Vec<PathBuf>,
    precision: Precision,
}

impl InFlight {
    /// Whether [`Self::wait_into`] waits for this batch alone (a CUDA event
    /// recorded after its downloads), not for the whole device; always
    /// true on the CPU, where the work is done already.
    pub fn waits_for_this_batch_only(&self) -> bool {
        !self.device.is_cuda() || self.done.is_some()
    }

    /// Waits for this batch only, copies its labels (and probability planes,
    /// when they were asked for: see [`Segmenter::segment`]) into the slices, and returns the staging
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
        for (flags, path) in self.finite.iter().zip(&self.models) {
            let tiles = flags.numel();
            let mut finite = vec![0u8; tiles];
            flags.copy_data(&mut finite, tiles);
            if let Some(tile) = finite.iter().position(|&f| f == 0) {
                return Err(InferError::NonFinite {
                    path: path.clone(),
                    precision: self.precision,
                    tile: Some(tile),
                });
            }
        }
        let numel = self.numel;
        self.classes.copy_data(&mut labels[..numel], numel);
        if let (Some(t), Some(p)) = (&self.tumor, probability) {
            let len = numel * self.planes;
            t.contiguous().copy_data(&mut p[..len], len);
        }
        Ok(self.staging)
    }
}
