//! NAME.run.json: what made a slide's outputs, written after all of them.
//!
//! A re-run skips a slide only when its record's [`Fingerprint`] is the one
//! the new run would have and every requested output is there with the size
//! the record gives; a different fingerprint is an error that says what
//! differs. An output without a record (a killed run, an interrupted
//! overwrite, an older wsiseg) is never taken for finished.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::EngineError;

/// Bytes hashed at each end of a slide file for its quick hash.
const HASHED: u64 = 1 << 20;

/// The slide a run read: its path, size and a quick hash of its first and
/// last MiB (where every format keeps its header and directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlideIdentity {
    /// Absolute path when the run read it.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the size, the first MiB and the last MiB.
    pub quick_hash: String,
}

impl SlideIdentity {
    /// Reads the identity of the slide file at `path`.
    pub fn of(path: &Path) -> Result<Self, EngineError> {
        let io = |e| EngineError::io(path, "cannot read", e);
        let mut file = std::fs::File::open(path).map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        let mut hash = Sha256::new();
        hash.update(bytes.to_le_bytes());
        let mut buf = Vec::new();
        (&mut file).take(HASHED).read_to_end(&mut buf).map_err(io)?;
        hash.update(&buf);
        if bytes > HASHED {
            buf.clear();
            file.seek(SeekFrom::Start(bytes.saturating_sub(HASHED).max(HASHED)))
                .map_err(io)?;
            file.read_to_end(&mut buf).map_err(io)?;
            hash.update(&buf);
        }
        Ok(Self {
            path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            bytes,
            quick_hash: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

/// Everything that decides the pixels of a slide's outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The wsiseg that made them.
    pub wsiseg_version: String,
    /// The slide.
    pub slide: SlideIdentity,
    /// SHA-256 of the model file.
    pub model_sha256: String,
    /// Every setting that changes pixels (level, mpp, tile, precision…), by name.
    pub settings: BTreeMap<String, Value>,
}

impl Fingerprint {
    /// What differs from `other` (this run's), one phrase per difference;
    /// empty when they match.
    pub fn differences(&self, now: &Fingerprint) -> Vec<String> {
        let mut d = Vec::new();
        if self.slide.bytes != now.slide.bytes || self.slide.quick_hash != now.slide.quick_hash {
            d.push(format!(
                "slide ({}, {} bytes; now {}, {} bytes)",
                self.slide.path.display(),
                self.slide.bytes,
                now.slide.path.display(),
                now.slide.bytes
            ));
        }
        if self.model_sha256 != now.model_sha256 {
            d.push(format!(
                "model (SHA-256 {}…; now {}…)",
                &self.model_sha256[..12.min(self.model_sha256.len())],
                &now.model_sha256[..12.min(now.model_sha256.len())]
            ));
        }
        let keys: std::collections::BTreeSet<&String> =
            self.settings.keys().chain(now.settings.keys()).collect();
        for k in keys {
            let (a, b) = (self.settings.get(k), now.settings.get(k));
            if a != b {
                let show = |v: Option<&Value>| v.map_or("unset".to_string(), Value::to_string);
                d.push(format!("{k} ({}; now {})", show(a), show(b)));
            }
        }
        if self.wsiseg_version != now.wsiseg_version {
            d.push(format!(
                "wsiseg version ({}; now {})",
                self.wsiseg_version, now.wsiseg_version
            ));
        }
        d
    }
}

/// One output file as the run left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedFile {
    /// File name (in the output folder).
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The run record of a finished slide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// What made the outputs.
    pub fingerprint: Fingerprint,
    /// The output formats written.
    pub formats: Vec<String>,
    /// Every file written, with its size.
    pub files: Vec<RecordedFile>,
    /// The devices that ran the model.
    pub devices: Vec<String>,
    /// What the run found.
    pub figures: SlideFigures,
    /// When it finished, seconds since 1970 (UTC).
    pub finished_unix: u64,
}

impl RunRecord {
    /// Reads a record; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<Self>, EngineError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                EngineError::io(
                    path,
                    "unreadable run record (remove it, or redo the slide with overwrite)",
                    e.into(),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EngineError::io(path, "cannot read", e)),
        }
    }

    /// The first of `files` that is missing or not the size the record
    /// gives, with what is wrong with it.
    pub fn damaged(&self, folder: &Path, files: &[PathBuf]) -> Option<(PathBuf, String)> {
        files.iter().find_map(|f| {
            let name = f.file_name()?.to_string_lossy().into_owned();
            let size = std::fs::metadata(folder.join(&name)).ok().map(|m| m.len());
            match (self.files.iter().find(|r| r.name == name), size) {
                (None, _) => Some((f.clone(), "was not made by the recorded run".into())),
                (Some(_), None) => Some((f.clone(), "is missing".into())),
                (Some(r), Some(s)) if r.bytes != s => Some((
                    f.clone(),
                    format!("has {s} bytes, the recorded run wrote {}", r.bytes),
                )),
                _ => None,
            }
        })
    }
}

/// What a finished slide's run found, kept in its run record so that a
/// resumed (skipped) slide keeps its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlideFigures {
    /// Share of the working level labelled tumor (any class ≥ 1).
    pub tumor_fraction: f64,
    /// Tumor area in mm², when the slide's resolution is known.
    pub tumor_mm2: Option<f64>,
    /// Seconds the slide took, opening to the last output.
    pub seconds: f64,
    /// Corrupt stored tiles treated as background (`--bad-tiles background`).
    /// (Absent from records of earlier versions: none.)
    #[serde(default)]
    pub bad_tiles: usize,
    /// Tumor as a share of the tissue (absent from older records).
    #[serde(default)]
    pub tumor_share_of_tissue: Option<f64>,
    /// Connected tumor regions in the mask.
    #[serde(default)]
    pub regions: Option<usize>,
    /// Share of the working level with P(tumor) in [0.3, 0.7].
    #[serde(default)]
    pub uncertain_fraction: Option<f64>,
    /// The largest tumor region, mm² (when the resolution is known).
    #[serde(default)]
    pub largest_region_mm2: Option<f64>,
    /// Tissue area, mm² (thumbnail tissue mask; when the resolution is known).
    #[serde(default)]
    pub tissue_mm2: Option<f64>,
}

/// Seconds since 1970.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
