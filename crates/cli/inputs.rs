//! The engine's inputs (slide files, folders, patterns, lists) and shards,
//! found and told in the command line's words: what each input held, and
//! errors naming `--recursive`, `--shard` and `--shard-count`.

use std::path::PathBuf;

use anyhow::Result;
use wsiseg_engine::{InputError, Inputs, Shard, ShardError, ShardSource, SlideInput};

/// How to search subfolders, on the command line.
const DESCEND: &str = "--recursive to descend";

/// The slides of `inputs` ([`wsiseg_engine::collect_inputs`]), with a line
/// for what each folder, pattern or list held.
pub fn collect(inputs: &[PathBuf], recursive: bool) -> Result<Inputs> {
    let found = wsiseg_engine::collect_inputs(inputs, recursive).map_err(|e| match e {
        InputError::NoSlides {
            input,
            kind,
            ignored,
        } => anyhow::anyhow!(
            "{}: no slides in this {kind} (looked for {}{})",
            input.display(),
            wsiseg_slide::SLIDE_EXTENSIONS.join(", "),
            ignored.describe(DESCEND).replacen(", ", "; ", 1)
        ),
        InputError::ListedFolder { list, entry } => anyhow::anyhow!(
            "{}: {} is a folder; a list names slide files (give the folder itself, with --recursive, instead)",
            list.display(),
            entry.display()
        ),
        other => other.into(),
    })?;
    for f in &found.found {
        if !f.kind.is_empty() {
            tracing::info!(
                "{}: {} slide(s){}",
                f.input.display(),
                f.slides,
                f.ignored.describe(DESCEND)
            );
        }
        for path in &f.repeated {
            tracing::info!("{}: given more than once, segmented once", path.display());
        }
    }
    Ok(found)
}

/// The shard this process is: `--shard`, else the scheduler's environment
/// (with `--shard-count`); `None` when there is none.
pub fn shard(given: Option<&Shard>, count: Option<u32>) -> Result<Option<Shard>> {
    if let Some(s) = given {
        return Ok(Some(s.clone()));
    }
    Shard::from_environment(count, |k| std::env::var(k).ok()).map_err(|e| {
        anyhow::anyhow!(match e {
            ShardError::SlurmCount { id } => format!(
                "SLURM_ARRAY_TASK_ID={id} but neither SLURM_ARRAY_TASK_MAX nor SLURM_ARRAY_TASK_COUNT says how many tasks: give --shard-count N"
            ),
            ShardError::SlurmOutside { id, count, first } => format!(
                "SLURM_ARRAY_TASK_ID={id} is outside the array's {count} task(s) from {first}: give --shard I/N"
            ),
            ShardError::KubernetesCount { index } => format!(
                "JOB_COMPLETION_INDEX={index} (a Kubernetes Indexed Job): give --shard-count N, the job's completions"
            ),
            ShardError::KubernetesOutside { index, count } => {
                format!("JOB_COMPLETION_INDEX={index} is not below --shard-count {count}")
            }
            ShardError::CountWithoutIndex => "--shard-count needs SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX in the environment (or use --shard I/N)".to_string(),
            other => other.to_string(),
        })
    })
}

/// Where the shard's numbers came from, for the log.
pub fn source(shard: &Shard) -> String {
    match &shard.source {
        ShardSource::Given(s) => format!("--shard {s}"),
        ShardSource::Slurm { id, first, last } => {
            format!("SLURM_ARRAY_TASK_ID={id} (tasks {first} to {last})")
        }
        ShardSource::Kubernetes { index } => {
            format!(
                "JOB_COMPLETION_INDEX={index} of --shard-count {}",
                shard.count
            )
        }
    }
}

/// This shard's slides, when the run is one, and the shard.
pub fn shard_slides(
    given: Option<&Shard>,
    count: Option<u32>,
    slides: Vec<SlideInput>,
) -> Result<(Vec<SlideInput>, Option<Shard>)> {
    let Some(shard) = shard(given, count)? else {
        return Ok((slides, None));
    };
    let all = slides.len();
    let mine = shard.select(slides);
    tracing::info!(
        "shard {} of {} (0 to {}; from {}): {} of the {all} slide(s)",
        shard.index,
        shard.count,
        shard.count - 1,
        source(&shard),
        mine.len()
    );
    Ok((mine, Some(shard)))
}
