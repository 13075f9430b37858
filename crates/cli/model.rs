//! `wsiseg model check`: each model as wsiseg will run it, before a slide
//! is read — so that a team learns on the day, in seconds, whether its
//! export works and at what speed and precision.

use std::path::Path;

use anyhow::Result;
use wsiseg_engine::{Device, Precision};
use wsiseg_infer::{Activation, ChannelOrder, InferError, Segmenter};

use crate::args::ModelCheckArgs;

/// Tiles of pseudo-random pixels the precision comparison runs on.
const RANDOM_TILES: usize = 4;

/// Checks every model; returns whether all passed (each failure is one
/// `error:` line, and the others still run).
pub(crate) fn run(args: &ModelCheckArgs) -> Result<bool> {
    let devices = args
        .run
        .device
        .resolve()
        .map_err(crate::errors::flag_context)?;
    let device = devices[0];
    let precision = args.run.precision.unwrap_or(Precision::default_for(device));
    let batch = args
        .run
        .batch
        .unwrap_or(wsiseg_engine::default_batch(device));
    if batch == 0 {
        anyhow::bail!("--batch 0: must be at least 1");
    }
    let mut ok = true;
    for path in &args.models {
        if let Err(e) = check(path, device, precision, batch, args.threshold) {
            crate::errors::report_error(&e);
            ok = false;
        }
    }
    Ok(ok)
}

fn check(
    path: &Path,
    device: Device,
    precision: Precision,
    batch: usize,
    threshold: Option<f64>,
) -> Result<()> {
    let infer = |e: InferError| crate::errors::flag_context(e.into());
    let mut model = Segmenter::load(path, device, precision).map_err(infer)?;
    model.set_threshold(threshold).map_err(infer)?;
    let m = model.manifest().clone();
    let sha = wsiseg_engine::file_sha256(model.path())?;
    let (returned, raw) = model.output_summary().map_err(infer)?;
    let t = m.tile;
    let order = match m.channel_order {
        ChannelOrder::Rgb => "RGB",
        ChannelOrder::Bgr => "BGR",
    };
    let scale = if m.input_scale == 1.0 {
        "[0, 1]"
    } else {
        "[0, 255]"
    };
    let activation = match m.activation() {
        Activation::Softmax => format!("softmax over {} channels", m.classes.len()),
        Activation::Sigmoid => "sigmoid over 1 channel: P(tumor)".to_string(),
        Activation::None => format!("probabilities in {} channels", m.classes.len()),
    };
    let mut lines = vec![
        ("sha256", sha),
        ("runtime", runtime_line(&model)),
        (
            "input",
            format!(
                "N×3×{t}×{t} {precision}, {order} in {scale}, mean {:?}, std {:?}; tile sides multiples of {}",
                m.mean, m.std, m.tile_multiple
            ),
        ),
        ("returns", format!("{returned} for one tile")),
        (
            "output",
            format!(
                "{raw:?}{}, {activation}",
                if m.output_stride > 1 {
                    format!(", upsampled ×{} (bilinear)", m.output_stride)
                } else {
                    String::new()
                }
            ),
        ),
        ("classes", m.classes.join(", ")),
        ("decision", model.decision()),
        (
            "resolution",
            m.mpp.map_or("not given".to_string(), |x| format!("{x} µm/px")),
        ),
    ];
    let per_pass = model.time_forward(batch, t, 2, 3).map_err(infer)?;
    lines.push((
        "speed",
        format!(
            "{:.1} tiles/s on {} in {precision}, batch {batch} (model only)",
            batch as f64 / per_pass,
            wsiseg_engine::describe_devices(&[device])
        ),
    ));
    let precisions = precision_lines(&model, device, threshold).map_err(infer)?;
    println!("{} — {}", model.path().display(), m.name);
    for (key, value) in lines {
        println!("  {key:<12} {value}");
    }
    for (key, value) in precisions {
        println!("  {key:<12} {value}");
    }
    if m.mpp.is_none() {
        tracing::warn!(
            "{}: the manifest gives no mpp (the resolution the model was trained at): slides are segmented at level 0 unless --mpp or --level says otherwise",
            model.path().display()
        );
    }
    Ok(())
}

/// `onnx (libtorch 2.11.0, …, onnxruntime 1.31.1)`: the runtimes and the
/// libraries they run on.
fn runtime_line(model: &Segmenter) -> String {
    let libraries: Vec<String> = model
        .libraries()
        .into_iter()
        .filter_map(|(name, version)| Some(format!("{name} {}", version?)))
        .collect();
    format!("{} ({})", model.runtimes().join(", "), libraries.join(", "))
}

/// How each reduced precision compares with f32 on this device (or that
/// the model's runtime does not run it).
fn precision_lines(
    model: &Segmenter,
    device: Device,
    threshold: Option<f64>,
) -> Result<Vec<(String, String)>, InferError> {
    let reference = F32Reference::new(model, threshold)?;
    let mut lines = Vec::new();
    for other in lower_precisions(device) {
        let line = if model.precisions().contains(&other) {
            reference.compare(model, other, threshold)?
        } else {
            format!(
                "not run by the {} runtime for this model",
                model.runtimes().join(", ")
            )
        };
        lines.push((other.to_string(), line));
    }
    Ok(lines)
}

/// The reduced precisions worth comparing on this device.
fn lower_precisions(device: Device) -> Vec<Precision> {
    if device.is_cuda() {
        vec![Precision::F16, Precision::BF16]
    } else {
        // f16 convolutions on the CPU are slow and not what anyone runs.
        vec![Precision::BF16]
    }
}

/// Pseudo-random tiles and what the model gives on them in f32 (the
/// model as loaded when it runs in f32, else loaded again in f32): computed
/// once, compared with each reduced precision.
struct F32Reference {
    tiles: Vec<u8>,
    labels: Vec<u8>,
    prob: Vec<u8>,
}

impl F32Reference {
    fn new(model: &Segmenter, threshold: Option<f64>) -> Result<Self, InferError> {
        let px = (model.manifest().tile as usize).pow(2);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let tiles: Vec<u8> = (0..RANDOM_TILES * px * 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 56) as u8
            })
            .collect();
        let (labels, prob) = if model.precision() == Precision::F32 {
            outputs(model, &tiles)?
        } else {
            outputs(&reload(model, Precision::F32, threshold)?, &tiles)?
        };
        Ok(Self {
            tiles,
            labels,
            prob,
        })
    }

    /// Largest probability difference and share of differing labels
    /// between f32 and `other`.
    fn compare(
        &self,
        model: &Segmenter,
        other: Precision,
        threshold: Option<f64>,
    ) -> Result<String, InferError> {
        let (lo, po) = match reload(model, other, threshold).and_then(|m| outputs(&m, &self.tiles))
        {
            Ok(r) => r,
            Err(e @ InferError::NonFinite { .. }) => return Ok(format!("{e}")),
            Err(e) => return Err(e),
        };
        let worst = self
            .prob
            .iter()
            .zip(&po)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        let differ = self.labels.iter().zip(&lo).filter(|(a, b)| a != b).count();
        Ok(format!(
            "vs f32: {} by at most {:.3} ({worst}/255), labels differ on {:.3}% of pixels ({RANDOM_TILES} random tiles)",
            if model.probability_planes() == 1 {
                "P(tumor) differs"
            } else {
                "class probabilities differ"
            },
            f64::from(worst) / 255.0,
            100.0 * differ as f64 / self.labels.len() as f64
        ))
    }
}

/// The model loaded again in `precision`, with the same threshold.
fn reload(
    model: &Segmenter,
    precision: Precision,
    threshold: Option<f64>,
) -> Result<Segmenter, InferError> {
    let mut m = Segmenter::load(model.path(), model.device(), precision)?;
    m.set_threshold(threshold)?;
    Ok(m)
}

/// Labels and probability planes of `tiles` (RANDOM_TILES of the model's tile).
fn outputs(m: &Segmenter, tiles: &[u8]) -> Result<(Vec<u8>, Vec<u8>), InferError> {
    let t = m.manifest().tile;
    let px = RANDOM_TILES * (t as usize).pow(2);
    let (mut labels, mut prob) = (vec![0u8; px], vec![0u8; px * m.probability_planes()]);
    m.segment(tiles, RANDOM_TILES, t, &mut labels, Some(&mut prob))?;
    Ok((labels, prob))
}
