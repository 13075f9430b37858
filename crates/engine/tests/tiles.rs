//! TileStream: a plan's tiles read by background threads, in plan order,
//! each the pixels the working level gives; dropped midway, it stops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wsiseg_engine::{plan_tiles, TileStream, TissuePolicy};
use wsiseg_slide::{Resolution, Slide};

fn slide() -> Arc<dyn Slide> {
    Arc::from(wsiseg_slide::open("../../tests/data/default.svs".as_ref()).unwrap())
}

#[test]
fn tiles_come_in_plan_order_with_the_working_levels_pixels() {
    let slide = slide();
    for (threads, tissue) in [(1, TissuePolicy::All), (3, TissuePolicy::Detect(None))] {
        let plan =
            plan_tiles(slide.as_ref(), Resolution::Mpp(1.0), 128, 16, tissue, false).unwrap();
        let expected: Vec<_> = plan
            .tiles
            .tiles()
            .zip(&plan.run)
            .filter(|(_, &r)| r)
            .map(|(t, _)| t)
            .collect();
        let stream = TileStream::new(slide.clone(), &plan, threads);
        assert_eq!(stream.len(), expected.len());
        let got: Vec<_> = stream.map(Result::unwrap).collect();
        assert_eq!(got.len(), expected.len());
        for (k, (read, tile)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(read.k, k);
            assert_eq!(read.tile.rect, tile.rect);
            if k % 7 == 0 {
                let direct = plan.working.read(slide.as_ref(), tile.rect).unwrap();
                assert_eq!(read.rgb, direct, "tile {k}");
            }
        }
        if let TissuePolicy::Detect(_) = tissue {
            assert!(
                expected.len() < plan.tiles.len(),
                "tissue detection ran every tile"
            );
        }
    }
}

#[test]
fn a_stream_dropped_midway_stops_its_threads() {
    let slide = slide();
    let plan = plan_tiles(
        slide.as_ref(),
        Resolution::Level(0),
        64,
        0,
        TissuePolicy::All,
        false,
    )
    .unwrap();
    let mut stream = TileStream::new(slide, &plan, 4);
    assert!(stream.len() > 1000);
    for _ in 0..3 {
        stream.next().unwrap().unwrap();
    }
    let started = Instant::now();
    drop(stream);
    assert!(started.elapsed() < Duration::from_secs(10));
}
