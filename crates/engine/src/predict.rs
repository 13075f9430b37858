//! Tiles given by the caller, run through the engine's model: what a
//! notebook or a validation loop calls on tiles it already has.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::setting;
use crate::{Engine, EngineError, Setting};

/// What [`Engine::predict`] gives for `n` tiles of `side`² pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Tiles.
    pub n: usize,
    /// Their side, pixels.
    pub side: u32,
    /// Each pixel's class, `n×side×side`, as a slide run decides it
    /// (threshold or arg-max, TTA, the ensemble's average).
    pub labels: Vec<u8>,
    /// When asked: per tile, one `side×side` plane per class from class 1
    /// on (a binary model: P(tumor)), probabilities scaled to 0–255.
    pub probabilities: Option<Vec<u8>>,
    /// Planes per tile in `probabilities`.
    pub planes: usize,
}

impl Engine {
    /// Runs `n` RGB tiles (`n×side×side×3` bytes, row-major, RGB; `side`
    /// as [`Engine::check_tile`] allows) through the model of the first
    /// worker, `batch` tiles per call, with the normalisation, TTA,
    /// ensemble and NaN guard of a slide run. Setting
    /// `cancel` stops it between batches ([`EngineError::Cancelled`]).
    pub fn predict(
        &self,
        tiles: &[u8],
        n: usize,
        side: u32,
        probabilities: bool,
        cancel: &AtomicBool,
    ) -> Result<Prediction, EngineError> {
        self.check_tile(side)?;
        let px = (side as usize) * (side as usize);
        if tiles.len() != n * px * 3 {
            return Err(setting(
                Setting::Tile,
                side,
                &format!(
                    "{} bytes are not {n} RGB tiles of {side}×{side} px",
                    tiles.len()
                ),
            ));
        }
        let worker = self.loaded()?.workers[0]
            .lock()
            .map_err(|_| EngineError::Panicked("model"))?;
        worker.bind_thread();
        let planes = worker.probability_planes();
        let mut labels = vec![0u8; n * px];
        let mut probs = probabilities.then(|| vec![0u8; n * px * planes]);
        let step = self.batch.max(1);
        for start in (0..n).step_by(step) {
            if cancel.load(Ordering::SeqCst) {
                return Err(EngineError::Cancelled);
            }
            let k = step.min(n - start);
            let input = &tiles[start * px * 3..(start + k) * px * 3];
            let out = &mut labels[start * px..(start + k) * px];
            let prob = probs
                .as_mut()
                .map(|p| &mut p[start * px * planes..(start + k) * px * planes]);
            worker.segment(input, k, side, out, prob)?;
        }
        Ok(Prediction {
            n,
            side,
            labels,
            probabilities: probs,
            planes,
        })
    }
}
