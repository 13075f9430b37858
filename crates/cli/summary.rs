//! `wsiseg summary OUT [--input IN…]`: the folder's merged summary (every
//! slide's result, from its run record; the failures the runs and shards
//! recorded; with `--input`, the slides with no result yet) into
//! summary.json / summary.csv, and the page.

use std::collections::HashSet;

use anyhow::{bail, Result};
use wsiseg_engine::{Standing, SummaryRow};

use crate::args::SummaryArgs;

/// Slides named one per line before "… and N more".
const LISTED: usize = 20;

/// Writes the merged summary and the page; whether every slide is done.
pub fn run(args: &SummaryArgs) -> Result<bool> {
    let out = &args.out;
    if !out.is_dir() {
        bail!("{}: no such folder", out.display());
    }
    let mut rows = wsiseg_engine::merge_summary(out, Vec::new());
    if !args.input.is_empty() {
        let inputs = crate::inputs::collect(&args.input, args.recursive)?;
        let known: HashSet<_> = rows.iter().map(|r| r.slide.clone()).collect();
        let names: HashSet<_> = rows.iter().map(|r| r.name.clone()).collect();
        for s in &inputs.slides {
            let missing = SummaryRow::missing(&s.path, &s.name);
            // The same file, or (moved since) the same output name.
            if !known.contains(&missing.slide) && !names.contains(&missing.name) {
                rows.push(missing);
            }
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.slide.cmp(&b.slide)));
    }
    if rows.is_empty() {
        bail!(
            "{}: no results of wsiseg here (no NAME.run.json, no summary) and no --input to list",
            out.display()
        );
    }
    wsiseg_engine::write_summary(out, &rows)?;
    // The page shows what summary.json says, missing slides included.
    let page = wsiseg_engine::write_index_of(out, &rows)?;
    let count = |s: Standing| rows.iter().filter(|r| r.status == s).count();
    let (done, failed, missing) = (
        count(Standing::Done),
        count(Standing::Failed),
        count(Standing::Missing),
    );
    for standing in [Standing::Failed, Standing::Missing] {
        let these: Vec<&SummaryRow> = rows.iter().filter(|r| r.status == standing).collect();
        for r in these.iter().take(LISTED) {
            match &r.error {
                Some(e) => eprintln!("{}: {}: {e}", standing.name(), r.slide.display()),
                None => eprintln!("{}: {}", standing.name(), r.slide.display()),
            }
        }
        if these.len() > LISTED {
            eprintln!(
                "… and {} more {} (all in summary.csv)",
                these.len() - LISTED,
                standing.name()
            );
        }
    }
    tracing::info!(
        "{}: {} slide(s): {done} done, {failed} failed, {missing} missing → {}, {}, {}",
        out.display(),
        rows.len(),
        out.join("summary.json").display(),
        out.join("summary.csv").display(),
        page.display()
    );
    if failed + missing > 0 {
        eprintln!(
            "error: {}: {failed} slide(s) failed and {missing} have no result yet; run the same segment command again to finish them",
            out.display()
        );
    }
    Ok(failed + missing == 0)
}
