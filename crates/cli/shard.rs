//! Sharding a folder's slides over the tasks of a cluster job: `--shard I/N`,
//! or Slurm's `SLURM_ARRAY_TASK_ID` (with `_MIN` and `_MAX` or `_COUNT`), or
//! Kubernetes' `JOB_COMPLETION_INDEX` with `--shard-count N`.
//!
//! A slide belongs to shard `hash(its path relative to the input) mod N`
//! (64-bit FNV-1a of the UTF-8 path). Why a hash and not "every N-th of the
//! sorted list": a slide's shard then depends on its own name only, so
//! adding or removing slides between a job's submissions never moves the
//! others — a resumed array job finds each slide's outputs in the shard that
//! made them. Shards are not exactly equal in size (a few slides apart).

use std::path::Path;

use crate::inputs::SlideInput;

use anyhow::{bail, Result};

/// One task's share of the slides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// 0-based.
    pub index: u32,
    /// How many shards there are.
    pub count: u32,
    /// Where the numbers came from, for the log.
    pub source: String,
}

impl Shard {
    /// `summary.shard-I-of-N`: the stem of this shard's summary files.
    pub fn summary_stem(&self) -> String {
        format!("summary.shard-{}-of-{}", self.index, self.count)
    }

    /// Whether the slide at `relative` (to the input folder) is this shard's.
    pub fn owns(&self, relative: &Path) -> bool {
        assign(relative, self.count) == self.index
    }
}

/// The shard of the slide at `relative`, of `count`.
pub fn assign(relative: &Path, count: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in relative.to_string_lossy().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(count.max(1))) as u32
}

/// `--shard I/N` (I from 0 to N−1).
pub fn parse(s: &str) -> Result<Shard, String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: write I/N, e.g. 0/4 (shards 0 to N-1)"))?;
    let i: u32 = i
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: I must be a whole number"))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: N must be a whole number"))?;
    if n == 0 || i >= n {
        return Err(format!(
            "{s:?}: I must be 0 to N-1 and N at least 1 (shard {i} of {n} does not exist)"
        ));
    }
    Ok(Shard {
        index: i,
        count: n,
        source: format!("--shard {s}"),
    })
}

/// The shard this process is, from `--shard`, else from the scheduler's
/// environment (`env` reads a variable); `None` when there is none.
pub fn resolve(
    given: Option<&Shard>,
    shard_count: Option<u32>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Shard>> {
    if let Some(s) = given {
        return Ok(Some(s.clone()));
    }
    let num = |name: &str| -> Result<Option<u32>> {
        match env(name) {
            None => Ok(None),
            Some(v) => match v.trim().parse() {
                Ok(n) => Ok(Some(n)),
                Err(_) => bail!("{name}={v:?} is not a whole number"),
            },
        }
    };
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let count = match (shard_count, num("SLURM_ARRAY_TASK_MAX")?, num("SLURM_ARRAY_TASK_COUNT")?) {
            (Some(n), _, _) => n,
            (None, Some(max), _) if max >= min => max - min + 1,
            (None, _, Some(c)) => c,
            _ => bail!(
                "SLURM_ARRAY_TASK_ID={id} but neither SLURM_ARRAY_TASK_MAX nor SLURM_ARRAY_TASK_COUNT says how many tasks: give --shard-count N"
            ),
        };
        if id < min || id - min >= count || count == 0 {
            bail!("SLURM_ARRAY_TASK_ID={id} is outside the array's {count} task(s) from {min}: give --shard I/N");
        }
        return Ok(Some(Shard {
            index: id - min,
            count,
            source: format!(
                "SLURM_ARRAY_TASK_ID={id} (tasks {min} to {})",
                min + count - 1
            ),
        }));
    }
    if let Some(index) = num("JOB_COMPLETION_INDEX")? {
        let Some(count) = shard_count else {
            bail!("JOB_COMPLETION_INDEX={index} (a Kubernetes Indexed Job): give --shard-count N, the job's completions");
        };
        if index >= count {
            bail!("JOB_COMPLETION_INDEX={index} is not below --shard-count {count}");
        }
        return Ok(Some(Shard {
            index,
            count,
            source: format!("JOB_COMPLETION_INDEX={index} of --shard-count {count}"),
        }));
    }
    if shard_count.is_some() {
        bail!("--shard-count needs SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX in the environment (or use --shard I/N)");
    }
    Ok(None)
}

/// This shard's slides of `slides` (by their names under the input), in order.
pub fn select(slides: Vec<SlideInput>, shard: &Shard) -> Vec<SlideInput> {
    slides.into_iter().filter(|s| shard.owns(&s.name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// For any N ≤ 64 and any list, the shards are disjoint and cover it;
        /// adding a slide moves no other slide.
        #[test]
        fn shards_partition_and_are_stable(
            names in proptest::collection::btree_set("[a-z0-9_]{1,12}(/[a-z0-9_]{1,12})?\\.svs", 0..60),
            n in 1u32..=64,
            extra in "[a-z0-9_]{1,12}\\.tif",
        ) {
            let slide = |s: &str| SlideInput { path: Path::new("/in").join(s), name: s.into(), slide_mpp: None, listed: None };
            let slides: Vec<SlideInput> = names.iter().map(|s| slide(s)).collect();
            let mut seen = vec![0u32; slides.len()];
            for i in 0..n {
                let shard = Shard { index: i, count: n, source: String::new() };
                for s in select(slides.clone(), &shard) {
                    seen[slides.iter().position(|x| *x == s).unwrap()] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
            let before: Vec<u32> = slides.iter().map(|s| assign(&s.name, n)).collect();
            let mut more = slides.clone();
            more.push(slide(&extra));
            let after: Vec<u32> = more.iter().map(|s| assign(&s.name, n)).collect();
            prop_assert_eq!(&after[..slides.len()], &before[..]);
        }
    }

    #[test]
    fn the_shard_comes_from_the_flag_slurm_or_kubernetes() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let given = parse("1/4").unwrap();
        let r = resolve(Some(&given), None, env(&[("SLURM_ARRAY_TASK_ID", "3")])).unwrap();
        assert_eq!(r.unwrap().index, 1, "--shard wins");
        let r = resolve(
            None,
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "5"),
                ("SLURM_ARRAY_TASK_MIN", "4"),
                ("SLURM_ARRAY_TASK_MAX", "6"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.index, r.count), (1, 3));
        assert!(
            r.source.starts_with("SLURM_ARRAY_TASK_ID=5"),
            "{}",
            r.source
        );
        let r = resolve(
            None,
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.index, r.count), (2, 3));
        let r = resolve(None, Some(8), env(&[("JOB_COMPLETION_INDEX", "7")]))
            .unwrap()
            .unwrap();
        assert_eq!((r.index, r.count), (7, 8));
        assert!(resolve(None, None, env(&[("JOB_COMPLETION_INDEX", "7")])).is_err());
        assert!(resolve(None, None, env(&[("SLURM_ARRAY_TASK_ID", "2")])).is_err());
        assert!(resolve(None, Some(2), env(&[])).is_err());
        assert_eq!(resolve(None, None, env(&[])).unwrap(), None);
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
