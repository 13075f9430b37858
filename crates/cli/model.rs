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
    let devices =
        wsiseg_engine::resolve_devices(&args.run.device).map_err(crate::errors::flag_context)?;
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
    let mut precisions = Vec::new();
    for other in lower_precisions(device) {
        let line = compare_precision(&model, other, threshold).map_err(infer)?;
        precisions.push((other.to_string(), line));
    }
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

/// The reduced precisions worth comparing on this device.
fn lower_precisions(device: Device) -> Vec<Precision> {
    if device.is_cuda() {
        vec![Precision::F16, Precision::BF16]
    } else {
        // f16 convolutions on the CPU are slow and not what anyone runs.
        vec![Precision::BF16]
    }
}

/// Largest P(tumor) difference and share of differing labels between f32
/// and `other` on pseudo-random tiles.
fn compare_precision(
    model: &Segmenter,
    other: Precision,
    threshold: Option<f64>,
) -> Result<String, InferError> {
    let t = model.manifest().tile;
    let px = (t as usize).pow(2);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let tiles: Vec<u8> = (0..RANDOM_TILES * px * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    let planes = model.probability_planes();
    let run = |precision: Precision| -> Result<(Vec<u8>, Vec<u8>), InferError> {
        let mut m = Segmenter::load(model.path(), model.device(), precision)?;
        m.set_threshold(threshold)?;
        let (mut labels, mut prob) = (
            vec![0u8; RANDOM_TILES * px],
            vec![0u8; RANDOM_TILES * px * planes],
        );
        m.segment(&tiles, RANDOM_TILES, t, &mut labels, Some(&mut prob))?;
        Ok((labels, prob))
    };
    let (l32, p32) = run(Precision::F32)?;
    let (lo, po) = match run(other) {
        Ok(r) => r,
        Err(e @ InferError::NonFinite { .. }) => return Ok(format!("{e}")),
        Err(e) => return Err(e),
    };
    let worst = p32
        .iter()
        .zip(&po)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    let differ = l32.iter().zip(&lo).filter(|(a, b)| a != b).count();
    Ok(format!(
        "vs f32: {} by at most {:.3} ({worst}/255), labels differ on {:.3}% of pixels ({RANDOM_TILES} random tiles)",
        if planes == 1 {
            "P(tumor) differs"
        } else {
            "class probabilities differ"
        },
        f64::from(worst) / 255.0,
        100.0 * differ as f64 / l32.len() as f64
    ))
}
