//! Test-time augmentation: each batch also run flipped (and rotated), the
//! probabilities brought back and averaged, on the device.

use std::fmt;
use std::str::FromStr;

use tch::Tensor;

use crate::InferError;

/// Which transforms of each batch are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tta {
    /// The batch as it is.
    #[default]
    None,
    /// As it is and mirrored left–right: 2 passes.
    Flips,
    /// The 8 symmetries of the square (4 rotations, each also mirrored): 8 passes.
    Dihedral,
}

impl Tta {
    /// Model passes per batch.
    pub fn passes(self) -> usize {
        self.transforms().len()
    }

    /// (mirrored, quarter turns) of each pass.
    pub(crate) fn transforms(self) -> Vec<(bool, i64)> {
        match self {
            Tta::None => vec![(false, 0)],
            Tta::Flips => vec![(false, 0), (true, 0)],
            Tta::Dihedral => (0..4).flat_map(|k| [(false, k), (true, k)]).collect(),
        }
    }
}

/// `x` (`N×C×H×W`) mirrored left–right if asked, then turned `k` quarter turns.
pub(crate) fn apply(x: &Tensor, (mirror, k): (bool, i64)) -> Tensor {
    let x = if mirror {
        x.flip([3])
    } else {
        x.shallow_clone()
    };
    if k == 0 {
        x
    } else {
        x.rot90(k, [2, 3])
    }
}

/// Undoes [`apply`] on a result of the same layout.
pub(crate) fn invert(y: &Tensor, (mirror, k): (bool, i64)) -> Tensor {
    let y = if k == 0 {
        y.shallow_clone()
    } else {
        y.rot90(-k, [2, 3])
    };
    if mirror {
        y.flip([3])
    } else {
        y
    }
}

impl FromStr for Tta {
    type Err = InferError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Tta::None),
            "flips" | "flip" => Ok(Tta::Flips),
            "dihedral" | "d4" => Ok(Tta::Dihedral),
            _ => Err(InferError::TtaSyntax {
                given: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for Tta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tta::None => "none",
            Tta::Flips => "flips",
            Tta::Dihedral => "dihedral",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every transform is undone exactly, and the eight are distinct.
    #[test]
    fn each_transform_is_inverted() {
        let x =
            Tensor::arange(2 * 3 * 4 * 4, (tch::Kind::Float, tch::Device::Cpu)).view([2, 3, 4, 4]);
        let mut seen = Vec::new();
        for t in Tta::Dihedral.transforms() {
            let y = apply(&x, t);
            assert!(invert(&y, t).equal(&x), "{t:?}");
            assert!(!seen.iter().any(|s: &Tensor| s.equal(&y)), "{t:?} repeats");
            seen.push(y);
        }
        assert_eq!(Tta::None.passes(), 1);
        assert_eq!(Tta::Flips.passes(), 2);
        assert_eq!(Tta::Dihedral.passes(), 8);
    }
}
