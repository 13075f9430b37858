//! Segments one slide with the library crates alone, the simplest way:
//! open the slide, choose the model's resolution, tile it, run each tile,
//! stitch the tile centres into a PNG label mask. (The `wsiseg` binary does
//! the same with reader threads, batches in flight and a stitcher thread.)
//!
//! ```sh
//! cargo run --release --example segment_slide -- tests/data/default.svs models/unet mask.png
//! ```

use std::path::PathBuf;

use wsiseg_infer::{DeviceChoice, Precision, Segmenter};
use wsiseg_slide::{Resolution, TilePlan, WorkingLevel};
use wsiseg_stitch::{PngMaskWriter, Stitcher};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [slide, model, out] = args.as_slice() else {
        return Err("usage: segment_slide SLIDE MODEL OUT.png".into());
    };
    let device = DeviceChoice::Auto.resolve()?;
    let model = Segmenter::load(model, device, Precision::default_for(device))?;
    let slide = wsiseg_slide::open(slide)?;
    let resolution = match (model.manifest().mpp, slide.mpp()) {
        (Some(mpp), Some(_)) => Resolution::Mpp(mpp),
        _ => Resolution::Level(0),
    };
    let working = WorkingLevel::choose(slide.as_ref(), resolution)?;
    let tile = model.manifest().tile;
    let plan = TilePlan::new(working.size, tile, tile / 8)?;
    let mut stitcher = Stitcher::new(plan, PngMaskWriter::create(out, working.size)?);
    let mut labels = vec![0u8; (tile * tile) as usize];
    for t in plan.tiles() {
        let rgb = working.read(slide.as_ref(), t.rect)?;
        model.segment(rgb.as_raw(), 1, tile, &mut labels, None)?;
        stitcher.add(t.index, &labels)?;
    }
    let written = stitcher.finish()?.commit()?;
    println!(
        "{}: {} tiles → {} ({}×{})",
        slide.path().display(),
        plan.len(),
        written.display(),
        working.size.w,
        working.size.h
    );
    Ok(())
}
