//! Every mask file a slide's run writes is a [`MaskOutput`]: it takes the
//! stitched label rows (and probability rows, when it asks for them) as they
//! stream, and when the slide is done it finishes its files as [`Staged`]
//! files — complete, flushed and fsynced, under temporary names. The engine
//! renames them only when every output has finished (see wsiseg-write's
//! commit protocol), and writes the run record last. Outputs only write:
//! what the run measured (class pixels, regions, the P histogram) comes
//! from the engine's statistics sink, and the report (NAME.report.json) is
//! made by the engine from it once the outputs are finished.
//!
//! Adding a format: a file here with a `MaskOutput` and its
//! [`FormatSpec`] (name, files, create), and one line in [`Format::ALL`].

mod geojson;
mod legend;
mod overlay;
mod png;
mod prob;
mod statistics;
mod tiff;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use wsiseg_slide::{Size, Slide};
use wsiseg_write::{Staged, WriteLimit};

pub use statistics::MaskStatistics;
pub(crate) use statistics::Statistics;

use crate::{EngineError, Request, RunStats, SlidePlan};

/// Side of the overlay and heat map images, and of the label copy GeoJSON is traced from.
pub const OVERVIEW_SIDE: u32 = 2048;

/// The class colours used when a model's manifest gives none.
pub use wsiseg_infer::CLASS_COLOURS;

/// Class `class`'s default colour ([`CLASS_COLOURS`], grey past the list).
pub fn class_colour(class: usize) -> [u8; 3] {
    CLASS_COLOURS.get(class).copied().unwrap_or([128, 128, 128])
}
/// The classes of the model a report names, background first, with their
/// colours (its manifest's); without a report, or when its manifest cannot
/// be read, background and tumor in the default colours.
pub fn report_classes(report: Option<&wsiseg_report::SlideReport>) -> Vec<(String, [u8; 3])> {
    let manifest = report.and_then(|r| {
        serde_json::from_value::<wsiseg_infer::Manifest>(r.model.manifest.clone()).ok()
    });
    match manifest {
        Some(m) => m.classes.iter().cloned().zip(m.class_colours()).collect(),
        None => vec![
            ("background".into(), CLASS_COLOURS[0]),
            ("tumor".into(), CLASS_COLOURS[1]),
        ],
    }
}

/// Longest side of the label copy GeoJSON is traced from.
pub const GEOMETRY_SIDE: u32 = 8192;

/// NAME.report.json: made by the engine once the other outputs are
/// finished (it lists them: `crate::report`), so no output of its own.
const REPORT_SPEC: FormatSpec = FormatSpec {
    name: "report",
    files: |paths| vec![paths.report()],
    create: |_| Ok(None),
};

/// A format's output for one slide (`None`: it has none of its own).
pub(crate) type Created = Result<Option<Box<dyn MaskOutput>>, EngineError>;

/// What the engine knows of an output format. Each output's file defines
/// its own (`SPEC`) and [`Format::ALL`] registers it: adding a format is
/// that file and one line there.
pub(crate) struct FormatSpec {
    /// Its name in requests, records and reports (`png`…).
    pub name: &'static str,
    /// The final names of its files for a slide.
    pub files: fn(&OutputPaths) -> Vec<PathBuf>,
    /// Its output for one slide (`None`: another format's output writes
    /// its files, or the engine does — the report).
    pub create: fn(&OutputContext) -> Created,
}

/// One kind of output. Compared, sorted and hashed by its place in
/// [`Format::ALL`], the order outputs are finished in.
#[derive(Clone, Copy)]
pub struct Format(&'static FormatSpec);

impl Format {
    /// NAME.mask.png: the label mask, 8-bit grey.
    pub const PNG: Format = Format(&png::SPEC);
    /// NAME.mask.tiff: the pyramidal BigTIFF label mask.
    pub const TIFF: Format = Format(&tiff::SPEC);
    /// NAME.prob.tiff: the pyramidal tumor probability map (0–255).
    pub const PROB: Format = Format(&prob::SPEC);
    /// NAME.overlay.png and NAME.heatmap.png: pictures over the thumbnail.
    pub const OVERLAY: Format = Format(&overlay::SPEC);
    /// NAME.geojson: tumor regions as QuPath annotations.
    pub const GEOJSON: Format = Format(&geojson::SPEC);
    /// NAME.xml: the same regions as ASAP annotations.
    pub const ASAP: Format = Format(&geojson::ASAP_SPEC);
    /// NAME.report.json: everything about the run (made by the engine
    /// once the other outputs are finished).
    pub const REPORT: Format = Format(&REPORT_SPEC);

    /// Every format, in finishing order: the registration of each.
    pub const ALL: &'static [Format] = &[
        Self::PNG,
        Self::TIFF,
        Self::PROB,
        Self::OVERLAY,
        Self::GEOJSON,
        Self::ASAP,
        Self::REPORT,
    ];

    /// Its name in requests and reports.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The final names of its files.
    pub fn files(self, paths: &OutputPaths) -> Vec<PathBuf> {
        (self.0.files)(paths)
    }

    /// Its place in [`Self::ALL`] (every `Format` is one of them).
    fn rank(self) -> usize {
        Self::ALL
            .iter()
            .position(|f| f.0.name == self.0.name)
            .unwrap_or(usize::MAX)
    }
}

impl PartialEq for Format {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Format {}

impl PartialOrd for Format {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Format {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl std::hash::Hash for Format {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Format({})", self.0.name)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
                format!("'{s}' is not an output ({})", names.join(", "))
            })
    }
}

/// Where a slide's files go: `OUT/STEM.*`.
#[derive(Debug, Clone)]
pub struct OutputPaths {
    out: PathBuf,
    stem: String,
    /// The model's class names, background first (for the probability
    /// maps' names); empty: a binary model's.
    classes: Vec<String>,
}

impl OutputPaths {
    /// The files of `slide` in the folder `out`.
    pub fn new(out: &Path, slide: &Path) -> Self {
        Self {
            out: out.to_path_buf(),
            // A DICOM series is named after its folder (or itself), not
            // after the instance file it is opened from.
            stem: wsiseg_slide::output_stem(slide),
            classes: Vec::new(),
        }
    }

    /// The same, for a model with these classes (background first): a
    /// model with more than two gets a probability map per class.
    pub fn with_classes(mut self, classes: &[String]) -> Self {
        self.classes = classes.to_vec();
        self
    }

    /// Whether a file is named as any slide's output of any format would be
    /// (NAME.mask.png, NAME.prob-CLASS.tiff, NAME.report.json…): such files
    /// are never taken for slides, e.g. when `--out` is the input folder.
    pub fn is_output_name(path: &Path) -> bool {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let probe = OutputPaths::new(Path::new(""), Path::new("NAME"));
        let fixed = Format::ALL
            .iter()
            .flat_map(|f| f.files(&probe))
            .chain([probe.record()])
            .any(|file| {
                let file = file.to_string_lossy();
                let suffix = file.strip_prefix("NAME").unwrap_or(&file);
                name.len() > suffix.len() && name.ends_with(suffix)
            });
        // The per-class maps of `probability`: NAME.prob-CLASS.tiff.
        fixed
            || name.strip_suffix(".tiff").is_some_and(|stem| {
                stem.rsplit_once('.')
                    .is_some_and(|(_, kind)| kind.starts_with("prob-"))
            })
    }

    /// The probability map of class `class` (1 on): `STEM.prob.tiff` for
    /// class 1 (tumor), `STEM.prob-NAME.tiff` for the others, NAME being the
    /// class name with anything but letters, digits, `-` and `_` as `_`.
    pub fn probability(&self, class: usize) -> PathBuf {
        if class <= 1 {
            return self.file("prob.tiff");
        }
        let name: String = self
            .classes
            .get(class)
            .map_or_else(|| format!("class{class}"), Clone::clone)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.file(&format!("prob-{name}.tiff"))
    }

    /// `OUT/STEM.suffix`.
    pub fn file(&self, suffix: &str) -> PathBuf {
        self.out.join(format!("{}.{suffix}", self.stem))
    }

    /// The output folder.
    pub fn folder(&self) -> &Path {
        &self.out
    }

    /// The report's path.
    pub fn report(&self) -> PathBuf {
        self.file("report.json")
    }

    /// The run record: what made the outputs (see [`crate::RunRecord`]).
    pub fn record(&self) -> PathBuf {
        self.file("run.json")
    }

    /// The lock held while the slide is segmented.
    pub fn lock(&self) -> PathBuf {
        self.file("lock")
    }

    /// Every file any format could write, the record included.
    pub fn all(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = Format::ALL.iter().flat_map(|f| f.files(self)).collect();
        v.push(self.record());
        v
    }
}

/// What an output is made with.
pub struct OutputContext<'a> {
    /// Final names.
    pub paths: &'a OutputPaths,
    /// The slide.
    pub slide: &'a dyn Slide,
    /// The slide's plan (working level, thumbnail…).
    pub plan: &'a SlidePlan,
    /// The request (mask values, GeoJSON's smallest area…).
    pub request: &'a Request,
    /// Class names, background first.
    pub classes: &'a [String],
    /// Their colours (the manifest's, or [`CLASS_COLOURS`]).
    pub colours: &'a [[u8; 3]],
    /// The byte budget every file shares (fault injection; none normally).
    pub limit: &'a WriteLimit,
}

impl OutputContext<'_> {
    /// The TIFF ImageDescription of the masks.
    fn description(&self, what: &str) -> String {
        format!(
            "wsiseg {} {what} of {}: level 0 of this file is the slide's level 0 downsampled by {:.6}; 0 = background, k = class k ({})",
            env!("CARGO_PKG_VERSION"),
            self.slide.path().file_name().unwrap_or_default().to_string_lossy(),
            self.plan.working.downsample,
            self.classes.join(", ")
        )
    }
}

/// What the finished slide knows, for outputs that summarise it.
pub struct SlideResult<'a> {
    /// Made with.
    pub context: &'a OutputContext<'a>,
    /// Per-stage times and counts so far (pixels per label value included).
    pub stats: &'a RunStats,
    /// What was measured on the mask (regions, P histogram).
    pub statistics: &'a MaskStatistics,
}

/// What an output leaves when it finishes.
#[derive(Default)]
pub struct Finished {
    /// Its files, complete and fsynced, under temporary names.
    pub staged: Vec<Staged>,
    /// Tumor regions it wrote (GeoJSON, ASAP), for the report.
    pub regions_written: Option<usize>,
    /// The statistics sink's measurements.
    pub(crate) statistics: Option<MaskStatistics>,
}

impl From<Vec<Staged>> for Finished {
    fn from(staged: Vec<Staged>) -> Self {
        Self {
            staged,
            ..Self::default()
        }
    }
}

/// One output format; see the module documentation. Callers may add their
/// own ([`crate::Engine::segment_with`]).
pub trait MaskOutput: Send {
    /// Its name in thread names and the report's timings ("png"…).
    fn name(&self) -> &'static str {
        "custom"
    }

    /// Whether it needs the probability rows too.
    fn wants_probabilities(&self) -> bool {
        false
    }

    /// The next label rows of the working level, top to bottom.
    fn label_rows(&mut self, _rows: &[u8]) -> Result<(), EngineError> {
        Ok(())
    }

    /// The next rows (top to bottom) of class `class`'s probability map
    /// (0–255; class 1 is tumor; models with more classes give every class
    /// from 1 on, each in its own calls).
    fn prob_rows(&mut self, _class: usize, _rows: &[u8]) -> Result<(), EngineError> {
        Ok(())
    }

    /// Finishes its files: complete and fsynced, not yet renamed.
    fn finish(self: Box<Self>, result: &SlideResult) -> Result<Finished, EngineError>;
}

/// The output `format` for one slide (`None`: another format's output
/// writes its files, or the engine does — the report).
pub(crate) fn create(format: Format, ctx: &OutputContext) -> Created {
    (format.0.create)(ctx)
}

/// `Ok(Some(output))`, boxed: what most formats' `create` returns.
fn boxed(output: impl MaskOutput + 'static) -> Created {
    Ok(Some(Box::new(output)))
}

/// Size of a copy of `size` whose longer side is at most `side`.
pub fn fit(size: Size, side: u32) -> Size {
    let scale = (f64::from(side) / f64::from(size.w.max(size.h))).min(1.0);
    Size::new(
        ((f64::from(size.w) * scale).round() as u32).max(1),
        ((f64::from(size.h) * scale).round() as u32).max(1),
    )
}

/// A small file (JSON, a picture) written whole and staged.
pub(crate) fn stage_bytes(
    path: &Path,
    bytes: &[u8],
    limit: &WriteLimit,
) -> Result<Staged, EngineError> {
    wsiseg_write::PartialFile::write_staged(path, bytes, limit)
        .map_err(|e| EngineError::io(path, "cannot write", e))
}

/// How many bytes of `bytes` equal `v`: 32 byte-wide lanes at a time,
/// each counting up to 255 before it is added up (what vectorises well).
fn count_equal(bytes: &[u8], v: u8) -> u64 {
    let mut total = 0;
    for block in bytes.chunks(255 * 32) {
        let mut lanes = [0u8; 32];
        let mut wide = block.chunks_exact(32);
        for c in &mut wide {
            let c: &[u8; 32] = c.try_into().expect("32 bytes");
            for k in 0..32 {
                lanes[k] += u8::from(c[k] == v);
            }
        }
        total += lanes.iter().map(|&n| u64::from(n)).sum::<u64>();
        total += wide.remainder().iter().filter(|&&b| b == v).count() as u64;
    }
    total
}

/// Adds how many of each byte value `bytes` holds to `counts` (256 long).
/// Labels take a few values: one vectorised pass per value then. Otherwise
/// four running tallies, so that a run of equal bytes does not make each
/// increment wait for the one before.
pub(crate) fn count_values(counts: &mut [u64], bytes: &[u8]) {
    let top = bytes.iter().copied().max().unwrap_or(0);
    if top < 8 {
        let mut others = 0;
        for v in 1..=top {
            let n = count_equal(bytes, v);
            counts[v as usize] += n;
            others += n;
        }
        counts[0] += bytes.len() as u64 - others;
        return;
    }
    let mut tally = [[0u32; 256]; 4];
    // u32 tallies: at most 2^32 - 1 bytes per tally between flushes.
    for chunk in bytes.chunks(1 << 30) {
        let mut quads = chunk.chunks_exact(4);
        for q in &mut quads {
            tally[0][q[0] as usize] += 1;
            tally[1][q[1] as usize] += 1;
            tally[2][q[2] as usize] += 1;
            tally[3][q[3] as usize] += 1;
        }
        for &b in quads.remainder() {
            tally[0][b as usize] += 1;
        }
        for t in &mut tally {
            for (c, n) in counts.iter_mut().zip(t.iter_mut()) {
                *c += u64::from(std::mem::take(n));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name an output gets is recognised, for any stem and any
    /// class; slides, including ones with dots in their names, are not.
    #[test]
    fn output_names_are_recognised_and_slides_are_not() {
        let classes = ["background", "tumor", "necrosis"].map(String::from);
        let paths =
            OutputPaths::new(Path::new("out"), Path::new("case.12.svs")).with_classes(&classes);
        for file in paths.all().into_iter().chain([paths.probability(2)]) {
            assert!(OutputPaths::is_output_name(&file), "{}", file.display());
        }
        for slide in [
            "case.12.svs",
            "a.tiff",
            "mask.png",
            "x.prob.svs",
            "scan.ndpi",
        ] {
            assert!(!OutputPaths::is_output_name(Path::new(slide)), "{slide}");
        }
    }

    #[test]
    fn values_are_counted_in_both_ways() {
        let few: Vec<u8> = (0..10_007u32).map(|i| (i * i % 7) as u8).collect();
        let many: Vec<u8> = (0..10_007u32).map(|i| (i * 31 % 251) as u8).collect();
        for bytes in [&few[..], &many[..], &[][..], &[255u8][..]] {
            let mut want = vec![0u64; 256];
            for &b in bytes {
                want[b as usize] += 1;
            }
            // Added to what is there.
            let mut got = vec![3u64; 256];
            count_values(&mut got, bytes);
            assert_eq!(got, want.iter().map(|n| n + 3).collect::<Vec<_>>());
        }
    }
}
