//! NAME.prob.tiff: the tumor probability (0–255) as a pyramidal BigTIFF,
//! averaged from level to level.

use wsiseg_write::{PyramidOptions, PyramidWriter, Reduce, Staged};

use super::{MaskOutput, OutputContext, SlideResult};
use crate::EngineError;

pub(super) struct ProbTiff(PyramidWriter);

impl ProbTiff {
    pub(super) fn create(ctx: &OutputContext) -> Result<Self, EngineError> {
        let working = &ctx.plan.working;
        Ok(Self(PyramidWriter::create_limited(
            &ctx.paths.file("prob.tiff"),
            working.size,
            PyramidOptions {
                reduce: Reduce::Average,
                description: Some(ctx.description("tumor probability map (0-255)")),
                ..PyramidOptions::label_mask(working.mpp, None)
            },
            ctx.limit,
        )?))
    }
}

impl MaskOutput for ProbTiff {
    fn wants_probabilities(&self) -> bool {
        true
    }

    fn prob_rows(&mut self, rows: &[u8]) -> Result<(), EngineError> {
        Ok(self.0.push_rows(rows)?)
    }

    fn finish(self: Box<Self>, _: &mut SlideResult) -> Result<Vec<Staged>, EngineError> {
        Ok(vec![self.0.finish_staged()?])
    }
}
