//! What every run measures on its mask as it streams past, whatever the
//! formats: the connected tumor regions, and the histogram of P(tumor)
//! when the probability maps are made anyway. Writes no file: the engine
//! hands what it measured to the report, the run record and the summary.

use super::{Finished, MaskOutput, SlideResult};
use crate::EngineError;

/// Measures the mask; always runs, finished before every output.
pub(crate) struct Statistics {
    /// The working level's width (rows arrive whole).
    width: usize,
    /// Whether another output makes the probability maps anyway (the
    /// overlay's heat map, the probability TIFFs, a caller's): only then
    /// are they histogrammed, so that a run without them keeps its memory
    /// and time.
    probabilities: bool,
    regions: wsiseg_eval::RegionCounter,
    /// Working-level pixels per P(tumor) × 255.
    probability: Option<Box<[u64; 256]>>,
}

impl Statistics {
    /// `probabilities`: whether the probability rows stream anyway.
    pub(crate) fn new(ctx: &super::OutputContext, probabilities: bool) -> Self {
        Self {
            width: ctx.plan.working.size.w as usize,
            probabilities,
            regions: wsiseg_eval::RegionCounter::default(),
            probability: None,
        }
    }
}

/// What was measured on the mask, for the report, the record and the summary.
#[derive(Debug, Clone, Default)]
pub struct MaskStatistics {
    /// Every tumor region's area in working-level pixels, largest first.
    pub regions: Vec<u64>,
    /// Working-level pixels per P(tumor) × 255 (when the probability maps
    /// were made).
    pub probability: Option<Box<[u64; 256]>>,
}

impl MaskStatistics {
    /// Share of the working level whose P(tumor) is in [0.3, 0.7]: neither
    /// clearly tumor nor clearly not.
    pub fn uncertain_fraction(&self) -> Option<f64> {
        let h = self.probability.as_ref()?;
        let total: u64 = h.iter().sum();
        let uncertain: u64 = h[UNCERTAIN_FROM as usize..=UNCERTAIN_TO as usize]
            .iter()
            .sum();
        (total > 0).then(|| uncertain as f64 / total as f64)
    }
}

/// P × 255 of 0.3 and 0.7 (rounded inward).
const UNCERTAIN_FROM: u8 = 77;
const UNCERTAIN_TO: u8 = 178;

impl MaskOutput for Statistics {
    fn name(&self) -> &'static str {
        "statistics"
    }

    fn wants_probabilities(&self) -> bool {
        self.probabilities
    }

    fn label_rows(&mut self, rows: &[u8]) -> Result<(), EngineError> {
        for row in rows.chunks(self.width) {
            self.regions.push(row);
        }
        Ok(())
    }

    fn prob_rows(&mut self, class: usize, rows: &[u8]) -> Result<(), EngineError> {
        if class == 1 {
            let h = self.probability.get_or_insert_with(|| Box::new([0; 256]));
            super::count_values(&mut h[..], rows);
        }
        Ok(())
    }

    fn finish(self: Box<Self>, _: &SlideResult) -> Result<Finished, EngineError> {
        Ok(Finished {
            statistics: Some(MaskStatistics {
                regions: self.regions.finish(),
                probability: self.probability,
            }),
            ..Finished::default()
        })
    }
}
