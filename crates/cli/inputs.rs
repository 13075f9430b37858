//! What `wsiseg segment` (and `wsiseg summary --input`) take as input: slide
//! files, folders (`--recursive` descends), glob patterns, and list files
//! (`.txt`: a path a line; `.csv`: a `path` column and optional per-slide
//! columns such as `mpp`).
//!
//! Each slide gets a *name* relative to its input's root — the folder, the
//! glob's fixed prefix, or the list's folder — and its outputs go to that
//! name's subfolder of `--out`, so `a/x.svs` and `b/x.svs` never collide. The
//! same name chooses the slide's shard. The order is sorted and
//! deterministic.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use wsiseg_engine::OutputPaths;

pub use wsiseg_engine::SlideInput;

/// The slides of every input, and whether there is more than one slide
/// file (a folder, glob or list: the run then writes a summary).
#[derive(Debug, Default)]
pub struct Inputs {
    pub slides: Vec<SlideInput>,
    pub many: bool,
}

/// Why entries were passed over, for the log's "found" line.
#[derive(Default)]
struct Ignored {
    outputs: usize,
    others: usize,
    broken: usize,
    subfolders: usize,
    missing: usize,
}

impl Ignored {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.outputs > 0 {
            parts.push(format!("{} wsiseg output file(s) ignored", self.outputs));
        }
        if self.broken > 0 {
            parts.push(format!("{} broken link(s) (reported below)", self.broken));
        }
        if self.missing > 0 {
            parts.push(format!(
                "{} listed path(s) that do not exist (reported below)",
                self.missing
            ));
        }
        if self.subfolders > 0 {
            parts.push(format!(
                "{} subfolder(s) not searched (--recursive to descend)",
                self.subfolders
            ));
        }
        if self.others > 0 {
            parts.push(format!(
                "{} other entries (not slides) ignored",
                self.others
            ));
        }
        parts.iter().map(|s| format!(", {s}")).collect()
    }
}

/// Whether `s` is a glob pattern rather than a path.
fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Whether a file is a list of slides (by extension).
fn is_list(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("txt") || e.eq_ignore_ascii_case("csv"))
}

/// The slides named by `inputs`, sorted by name within each input, each
/// slide once.
pub fn collect(inputs: &[PathBuf], recursive: bool) -> Result<Inputs> {
    let mut all = Inputs {
        many: inputs.len() > 1,
        ..Inputs::default()
    };
    let mut seen = HashSet::new();
    for input in inputs {
        let mut ignored = Ignored::default();
        let text = input.to_string_lossy();
        let (slides, what) = if std::fs::symlink_metadata(input).is_err() && is_pattern(&text) {
            all.many = true;
            (glob_slides(&text, &mut ignored)?, "pattern")
        } else if let Err(e) = std::fs::metadata(input) {
            return Err(match wsiseg_slide::missing(input, e) {
                wsiseg_slide::SlideError::NotFound { .. } => {
                    anyhow::anyhow!("{}: no such file or folder", input.display())
                }
                other => other.into(),
            });
        } else if input.is_dir() {
            all.many = true;
            let mut slides = Vec::new();
            walk(input, Path::new(""), recursive, &mut slides, &mut ignored)?;
            (sorted(slides), "folder")
        } else if is_list(input) {
            all.many = true;
            (read_list(input, &mut ignored)?, "list")
        } else {
            let name = PathBuf::from(input.file_name().unwrap_or_default());
            (
                vec![SlideInput {
                    path: input.clone(),
                    name,
                    slide_mpp: None,
                    listed: None,
                }],
                "",
            )
        };
        if slides.is_empty() {
            bail!(
                "{}: no slides in this {what} (looked for {}{})",
                input.display(),
                wsiseg_slide::SLIDE_EXTENSIONS.join(", "),
                ignored.describe().replacen(", ", "; ", 1)
            );
        }
        if !what.is_empty() {
            tracing::info!(
                "{}: {} slide(s){}",
                input.display(),
                slides.len() - ignored.broken - ignored.missing,
                ignored.describe()
            );
        }
        for s in slides {
            // The same file given twice (a list and a folder, two patterns):
            // once.
            let key = std::fs::canonicalize(&s.path).unwrap_or_else(|_| s.path.clone());
            if seen.insert(key) {
                all.slides.push(s);
            } else {
                tracing::info!("{}: given more than once, segmented once", s.path.display());
            }
        }
    }
    check_output_names(&all.slides)?;
    Ok(all)
}

/// Sorts the slides of one input by name.
fn sorted(mut slides: Vec<SlideInput>) -> Vec<SlideInput> {
    slides.sort_by(|a, b| a.name.cmp(&b.name));
    slides
}

/// The slides of a folder (and, `recursive`, its subfolders'); `prefix` is
/// the folder's name under the input.
fn walk(
    dir: &Path,
    prefix: &Path,
    recursive: bool,
    slides: &mut Vec<SlideInput>,
    ignored: &mut Ignored,
) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list folder", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("{}: cannot list folder", dir.display()))?;
    entries.sort();
    for path in entries {
        let name = prefix.join(path.file_name().unwrap_or_default());
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir {
            if recursive {
                walk(&path, &name, recursive, slides, ignored)?;
            } else {
                ignored.subfolders += 1;
            }
        } else if !wsiseg_slide::has_slide_extension(&path) {
            ignored.others += 1;
        } else if OutputPaths::is_output_name(&path) {
            // A mask of an earlier run into this folder is not a slide.
            ignored.outputs += 1;
        } else if path.is_file() {
            slides.push(SlideInput {
                path,
                name,
                slide_mpp: None,
                listed: None,
            });
        } else if std::fs::metadata(&path).is_err() {
            // A dangling or looping link named like a slide: its own error
            // line and summary row, and the others still run.
            ignored.broken += 1;
            slides.push(SlideInput {
                path,
                name,
                slide_mpp: None,
                listed: None,
            });
        } else {
            ignored.others += 1;
        }
    }
    Ok(())
}

/// The slide files a glob pattern matches; names are relative to the
/// pattern's fixed leading folders (`slides/**/*.svs` → under `slides`).
fn glob_slides(pattern: &str, ignored: &mut Ignored) -> Result<Vec<SlideInput>> {
    let paths = glob::glob(pattern).map_err(|e| {
        anyhow::anyhow!(
            "{pattern}: not a valid pattern ({} at character {})",
            e.msg,
            e.pos
        )
    })?;
    let root: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| !is_pattern(&c.as_os_str().to_string_lossy()))
        .collect();
    let mut slides = Vec::new();
    for path in paths {
        let path = path.with_context(|| format!("{pattern}: cannot list"))?;
        if path.is_dir() {
            continue;
        }
        if !wsiseg_slide::has_slide_extension(&path) {
            ignored.others += 1;
        } else if OutputPaths::is_output_name(&path) {
            ignored.outputs += 1;
        } else {
            let name = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
            slides.push(SlideInput {
                path,
                name,
                slide_mpp: None,
                listed: None,
            });
        }
    }
    Ok(sorted(slides))
}

/// A list's entry as a name under the list's folder: the path as written
/// when it is relative and stays inside, else the file name alone.
fn list_name(written: &Path) -> PathBuf {
    let inside = written.is_relative()
        && written
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if inside {
        written
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect()
    } else {
        PathBuf::from(written.file_name().unwrap_or_default())
    }
}

/// The slides of a `.txt` (a path a line; `#` starts a comment line) or
/// `.csv` (a `path` column, optional `mpp`) list. Relative paths are under
/// the list's folder; missing files stay in (each is reported when its turn
/// comes, and the others still run).
fn read_list(list: &Path, ignored: &mut Ignored) -> Result<Vec<SlideInput>> {
    let text = std::fs::read_to_string(list)
        .with_context(|| format!("{}: cannot read the slide list", list.display()))?;
    let folder = list.parent().unwrap_or(Path::new(""));
    let is_csv = list
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let rows = if is_csv {
        csv_rows(list, &text)?
    } else {
        text.lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .map(|(i, l)| (i, l.to_string(), None))
            .collect()
    };
    let mut slides = Vec::new();
    for (line, written, slide_mpp) in rows {
        let written = PathBuf::from(written);
        let path = if written.is_absolute() {
            written.clone()
        } else {
            folder.join(&written)
        };
        if !wsiseg_slide::has_slide_extension(&path) {
            bail!(
                "{}, line {line}: {:?} is not a slide file (a list names one slide a line, ending in {})",
                list.display(),
                written.display().to_string(),
                wsiseg_slide::SLIDE_EXTENSIONS.join(", ")
            );
        }
        if std::fs::metadata(&path).is_err() {
            ignored.missing += 1;
        } else if path.is_dir() {
            bail!(
                "{}: {} is a folder; a list names slide files (give the folder itself, with --recursive, instead)",
                list.display(),
                written.display()
            );
        }
        slides.push(SlideInput {
            name: list_name(&written),
            path,
            slide_mpp,
            listed: Some(format!("{}, line {line}", list.display())),
        });
    }
    // A list's order is the user's; the run's is sorted like a folder's.
    Ok(sorted(slides))
}

/// The `(line, path, mpp)` rows of a CSV list.
fn csv_rows(list: &Path, text: &str) -> Result<Vec<(usize, String, Option<f64>)>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let header: Vec<String> = csv_fields(header)
        .into_iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let Some(path_col) = column("path") else {
        bail!(
            "{}: no \"path\" column in the header (columns: {}); the first line names the columns, e.g. path,mpp",
            list.display(),
            header.join(", ")
        );
    };
    let mpp_col = column("mpp");
    let others: Vec<&str> = header
        .iter()
        .filter(|h| *h != "path" && *h != "mpp")
        .map(String::as_str)
        .collect();
    if !others.is_empty() {
        tracing::info!(
            "{}: column(s) {} not used by wsiseg",
            list.display(),
            others.join(", ")
        );
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let fields = csv_fields(line);
        let field = |c: usize| fields.get(c).map(|f| f.trim()).unwrap_or_default();
        let path = field(path_col);
        if path.is_empty() {
            bail!("{}, line {}: the path is empty", list.display(), i + 1);
        }
        let mpp = match mpp_col.map(field) {
            None | Some("") => None,
            Some(m) => match m.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 && v <= 1000.0 => Some(v),
                _ => bail!(
                    "{}, line {}: mpp {m:?} is not a resolution in µm per pixel (a number above 0, e.g. 0.25)",
                    list.display(),
                    i + 1
                ),
            },
        };
        rows.push((i + 1, path.to_string(), mpp));
    }
    Ok(rows)
}

/// The fields of one CSV line (RFC 4180 quoting: `"a, b"`, `""` for `"`).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("one field at least");
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            _ => field.push(c),
        }
    }
    fields
}

/// Two slides whose names differ only by extension would write the same
/// files.
fn check_output_names(slides: &[SlideInput]) -> Result<()> {
    let mut seen = BTreeMap::new();
    for s in slides {
        let stem = s.name.with_extension("");
        if let Some(prev) = seen.insert(stem, &s.path) {
            bail!(
                "{} and {} would write outputs of the same name: move one of them to another folder",
                prev.display(),
                s.path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_follow_rfc_4180_quoting() {
        assert_eq!(csv_fields("a,b,,c"), ["a", "b", "", "c"]);
        assert_eq!(
            csv_fields("\"x, y.svs\",0.25,\"say \"\"hi\"\"\""),
            ["x, y.svs", "0.25", "say \"hi\""]
        );
    }

    #[test]
    fn list_names_stay_inside_the_list_folder() {
        assert_eq!(list_name(Path::new("a/./x.svs")), Path::new("a/x.svs"));
        assert_eq!(list_name(Path::new("../b/x.svs")), Path::new("x.svs"));
        assert_eq!(list_name(Path::new("/data/x.svs")), Path::new("x.svs"));
    }
}
