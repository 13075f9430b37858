//! `wsiseg info`: what a slide is.

use anyhow::Result;
use serde_json::json;
use wsiseg_slide::Slide;

use crate::args::InfoArgs;

pub fn run(args: &InfoArgs) -> Result<()> {
    let slide = wsiseg_slide::open(&args.slide)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&describe(slide.as_ref()))?
        );
    } else {
        print!("{}", table(slide.as_ref()));
    }
    Ok(())
}

fn describe(slide: &dyn Slide) -> serde_json::Value {
    let mpp = slide.mpp();
    json!({
        "path": slide.path(),
        "format": slide.format(),
        "mpp": mpp.map(|m| json!({"x": m.x, "y": m.y})),
        "levels": slide.levels().iter().enumerate().map(|(i, l)| json!({
            "level": i,
            "width": l.size.w,
            "height": l.size.h,
            "downsample": l.downsample,
            "mpp": mpp.map(|m| m.mean() * l.downsample),
        })).collect::<Vec<_>>(),
        "associated": slide.associated().iter().map(|(name, size)| json!({
            "name": name, "width": size.w, "height": size.h,
        })).collect::<Vec<_>>(),
        "series": series(slide).map(|s| json!({
            "uid": s.uid, "name": s.name, "files": s.files,
        })),
    })
}

/// The DICOM series a DICOM slide was opened from.
fn series(slide: &dyn Slide) -> Option<wsiseg_slide::DicomSeries> {
    if slide.format() != "dicom" {
        return None;
    }
    wsiseg_slide::dicom_series_of(slide.path())
}

fn table(slide: &dyn Slide) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let mpp = slide.mpp();
    let _ = writeln!(s, "{}", slide.path().display());
    let _ = writeln!(s, "  format   {}", slide.format());
    let _ = match mpp {
        Some(m) => writeln!(s, "  mpp      {:.4} × {:.4} µm/px (level 0)", m.x, m.y),
        None => writeln!(s, "  mpp      unknown (the file does not record it)"),
    };
    let _ = writeln!(s, "  levels   {}", slide.levels().len());
    for (i, l) in slide.levels().iter().enumerate() {
        let level_mpp = mpp
            .map(|m| format!("{:.4} µm/px", m.mean() * l.downsample))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "    {i:>2}  {:>7} × {:<7} downsample {:<9.4} {level_mpp}",
            l.size.w, l.size.h, l.downsample
        );
    }
    let associated = slide.associated();
    if !associated.is_empty() {
        let list: Vec<String> = associated
            .iter()
            .map(|(name, size)| format!("{name} {}×{}", size.w, size.h))
            .collect();
        let _ = writeln!(s, "  images   {}", list.join(", "));
    }
    if let Some(series) = series(slide) {
        let _ = writeln!(
            s,
            "  series   {} files, Series Instance UID {} (outputs named {})",
            series.files.len(),
            series.uid,
            series.name
        );
    }
    s
}
