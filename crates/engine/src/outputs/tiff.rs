//! NAME.mask.tiff: the label mask as a pyramidal BigTIFF (Deflate tiles,
//! nearest-neighbour levels) that OpenSlide, QuPath and ASAP open, as a
//! palette image: the values are the labels, and viewers show each class in
//! its colour (the manifest's, or [`super::CLASS_COLOURS`]) rather than as
//! near-black greys.

use wsiseg_write::{PyramidOptions, PyramidWriter};

use super::{boxed, Finished, FormatSpec, MaskOutput, OutputContext, SlideResult};
use crate::EngineError;

/// The format: NAME.mask.tiff.
pub(super) const SPEC: FormatSpec = FormatSpec {
    name: "tiff",
    files: |paths| vec![paths.file("mask.tiff")],
    create: |ctx| boxed(TiffMask::create(ctx)?),
};

pub(super) struct TiffMask(PyramidWriter);

impl TiffMask {
    pub(super) fn create(ctx: &OutputContext) -> Result<Self, EngineError> {
        let working = &ctx.plan.working;
        let mut writer = PyramidWriter::create_limited(
            &ctx.paths.file("mask.tiff"),
            working.size,
            PyramidOptions::label_mask(working.mpp, Some(ctx.description("tumor mask"))),
            ctx.limit,
        )?;
        // Labels stay the stored values; viewers show them in colour.
        writer.set_palette(ctx.colours);
        Ok(Self(writer))
    }
}

impl MaskOutput for TiffMask {
    fn label_rows(&mut self, rows: &[u8]) -> Result<(), EngineError> {
        Ok(self.0.push_rows(rows)?)
    }

    fn finish(self: Box<Self>, _: &SlideResult) -> Result<Finished, EngineError> {
        Ok(vec![self.0.finish_staged()?].into())
    }
}
