//! NAME.prob.tiff: the tumor probability (0–255) as a pyramidal BigTIFF,
//! averaged from level to level; a model with more than two classes also
//! gets NAME.prob-CLASS.tiff for each other class but background.
//!
//! One file per class rather than one multi-sample TIFF: QuPath, ASAP and
//! OpenSlide show a one-channel 8-bit pyramid directly (as a grey image or
//! an overlay), while a TIFF with 2 or 4+ samples per pixel is refused by
//! OpenSlide and shown oddly by the others.

use wsiseg_write::{PyramidOptions, PyramidWriter, Reduce, Staged};

use super::{boxed, Finished, FormatSpec, MaskOutput, OutputContext, SlideResult};
use crate::EngineError;

/// The format: NAME.prob.tiff (and NAME.prob-CLASS.tiff for every class
/// past tumor).
pub(super) const SPEC: FormatSpec = FormatSpec {
    name: "prob",
    files: |paths| {
        (1..paths.classes.len().max(2))
            .map(|class| paths.probability(class))
            .collect()
    },
    create: |ctx| boxed(ProbTiff::create(ctx)?),
};

/// One writer per class from class 1 on.
pub(super) struct ProbTiff(Vec<PyramidWriter>);

impl ProbTiff {
    pub(super) fn create(ctx: &OutputContext) -> Result<Self, EngineError> {
        let working = &ctx.plan.working;
        let writers = (1..ctx.classes.len().max(2))
            .map(|class| {
                let name = ctx.classes.get(class).map_or("tumor", String::as_str);
                PyramidWriter::create_limited(
                    &ctx.paths.probability(class),
                    working.size,
                    PyramidOptions {
                        reduce: Reduce::Average,
                        description: Some(ctx.description(&if class == 1 {
                            "tumor probability map (0-255)".to_string()
                        } else {
                            format!("{name} probability map (0-255)")
                        })),
                        ..PyramidOptions::label_mask(working.mpp, None)
                    },
                    ctx.limit,
                )
                .map_err(EngineError::from)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(writers))
    }
}

impl MaskOutput for ProbTiff {
    fn wants_probabilities(&self) -> bool {
        true
    }

    fn prob_rows(&mut self, class: usize, rows: &[u8]) -> Result<(), EngineError> {
        Ok(self.0[class - 1].push_rows(rows)?)
    }

    fn finish(self: Box<Self>, _: &SlideResult) -> Result<Finished, EngineError> {
        let staged: Result<Vec<Staged>, EngineError> =
            self.0.into_iter().map(|w| Ok(w.finish_staged()?)).collect();
        Ok(staged?.into())
    }
}
