//! Sharding a folder's slides over the tasks of a cluster job: a shard given
//! as `I/N`, or Slurm's `SLURM_ARRAY_TASK_ID` (with `_MIN` and `_MAX` or
//! `_COUNT`), or Kubernetes' `JOB_COMPLETION_INDEX` with a shard count.
//!
//! A slide belongs to shard `hash(its path relative to the input) mod N`
//! (64-bit FNV-1a of the UTF-8 path). Why a hash and not "every N-th of the
//! sorted list": a slide's shard then depends on its own name only, so
//! adding or removing slides between a job's submissions never moves the
//! others — a resumed array job finds each slide's outputs in the shard that
//! made them. Shards are not exactly equal in size (a few slides apart).

use std::path::Path;

use crate::SlideInput;

/// One task's share of the slides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// 0-based.
    pub index: u32,
    /// How many shards there are.
    pub count: u32,
    /// Where the numbers came from, for the log.
    pub source: ShardSource,
}

/// Where a shard's numbers came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardSource {
    /// Given as `I/N` (by a flag, an argument).
    Given(String),
    /// A Slurm array task: its id and the array's first and last.
    Slurm {
        /// `SLURM_ARRAY_TASK_ID`.
        id: u32,
        /// The first task's id.
        first: u32,
        /// The last task's id.
        last: u32,
    },
    /// A Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`, of the count given.
    Kubernetes {
        /// `JOB_COMPLETION_INDEX`.
        index: u32,
    },
}

/// A shard that cannot be: the syntax, or the scheduler's environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not `I/N` with 0 ≤ I < N.
    #[error("{given:?}: {problem}")]
    Syntax {
        /// What was given.
        given: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A scheduler variable that is not a number.
    #[error("{name}={value:?} is not a whole number")]
    NotNumber {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
    },
    /// A Slurm array task that does not say how many tasks there are.
    #[error("SLURM_ARRAY_TASK_ID={id} but neither SLURM_ARRAY_TASK_MAX nor SLURM_ARRAY_TASK_COUNT says how many tasks: give the shard count")]
    SlurmCount {
        /// The task.
        id: u32,
    },
    /// A Slurm array task outside its array.
    #[error("SLURM_ARRAY_TASK_ID={id} is outside the array's {count} task(s) from {first}: give the shard as I/N")]
    SlurmOutside {
        /// The task.
        id: u32,
        /// The array's tasks.
        count: u32,
        /// The first task's id.
        first: u32,
    },
    /// A Kubernetes index without the job's completions.
    #[error("JOB_COMPLETION_INDEX={index} (a Kubernetes Indexed Job): give the shard count, the job's completions")]
    KubernetesCount {
        /// The index.
        index: u32,
    },
    /// A Kubernetes index not below the count given.
    #[error("JOB_COMPLETION_INDEX={index} is not below the shard count {count}")]
    KubernetesOutside {
        /// The index.
        index: u32,
        /// The count given.
        count: u32,
    },
    /// A shard count with no scheduler to take the index from.
    #[error("a shard count needs SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX in the environment (or give the shard as I/N)")]
    CountWithoutIndex,
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

    /// This shard's slides of `slides` (by their names under the input), in order.
    pub fn select(&self, slides: Vec<SlideInput>) -> Vec<SlideInput> {
        slides.into_iter().filter(|s| self.owns(&s.name)).collect()
    }

    /// The shard the scheduler's environment makes this process (`env`
    /// reads a variable): a Slurm array task, or a Kubernetes Indexed Job's
    /// index of `count` (which a Slurm array may also give); `None` when
    /// there is none.
    pub fn from_environment(
        count: Option<u32>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Shard>, ShardError> {
        let num = |name: &str| -> Result<Option<u32>, ShardError> {
            match env(name) {
                None => Ok(None),
                Some(v) => match v.trim().parse() {
                    Ok(n) => Ok(Some(n)),
                    Err(_) => Err(ShardError::NotNumber {
                        name: name.to_string(),
                        value: v,
                    }),
                },
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let tasks = match (
                count,
                num("SLURM_ARRAY_TASK_MAX")?,
                num("SLURM_ARRAY_TASK_COUNT")?,
            ) {
                (Some(n), _, _) => n,
                (None, Some(max), _) if max >= min => max - min + 1,
                (None, _, Some(c)) => c,
                _ => return Err(ShardError::SlurmCount { id }),
            };
            if id < min || id - min >= tasks || tasks == 0 {
                return Err(ShardError::SlurmOutside {
                    id,
                    count: tasks,
                    first: min,
                });
            }
            return Ok(Some(Shard {
                index: id - min,
                count: tasks,
                source: ShardSource::Slurm {
                    id,
                    first: min,
                    last: min + tasks - 1,
                },
            }));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let Some(count) = count else {
                return Err(ShardError::KubernetesCount { index });
            };
            if index >= count {
                return Err(ShardError::KubernetesOutside { index, count });
            }
            return Ok(Some(Shard {
                index,
                count,
                source: ShardSource::Kubernetes { index },
            }));
        }
        if count.is_some() {
            return Err(ShardError::CountWithoutIndex);
        }
        Ok(None)
    }
}

impl std::str::FromStr for Shard {
    type Err = ShardError;

    /// `I/N` (I from 0 to N−1).
    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let bad = |problem: String| ShardError::Syntax {
            given: s.to_string(),
            problem,
        };
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| bad("write I/N, e.g. 0/4 (shards 0 to N-1)".into()))?;
        let i: u32 = i
            .trim()
            .parse()
            .map_err(|_| bad("I must be a whole number".into()))?;
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| bad("N must be a whole number".into()))?;
        if n == 0 || i >= n {
            return Err(bad(format!(
                "I must be 0 to N-1 and N at least 1 (shard {i} of {n} does not exist)"
            )));
        }
        Ok(Shard {
            index: i,
            count: n,
            source: ShardSource::Given(s.to_string()),
        })
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
            let slide = |s: &str| SlideInput::new(Path::new("/in").join(s), s);
            let slides: Vec<SlideInput> = names.iter().map(|s| slide(s)).collect();
            let mut seen = vec![0u32; slides.len()];
            for i in 0..n {
                let shard = Shard { index: i, count: n, source: ShardSource::Given(String::new()) };
                for s in shard.select(slides.clone()) {
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
    fn the_shard_comes_from_slurm_or_kubernetes() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let r = Shard::from_environment(
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
        assert_eq!(
            r.source,
            ShardSource::Slurm {
                id: 5,
                first: 4,
                last: 6
            }
        );
        let r = Shard::from_environment(
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.index, r.count), (2, 3));
        let r = Shard::from_environment(Some(8), env(&[("JOB_COMPLETION_INDEX", "7")]))
            .unwrap()
            .unwrap();
        assert_eq!((r.index, r.count), (7, 8));
        let e = |count, vars| Shard::from_environment(count, env(vars)).unwrap_err();
        assert_eq!(
            e(None, &[("JOB_COMPLETION_INDEX", "7")]),
            ShardError::KubernetesCount { index: 7 }
        );
        assert_eq!(
            e(None, &[("SLURM_ARRAY_TASK_ID", "2")]),
            ShardError::SlurmCount { id: 2 }
        );
        assert_eq!(e(Some(2), &[]), ShardError::CountWithoutIndex);
        assert!(matches!(
            e(None, &[("SLURM_ARRAY_TASK_ID", "x")]),
            ShardError::NotNumber { .. }
        ));
        assert_eq!(Shard::from_environment(None, env(&[])).unwrap(), None);
        assert_eq!("1/4".parse::<Shard>().unwrap().index, 1);
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
