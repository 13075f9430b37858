//! The table `wsiseg bench` prints: each stage's figure and the ratios.

use super::*;

/// `k`'s number to one decimal, or a dash.
pub(super) fn num(f: &Value, k: &str) -> String {
    f[k].as_f64()
        .map(|v| format!("{v:.1}"))
        .unwrap_or_else(|| "—".into())
}

/// `k`'s ratio to two decimals, or a dash.
pub(super) fn ratio(f: &Value, k: &str) -> String {
    f[k].as_f64()
        .map(|v| format!("{v:.2}×"))
        .unwrap_or_else(|| "—".into())
}

/// The stitcher's and each writer's MP/s inside the pipeline, or a dash.
pub(super) fn stage_threads(f: &Value) -> String {
    let Some(writers) = f["e2e_write_mp_s"].as_object() else {
        return "—".into();
    };
    let mut parts = vec![format!("stitch {}", num(f, "e2e_stitch_mp_s"))];
    parts.extend(
        writers
            .iter()
            .map(|(name, v)| format!("{name} {:.1}", v.as_f64().unwrap_or(f64::NAN))),
    );
    parts.join(", ") + " MP/s"
}

/// nvJPEG's MP/s on the sampled tiles and its ratio to the host's decode
/// on the reader threads, or why it was not measured.
fn device_decode(f: &Value) -> String {
    match f["device_jpeg_decode_mp_s"].as_f64() {
        Some(_) => format!(
            "{} MP/s ({}), {} the host's",
            num(f, "device_jpeg_decode_mp_s"),
            f["device_decode"].as_str().unwrap_or("?"),
            ratio(f, "device_vs_host_decode")
        ),
        None => f["device_decode"].as_str().unwrap_or("—").to_string(),
    }
}

/// The read and decode lines of the table.
pub(super) fn read_lines(f: &Value) -> Vec<(&'static str, String)> {
    vec![
        (
            "raw JPEG decode of the slide's tiles",
            num(f, "raw_jpeg_decode_mp_s") + " MP/s",
        ),
        ("decode of the same tiles on the GPU", device_decode(f)),
        (
            "read + decode of the same tiles, engine reader",
            format!(
                "{} MP/s ({})",
                num(f, "read_decode_mp_s"),
                f["reader"].as_str().unwrap_or("—"),
            ),
        ),
        ("  read+decode / raw decode", ratio(f, "read_vs_raw_decode")),
        (
            "read + decode of the same tiles, OpenSlide",
            num(f, "openslide_read_decode_mp_s") + " MP/s",
        ),
        (
            "  OpenSlide / raw decode",
            ratio(f, "openslide_vs_raw_decode"),
        ),
        (
            "planned tiles with halo, engine reader",
            format!(
                "{} MP/s of slide tiles ({} planned tiles)",
                num(f, "planned_read_mp_s"),
                f["planned_tiles_read"]
            ),
        ),
        (
            "  planned tiles / raw decode of their tiles",
            ratio(f, "planned_read_vs_raw_decode"),
        ),
        (
            "  largest pixel difference, reader vs OpenSlide",
            f["reader_vs_openslide_max_pixel_difference"].to_string(),
        ),
    ]
}

/// The model, stitch, write and end-to-end lines of the table.
pub(super) fn pipeline_lines(f: &Value) -> Vec<(&'static str, String)> {
    vec![
        (
            "model only (batch on the device)",
            num(f, "model_only_tiles_s") + " tiles/s, " + &num(f, "model_only_mp_s") + " MP/s",
        ),
        ("stitch (one core)", num(f, "stitch_mp_s") + " MP/s"),
        ("write PNG mask", num(f, "write_png_mp_s") + " MP/s"),
        (
            "write pyramidal TIFF mask",
            num(f, "write_tiff_mp_s") + " MP/s",
        ),
        (
            "end to end (segment)",
            format!(
                "{} s, {} of {} tiles run, {} tiles/s, {} MP/s of the working level",
                num(f, "e2e_wall_s"),
                f["e2e_tiles_run"],
                f["e2e_tiles_planned"],
                num(f, "e2e_tiles_s"),
                num(f, "e2e_mp_s")
            ),
        ),
        (
            "  end-to-end tiles/s / model-only tiles/s",
            ratio(f, "e2e_vs_model_only"),
        ),
        (
            "  share of the wall time outside the model",
            f["e2e_outside_model_share"]
                .as_f64()
                .map_or("—".into(), |v| format!("{:.1}%", 100.0 * v)),
        ),
        (
            "  tiles decoded on",
            format!(
                "{} ({} stored tiles on the device, {} batches fell back to the host)",
                f["e2e_decoded_by"].as_str().unwrap_or("—"),
                f["e2e_tiles_decoded_on_device"],
                f["e2e_device_decode_fallbacks"]
            ),
        ),
        (
            "  inference inside the pipeline",
            num(f, "e2e_inference_tiles_s")
                + " tiles/s, "
                + &num(f, "e2e_inference_mp_s")
                + " MP/s",
        ),
        (
            "  stitch + write inside the pipeline",
            num(f, "e2e_stitch_write_mp_s") + " MP/s (its busiest thread)",
        ),
        ("    stitching, then each writer", stage_threads(f)),
        (
            "peak RSS (wsiseg's own buffers)",
            format!(
                "{} MiB ({} MiB)",
                num(f, "peak_rss_mib"),
                num(f, "peak_rust_heap_mib")
            ),
        ),
        ("malloc", f["malloc"].as_str().unwrap_or("?").to_string()),
    ]
}

/// The figures as a table for the terminal.
pub(super) fn table(f: &Value) -> String {
    let mut s = format!(
        "wsiseg bench — {} on {} ({}), batch {}, TTA {}, {} readers\n",
        f["slide"], f["device"], f["precision"], f["batch"], f["tta"], f["readers"]
    );
    for (k, v) in read_lines(f).into_iter().chain(pipeline_lines(f)) {
        s += &format!("  {k:<46} {v}\n");
    }
    s
}
