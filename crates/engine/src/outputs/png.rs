//! NAME.mask.png: the label mask as 8-bit grey, at the working level or
//! resampled (nearest) to the size the request asks for.

use wsiseg_stitch::{NearestRows, RowSink};
use wsiseg_write::PngMaskWriter;

use super::{boxed, Finished, FormatSpec, MaskOutput, OutputContext, SlideResult};
use crate::{EngineError, MaskValues};

/// The PNG writer as a row sink.
struct Rows(PngMaskWriter);

impl RowSink for Rows {
    type Error = EngineError;
    fn write_rows(&mut self, rows: &[u8]) -> Result<(), EngineError> {
        Ok(self.0.write_rows(rows)?)
    }
}

enum Writer {
    Working(Rows),
    Resampled(NearestRows<Rows>),
}

/// The format: NAME.mask.png.
pub(super) const SPEC: FormatSpec = FormatSpec {
    name: "png",
    files: |paths| vec![paths.file("mask.png")],
    create: |ctx| boxed(PngMask::create(ctx)?),
};

pub(super) struct PngMask {
    writer: Writer,
    values: MaskValues,
    scratch: Vec<u8>,
}

impl PngMask {
    pub(super) fn create(ctx: &OutputContext) -> Result<Self, EngineError> {
        let size = ctx.plan.png_size;
        let working = ctx.plan.working.size;
        let path = ctx.paths.file("mask.png");
        let png = Rows(PngMaskWriter::create_limited(&path, size, ctx.limit)?);
        Ok(Self {
            writer: if size == working {
                Writer::Working(png)
            } else {
                Writer::Resampled(NearestRows::new(png, working, size))
            },
            values: ctx.request.mask_values,
            scratch: Vec::new(),
        })
    }
}

impl MaskOutput for PngMask {
    fn label_rows(&mut self, rows: &[u8]) -> Result<(), EngineError> {
        let rows = match self.values {
            MaskValues::ClassIndex => rows,
            MaskValues::Binary255 => {
                self.scratch.clear();
                self.scratch
                    .extend(rows.iter().map(|&v| if v > 0 { 255 } else { 0 }));
                &self.scratch
            }
        };
        match &mut self.writer {
            Writer::Working(w) => w.write_rows(rows),
            Writer::Resampled(r) => r.write_rows(rows),
        }
    }

    fn finish(self: Box<Self>, _: &SlideResult) -> Result<Finished, EngineError> {
        let png = match self.writer {
            Writer::Working(w) => w,
            Writer::Resampled(r) => r.into_inner(),
        };
        Ok(vec![png.0.finish_staged()?].into())
    }
}
