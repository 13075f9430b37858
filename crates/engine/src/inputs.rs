//! What a folder run takes as input: slide files, folders (recursively, if
//! asked), glob patterns, and list files
//! (`.txt`: a path a line; `.csv`: a `path` column and optional per-slide
//! columns such as `mpp`).
//!
//! Each slide gets a *name* relative to its input's root — the folder, the
//! glob's fixed prefix, or the list's folder — and its outputs go to that
//! name's subfolder of the output folder, so `a/x.svs` and `b/x.svs` never collide. The
//! same name chooses the slide's shard. The order is sorted and
//! deterministic.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

use crate::{OutputPaths, SlideInput};

/// The slides of every input, and whether there is more than one slide
/// file (a folder, glob or list: the run then writes a summary).
#[derive(Debug, Default)]
pub struct Inputs {
    /// Every slide, each once, sorted by name within each input.
    pub slides: Vec<SlideInput>,
    /// Whether there may be more than one (a folder, a pattern, a list, or
    /// more than one input).
    pub many: bool,
    /// What each input held, in order, for a "found" line.
    pub found: Vec<Found>,
}

/// What one input held.
#[derive(Debug, Clone)]
pub struct Found {
    /// The input as given.
    pub input: PathBuf,
    /// `folder`, `pattern` or `list` (empty: a slide file).
    pub kind: &'static str,
    /// Slides found (broken links and missing list entries apart).
    pub slides: usize,
    /// What was passed over.
    pub ignored: Ignored,
    /// Its slides given by an earlier input too (segmented once).
    pub repeated: Vec<PathBuf>,
}

/// Why entries were passed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ignored {
    /// Files named as wsiseg's outputs are.
    pub outputs: usize,
    /// Entries that are not slides.
    pub others: usize,
    /// Links named like slides that lead nowhere (each fails on its own).
    pub broken: usize,
    /// Subfolders of a folder read without recursion.
    pub subfolders: usize,
    /// A list's entries that do not exist (each fails on its own).
    pub missing: usize,
    /// DICOM files read as part of a series that another of its files
    /// stands for (its other levels, label, overview…).
    pub dicom_files: usize,
    /// DICOM whole-slide series with no slide image: only a label, an
    /// overview or a thumbnail.
    pub dicom_no_image: usize,
}

/// An input that names no slide, or cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Neither a file nor a folder (nor a pattern).
    #[error("{}: no such file or folder", path.display())]
    Missing {
        /// The input.
        path: PathBuf,
    },
    /// An input that cannot be looked at (permissions, a loop…).
    #[error(transparent)]
    Unreadable(#[from] wsiseg_slide::SlideError),
    /// A folder, pattern or list without a slide.
    #[error("{}: no slides in this {kind} (looked for {}{})", input.display(), wsiseg_slide::SLIDE_EXTENSIONS.join(", "), ignored.describe("search subfolders recursively").replacen(", ", "; ", 1))]
    NoSlides {
        /// The input.
        input: PathBuf,
        /// `folder`, `pattern` or `list`.
        kind: &'static str,
        /// What was passed over.
        ignored: Ignored,
    },
    /// A folder, a pattern's match or a list that cannot be read.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// What could not be read.
        path: PathBuf,
        /// `cannot list folder`, `cannot read the slide list`…
        what: &'static str,
        /// What the system said.
        source: std::io::Error,
    },
    /// A glob pattern that is not one.
    #[error("{pattern}: not a valid pattern ({message} at character {position})")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        message: String,
        /// Where.
        position: usize,
    },
    /// A list (or one of its lines) that is not what lists hold.
    #[error("{place}: {problem}")]
    List {
        /// The list, and the line when it is one line's.
        place: String,
        /// What is wrong.
        problem: String,
    },
    /// A list that names a folder.
    #[error("{}: {} is a folder; a list names slide files (give the folder itself, with recursion, instead)", list.display(), entry.display())]
    ListedFolder {
        /// The list.
        list: PathBuf,
        /// The entry as written.
        entry: PathBuf,
    },
}

type Result<T> = std::result::Result<T, InputError>;

fn list_error(place: String, problem: String) -> InputError {
    InputError::List { place, problem }
}

impl Ignored {
    /// `, 2 subfolder(s) not searched (DESCEND)…`: what was passed over,
    /// each part after a comma; `descend` says how to search subfolders.
    pub fn describe(&self, descend: &str) -> String {
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
        if self.dicom_files > 0 {
            parts.push(format!(
                "{} more DICOM file(s) read as parts of those series",
                self.dicom_files
            ));
        }
        if self.dicom_no_image > 0 {
            parts.push(format!(
                "{} DICOM series with only a label, overview or thumbnail ignored",
                self.dicom_no_image
            ));
        }
        if self.subfolders > 0 {
            parts.push(format!(
                "{} subfolder(s) not searched ({descend})",
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
pub fn collect_inputs(inputs: &[PathBuf], recursive: bool) -> Result<Inputs> {
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
                wsiseg_slide::SlideError::NotFound { .. } => InputError::Missing {
                    path: input.clone(),
                },
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
            (vec![SlideInput::new(input.clone(), name)], "")
        };
        let slides = sorted(dicom_series_as_slides(slides, &mut ignored));
        if slides.is_empty() {
            return Err(InputError::NoSlides {
                input: input.clone(),
                kind: what,
                ignored,
            });
        }
        let mut repeated = Vec::new();
        let found = slides.len() - ignored.broken - ignored.missing;
        for s in slides {
            // The same file given twice (a list and a folder, two patterns):
            // once.
            let key = std::fs::canonicalize(&s.path).unwrap_or_else(|_| s.path.clone());
            if seen.insert(key) {
                all.slides.push(s);
            } else {
                repeated.push(s.path);
            }
        }
        all.found.push(Found {
            input: input.clone(),
            kind: what,
            slides: found,
            ignored,
            repeated,
        });
    }
    mark_same_names(&mut all.slides);
    Ok(all)
}

/// The DICOM files among `slides` as series (see `wsiseg_slide::dicom`):
/// the files of one series in one folder are one slide, opened from its
/// level-0 instance and named after its folder — or, in a folder holding
/// several series, after the series, under the folder's name. Series with
/// only a label, overview or thumbnail are passed over; files whose header
/// cannot be read stay (each fails on its own, saying why).
fn dicom_series_as_slides(slides: Vec<SlideInput>, ignored: &mut Ignored) -> Vec<SlideInput> {
    let mut folders: BTreeMap<PathBuf, Vec<wsiseg_slide::DicomSeries>> = BTreeMap::new();
    let mut taken = HashSet::new();
    let mut out = Vec::with_capacity(slides.len());
    for slide in slides {
        let dcm = slide
            .path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("dcm"));
        if !dcm || !slide.path.is_file() {
            out.push(slide);
            continue;
        }
        let folder = wsiseg_slide::folder_of(&slide.path);
        let all = folders
            .entry(folder.clone())
            .or_insert_with(|| wsiseg_slide::dicom_series(&folder).unwrap_or_default());
        let Some(series) = all.iter().find(|s| s.files.contains(&slide.path)) else {
            out.push(slide);
            continue;
        };
        if !taken.insert((folder, series.uid.clone())) {
            ignored.dicom_files += 1;
            continue;
        }
        if series.whole_slide && !series.has_volume {
            ignored.dicom_no_image += 1;
            continue;
        }
        let under = slide.name.parent().unwrap_or(Path::new(""));
        let name = if series.shares_folder {
            under.join(&series.name)
        } else if under.as_os_str().is_empty() {
            PathBuf::from(&series.name)
        } else {
            under.to_path_buf()
        };
        // `.dcm` on the name, as any slide's: its stem is the outputs' name.
        let mut name = name.into_os_string();
        name.push(".dcm");
        out.push(SlideInput {
            path: series.main.clone(),
            name: name.into(),
            ..slide
        });
    }
    out
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
    let cannot = |source| InputError::Io {
        path: dir.to_path_buf(),
        what: "cannot list folder",
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(cannot)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(cannot)?;
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
            slides.push(SlideInput::new(path, name));
        } else if std::fs::metadata(&path).is_err() {
            // A dangling or looping link named like a slide: its own error
            // line and summary row, and the others still run.
            ignored.broken += 1;
            slides.push(SlideInput::new(path, name));
        } else {
            ignored.others += 1;
        }
    }
    Ok(())
}

/// The slide files a glob pattern matches; names are relative to the
/// pattern's fixed leading folders (`slides/**/*.svs` → under `slides`).
fn glob_slides(pattern: &str, ignored: &mut Ignored) -> Result<Vec<SlideInput>> {
    let paths = glob::glob(pattern).map_err(|e| InputError::Pattern {
        pattern: pattern.to_string(),
        message: e.msg.to_string(),
        position: e.pos,
    })?;
    let root: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| !is_pattern(&c.as_os_str().to_string_lossy()))
        .collect();
    let mut slides = Vec::new();
    for path in paths {
        let path = path.map_err(|e| InputError::Io {
            path: PathBuf::from(pattern),
            what: "cannot list",
            source: std::io::Error::other(e.to_string()),
        })?;
        if path.is_dir() {
            continue;
        }
        if !wsiseg_slide::has_slide_extension(&path) {
            ignored.others += 1;
        } else if OutputPaths::is_output_name(&path) {
            ignored.outputs += 1;
        } else {
            let name = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
            slides.push(SlideInput::new(path, name));
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
    let text = std::fs::read_to_string(list).map_err(|source| InputError::Io {
        path: list.to_path_buf(),
        what: "cannot read the slide list",
        source,
    })?;
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
            return Err(list_error(
                format!("{}, line {line}", list.display()),
                format!(
                    "{:?} is not a slide file (a list names one slide a line, ending in {})",
                    written.display().to_string(),
                    wsiseg_slide::SLIDE_EXTENSIONS.join(", ")
                ),
            ));
        }
        if std::fs::metadata(&path).is_err() {
            ignored.missing += 1;
        } else if path.is_dir() {
            return Err(InputError::ListedFolder {
                list: list.to_path_buf(),
                entry: written,
            });
        }
        slides.push(SlideInput {
            slide_mpp,
            listed: Some(format!("{}, line {line}", list.display())),
            ..SlideInput::new(path, list_name(&written))
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
        return Err(list_error(
            list.display().to_string(),
            format!(
                "no \"path\" column in the header (columns: {}); the first line names the columns, e.g. path,mpp",
                header.join(", ")
            ),
        ));
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
        let place = || format!("{}, line {}", list.display(), i + 1);
        if path.is_empty() {
            return Err(list_error(place(), "the path is empty".into()));
        }
        let mpp = match mpp_col.map(field) {
            None | Some("") => None,
            Some(m) => match m.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 && v <= 1000.0 => Some(v),
                _ => {
                    return Err(list_error(
                        place(),
                        format!("mpp {m:?} is not a resolution in µm per pixel (a number above 0, e.g. 0.25)"),
                    ))
                }
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
/// files: each is marked with the other (both fail, the others run).
fn mark_same_names(slides: &mut [SlideInput]) {
    let mut first: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for k in 0..slides.len() {
        let stem = slides[k].name.with_extension("");
        match first.get(&stem) {
            Some(&j) => {
                slides[k].same_name = Some(slides[j].path.clone());
                if slides[j].same_name.is_none() {
                    slides[j].same_name = Some(slides[k].path.clone());
                }
            }
            None => {
                first.insert(stem, k);
            }
        }
    }
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

    #[test]
    fn folders_patterns_and_lists_are_found_or_refused_with_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("in/sub")).unwrap();
        for f in ["in/a.svs", "in/sub/b.tif", "in/a.mask.png", "in/notes.md"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        let found = collect_inputs(&[d.join("in")], false).unwrap();
        let names: Vec<&Path> = found.slides.iter().map(|s| s.name.as_path()).collect();
        assert_eq!(names, [Path::new("a.svs")]);
        assert!(found.many);
        let ignored = found.found[0].ignored;
        assert_eq!(
            (ignored.outputs, ignored.others, ignored.subfolders),
            (1, 1, 1)
        );
        let deep = collect_inputs(&[d.join("in")], true).unwrap();
        let names: Vec<&Path> = deep.slides.iter().map(|s| s.name.as_path()).collect();
        assert_eq!(names, [Path::new("a.svs"), Path::new("sub/b.tif")]);

        std::fs::create_dir_all(d.join("empty/deeper")).unwrap();
        match collect_inputs(&[d.join("empty")], false) {
            Err(InputError::NoSlides { kind, ignored, .. }) => {
                assert_eq!((kind, ignored.subfolders), ("folder", 1));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            collect_inputs(&[d.join("nothing-here")], false),
            Err(InputError::Missing { .. })
        ));
        std::fs::write(d.join("in/sub/a.png"), b"x").unwrap();
        std::fs::write(d.join("list.txt"), "in/a.svs\nin/sub/a.png\n# a comment\n").unwrap();
        let listed = collect_inputs(&[d.join("list.txt")], false).unwrap();
        assert_eq!(listed.slides.len(), 2, "{listed:?}");
        assert!(listed.slides[0]
            .listed
            .as_deref()
            .unwrap()
            .ends_with("list.txt, line 1"));
        // Two slides of one name but the extension would write the same
        // files: both are marked, each with the other.
        std::fs::write(d.join("in/a.png"), b"x").unwrap();
        let both = collect_inputs(&[d.join("in")], false).unwrap();
        let marked: Vec<(&Path, &Path)> = both
            .slides
            .iter()
            .filter_map(|s| Some((s.name.as_path(), s.same_name.as_deref()?)))
            .collect();
        assert_eq!(
            marked,
            [
                (Path::new("a.png"), d.join("in/a.svs").as_path()),
                (Path::new("a.svs"), d.join("in/a.png").as_path())
            ]
        );
    }
}
