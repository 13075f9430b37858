//! The files `segment` writes for a slide, and the row sinks that produce them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use wsiseg_slide::{PyramidWriter, Size};
use wsiseg_stitch::{NearestRows, PngMaskWriter, RowSink, StitchError};

use crate::args::{Format, MaskValues};

/// Side of the overlay and heatmap images, and of the label copy GeoJSON is traced from.
pub const OVERVIEW_SIDE: u32 = 2048;
pub const GEOMETRY_SIDE: u32 = 8192;

/// Every file a slide can produce, named after the slide.
#[derive(Debug, Clone)]
pub struct OutputPaths {
    pub png: PathBuf,
    pub tiff: PathBuf,
    pub prob_tiff: PathBuf,
    pub geojson: PathBuf,
    pub overlay: PathBuf,
    pub heatmap: PathBuf,
    pub report: PathBuf,
}

impl OutputPaths {
    pub fn new(out: &Path, slide: &Path) -> Self {
        let stem = slide
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let f = |suffix: &str| out.join(format!("{stem}.{suffix}"));
        Self {
            png: f("mask.png"),
            tiff: f("mask.tiff"),
            prob_tiff: f("prob.tiff"),
            geojson: f("geojson"),
            overlay: f("overlay.png"),
            heatmap: f("heatmap.png"),
            report: f("report.json"),
        }
    }

    /// The files the chosen formats make.
    pub fn requested(&self, formats: &[Format], probabilities: bool) -> Vec<&Path> {
        let mut v: Vec<&Path> = Vec::new();
        for f in formats {
            match f {
                Format::Png => v.push(&self.png),
                Format::Tiff => v.push(&self.tiff),
                Format::Geojson => v.push(&self.geojson),
                Format::Overlay => v.extend([self.overlay.as_path(), &self.heatmap]),
                Format::Report => v.push(&self.report),
            }
        }
        if probabilities {
            v.push(&self.prob_tiff);
        }
        v
    }
}

/// What to do with a slide whose outputs may exist already.
pub enum Existing {
    None,
    /// Everything requested is there: a finished slide.
    All,
}

pub fn check_existing(paths: &[&Path], overwrite: bool) -> Result<Existing> {
    let present: Vec<&&Path> = paths.iter().filter(|p| p.exists()).collect();
    if overwrite || present.is_empty() {
        return Ok(Existing::None);
    }
    if present.len() == paths.len() {
        return Ok(Existing::All);
    }
    let missing: Vec<String> = paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    bail!(
        "{} exists but {} does not (an earlier run stopped midway?): use --overwrite to redo this slide",
        present[0].display(),
        missing.join(", ")
    )
}

/// The PNG mask, at the working level or resampled to another level.
pub enum PngOut {
    Working(PngMaskWriter),
    Resampled(NearestRows<PngMaskWriter>),
}

impl PngOut {
    fn sink(&mut self) -> &mut dyn RowSink {
        match self {
            Self::Working(w) => w,
            Self::Resampled(r) => r,
        }
    }
    fn commit(self) -> Result<PathBuf, StitchError> {
        match self {
            Self::Working(w) => w.commit(),
            Self::Resampled(r) => r.into_inner().commit(),
        }
    }
}

/// Where the stitched label rows go.
pub struct LabelSink {
    pub png: Option<PngOut>,
    pub png_values: MaskValues,
    pub tiff: Option<PyramidWriter>,
    /// Small copy for the overlay.
    pub overview: Option<NearestRows<Vec<u8>>>,
    /// Copy (at most GEOMETRY_SIDE a side) that GeoJSON is traced from.
    pub geometry: Option<NearestRows<Vec<u8>>>,
    pub counts: [u64; 256],
    scratch: Vec<u8>,
}

/// Where the stitched tumor-probability rows go.
pub struct ProbSink {
    pub tiff: Option<PyramidWriter>,
    pub overview: Option<NearestRows<Vec<u8>>>,
}

/// Size of a copy of `size` whose longer side is at most `side`.
pub fn fit(size: Size, side: u32) -> Size {
    let scale = (f64::from(side) / f64::from(size.w.max(size.h))).min(1.0);
    Size::new(
        ((f64::from(size.w) * scale).round() as u32).max(1),
        ((f64::from(size.h) * scale).round() as u32).max(1),
    )
}

impl LabelSink {
    pub fn new(png: Option<PngOut>, png_values: MaskValues, tiff: Option<PyramidWriter>) -> Self {
        Self {
            png,
            png_values,
            tiff,
            overview: None,
            geometry: None,
            counts: [0; 256],
            scratch: Vec::new(),
        }
    }

    /// Finishes every file; returns the paths written.
    pub fn commit(self) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        if let Some(png) = self.png {
            written.push(png.commit()?);
        }
        if let Some(tiff) = self.tiff {
            written.push(tiff.finish()?);
        }
        Ok(written)
    }
}

impl RowSink for LabelSink {
    fn write_rows(&mut self, rows: &[u8]) -> Result<(), StitchError> {
        for &v in rows {
            self.counts[v as usize] += 1;
        }
        if let Some(png) = &mut self.png {
            match self.png_values {
                MaskValues::ClassIndex => png.sink().write_rows(rows)?,
                MaskValues::Binary255 => {
                    self.scratch.clear();
                    self.scratch
                        .extend(rows.iter().map(|&v| if v > 0 { 255 } else { 0 }));
                    png.sink().write_rows(&self.scratch)?;
                }
            }
        }
        if let Some(tiff) = &mut self.tiff {
            tiff.write_rows(rows)?;
        }
        if let Some(o) = &mut self.overview {
            o.write_rows(rows)?;
        }
        if let Some(g) = &mut self.geometry {
            g.write_rows(rows)?;
        }
        Ok(())
    }
}

impl RowSink for ProbSink {
    fn write_rows(&mut self, rows: &[u8]) -> Result<(), StitchError> {
        if let Some(tiff) = &mut self.tiff {
            tiff.write_rows(rows)?;
        }
        if let Some(o) = &mut self.overview {
            o.write_rows(rows)?;
        }
        Ok(())
    }
}
