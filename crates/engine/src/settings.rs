//! Every setting of one slide's run, resolved once from the engine and the
//! request: the run record's fingerprint (what decides the pixels) and the
//! report's parameters (everything) are both made from it. Each view names
//! every field, so a new setting does not compile until both say what
//! they do with it.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use wsiseg_report::{Dimensions, Parameters};

use crate::{
    BadTiles, Decode, Engine, EngineError, Format, MaskSize, MaskValues, Precision, Reader,
    Request, SlidePlan, TissuePolicy, Tta,
};

/// Every setting of one slide's run after defaults were resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The pyramid level asked for.
    pub level: Option<u32>,
    /// The resolution asked for, µm/px.
    pub mpp: Option<f64>,
    /// The resolution given to the slide, µm/px.
    pub slide_mpp: Option<f64>,
    /// Tile side, working-level pixels.
    pub tile: u32,
    /// Overlap of neighbouring tiles.
    pub overlap: u32,
    /// Which tiles run.
    pub tissue: TissuePolicy,
    /// How levels are read.
    pub reader: Reader,
    /// The outputs asked for.
    pub formats: Vec<Format>,
    /// The PNG mask's size.
    pub mask_size: MaskSize,
    /// The PNG mask's values.
    pub mask_values: MaskValues,
    /// GeoJSON's smallest region.
    pub min_area: f64,
    /// What a corrupt stored tile does.
    pub bad_tiles: BadTiles,
    /// The model's precision.
    pub precision: Precision,
    /// The decision threshold, when set.
    pub threshold: Option<f64>,
    /// How labels are decided.
    pub decision: String,
    /// Test-time augmentation.
    pub tta: Tta,
    /// Every model averaged: SHA-256 and weight (one when alone).
    pub members: Vec<(String, f64)>,
    /// Tiles per batch.
    pub batch: usize,
    /// Reader threads.
    pub readers: usize,
    /// The devices' names.
    pub devices: Vec<String>,
    /// Where stored JPEG tiles are decoded.
    pub decode: Decode,
}

impl Engine {
    /// The settings of a run of `request` on this engine (an impossible
    /// tile or overlap is an error).
    pub fn settings(&self, request: &Request) -> Result<Settings, EngineError> {
        let (tile, overlap) = self.check(request)?;
        Ok(Settings {
            level: request.level,
            mpp: request.mpp,
            slide_mpp: request.slide_mpp,
            tile,
            overlap,
            tissue: request.tissue,
            reader: request.reader,
            formats: request.formats.clone(),
            mask_size: request.mask_size,
            mask_values: request.mask_values,
            min_area: request.min_area,
            bad_tiles: request.bad_tiles,
            precision: self.precision(),
            threshold: self.threshold(),
            decision: self.decision(),
            tta: self.tta(),
            members: self
                .members()
                .iter()
                .map(|m| (m.sha256.clone(), m.weight))
                .collect(),
            batch: self.batch(),
            readers: self.readers(),
            devices: self.device_names(),
            decode: self.decode(),
        })
    }
}

impl Settings {
    /// The settings that decide the pixels, by name, for the run record's
    /// fingerprint. Those added since the first records are named only
    /// when not the default, so that records of earlier runs still match.
    pub fn fingerprint(&self) -> BTreeMap<String, Value> {
        let Settings {
            level,
            mpp,
            slide_mpp,
            tile,
            overlap,
            tissue,
            reader,
            formats: _,
            mask_size,
            mask_values,
            min_area,
            bad_tiles,
            precision,
            threshold,
            decision: _, // follows from the model and the threshold
            tta,
            members,
            // How fast, not what: batches, threads and devices give the
            // same pixels.
            batch: _,
            readers: _,
            devices: _,
            // nvJPEG's pixels are within JPEG's own error of the host
            // decoder's (the masks agree on ≥ 99.9% of pixels, as devices'
            // arithmetic does): like the device, not part of the record.
            decode: _,
        } = self;
        let (tissue, tissue_threshold) = match tissue {
            TissuePolicy::Detect(t) => ("detect", *t),
            TissuePolicy::All => ("all", None),
        };
        let mut settings = vec![
            ("level", json!(level)),
            ("mpp", json!(mpp)),
            ("tile", json!(tile)),
            ("overlap", json!(overlap)),
            ("precision", json!(precision.to_string())),
            ("tissue", json!(tissue)),
            ("tissue_threshold", json!(tissue_threshold)),
            ("reader", json!(reader.name())),
            ("mask_size", mask_size_json(*mask_size)),
            ("mask_values", json!(mask_values.name())),
            ("min_area", json!(min_area)),
        ];
        if let Some(t) = threshold {
            settings.push(("threshold", json!(t)));
        }
        if let Some(m) = slide_mpp {
            settings.push(("slide_mpp", json!(m)));
        }
        if *bad_tiles != BadTiles::default() {
            settings.push(("bad_tiles", json!(bad_tiles.name())));
        }
        if *tta != Tta::None {
            settings.push(("tta", json!(tta.to_string())));
        }
        if members.len() > 1 {
            let members: Vec<String> = members
                .iter()
                .map(|(sha256, weight)| format!("{sha256} × {weight}"))
                .collect();
            settings.push(("ensemble", json!(members)));
        }
        settings
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// The report's parameters: every setting, with what the plan resolved.
    pub fn parameters(&self, plan: &SlidePlan) -> Parameters {
        let Settings {
            level,
            mpp,
            slide_mpp,
            tile,
            overlap,
            tissue,
            reader,
            formats,
            mask_size,
            mask_values,
            min_area,
            bad_tiles,
            precision,
            threshold,
            decision,
            tta,
            members: _, // the report's model section lists them
            batch,
            readers,
            devices,
            decode,
        } = self;
        let (mask_level, mask_mpp) = match *mask_size {
            MaskSize::Working => (None, None),
            MaskSize::Level(l) => (Some(l), None),
            MaskSize::Mpp(m) => (None, Some(m)),
        };
        Parameters {
            tile: *tile,
            overlap: *overlap,
            batch: *batch,
            device: devices.join(","),
            precision: precision.to_string(),
            threshold: *threshold,
            decision: decision.clone(),
            tta: tta.to_string(),
            readers: *readers,
            reader: reader.name().to_string(),
            level: *level,
            mpp: *mpp,
            slide_mpp: *slide_mpp,
            bad_tiles: bad_tiles.name().to_string(),
            decode: decode.name().to_string(),
            formats: formats
                .iter()
                .filter(|&&f| f != Format::PROB)
                .map(|f| f.name().to_string())
                .collect(),
            probabilities: formats.contains(&Format::PROB),
            mask_level,
            mask_mpp,
            mask_values: mask_values.name().to_string(),
            png_mask_size: Dimensions {
                width: plan.png_size.w,
                height: plan.png_size.h,
            },
            min_area: *min_area,
            tissue_mask: *tissue != TissuePolicy::All,
            tissue_threshold: plan.tissue.as_ref().map(|t| t.threshold),
        }
    }
}

fn mask_size_json(s: MaskSize) -> Value {
    match s {
        MaskSize::Working => json!("working"),
        MaskSize::Level(l) => json!({ "level": l }),
        MaskSize::Mpp(m) => json!({ "mpp": m }),
    }
}
