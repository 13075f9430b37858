//! DICOM whole-slide images as slides: a DICOM slide is a *series* of files
//! (one instance per pyramid level, plus label, overview and thumbnail
//! images) that share a Series Instance UID. OpenSlide opens the series from
//! any of its files; this module reads just enough of each file's header to
//! group a folder's files into series, so that a folder run segments each
//! series once and names it after its folder.
//!
//! A layout such as
//!
//! ```text
//! slides/
//!   case-1/   1.2.826…381.dcm  1.2.826…772.dcm  1.2.826…104.dcm   (one series)
//!   case-2/   …                                                    (one series)
//!   mixed/    files of two series
//! ```
//!
//! gives the slides `case-1`, `case-2`, `mixed/series-NNNNNNNN` and
//! `mixed/series-MMMMMMMM` (a series' own description, or its number, when
//! the folder's series have distinct ones).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// VL Whole Slide Microscopy Image Storage.
pub const WHOLE_SLIDE_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.77.1.6";

/// What a whole-slide instance holds, from the third value of its Image
/// Type (`ORIGINAL\PRIMARY\VOLUME\NONE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DicomImage {
    /// A pyramid level: the slide itself.
    Volume,
    /// The slide's label.
    Label,
    /// A photograph of the whole glass slide.
    Overview,
    /// A small picture of the scanned area.
    Thumbnail,
    /// Another DICOM object (not a whole-slide image, or an unknown type).
    Other,
}

/// What one DICOM file's header says.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomInstance {
    /// The file.
    pub path: PathBuf,
    /// Series Instance UID (0020,000E).
    pub series: String,
    /// SOP Class UID (0008,0016).
    pub sop_class: String,
    /// Image Type (0008,0008), its values.
    pub image_type: Vec<String>,
    /// Series Description (0008,103E).
    pub description: Option<String>,
    /// Series Number (0020,0011).
    pub number: Option<String>,
    /// Total Pixel Matrix Columns × Rows (0048,0006/7): pixels of the level.
    pub pixels: u64,
}

impl DicomInstance {
    /// The header of `path`; `Ok(None)` when the file is not a DICOM file
    /// (no `DICM` after the 128-byte preamble), an error saying what is
    /// wrong when its header cannot be read.
    pub fn read(path: &Path) -> Result<Option<Self>, String> {
        let file = File::open(path).map_err(|e| format!("cannot be opened ({e})"))?;
        let mut r = Header::new(BufReader::with_capacity(16 << 10, file));
        let mut magic = [0u8; 132];
        if r.inner.read_exact(&mut magic).is_err() || &magic[128..] != b"DICM" {
            return Ok(None);
        }
        r.pos = 132;
        let mut found = Found::default();
        // File meta information: always explicit VR little endian.
        r.elements(&mut found, Encoding::Explicit, 0, Some(0x0002))?;
        r.encoding = match found.transfer_syntax.as_deref() {
            Some("1.2.840.10008.1.2") => Encoding::Implicit,
            Some("1.2.840.10008.1.2.2") => {
                return Err(
                    "its transfer syntax (explicit VR big endian, retired) is not supported".into(),
                )
            }
            Some("1.2.840.10008.1.2.1.99") => {
                return Err("its transfer syntax (deflated explicit VR) is not supported".into())
            }
            _ => Encoding::Explicit,
        };
        r.elements(&mut found, r.encoding, 0, None)?;
        let series = found
            .series
            .ok_or("its header has no Series Instance UID")?;
        Ok(Some(Self {
            path: path.to_path_buf(),
            series,
            sop_class: found.sop_class.unwrap_or_default(),
            image_type: found.image_type,
            description: found.description.filter(|d| !d.is_empty()),
            number: found.number.filter(|n| !n.is_empty()),
            pixels: found.columns * found.rows,
        }))
    }

    /// What the instance holds.
    pub fn image(&self) -> DicomImage {
        if self.sop_class != WHOLE_SLIDE_SOP_CLASS {
            return DicomImage::Other;
        }
        match self.image_type.get(2).map(String::as_str) {
            Some("VOLUME") => DicomImage::Volume,
            Some("LABEL") => DicomImage::Label,
            Some("OVERVIEW") => DicomImage::Overview,
            Some("THUMBNAIL") => DicomImage::Thumbnail,
            _ => DicomImage::Other,
        }
    }
}

/// The files of one series in one folder.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomSeries {
    /// Series Instance UID.
    pub uid: String,
    /// Its name: the folder's when the folder holds only this series
    /// (with a slide image), else a name from the series (see the module).
    pub name: String,
    /// Whether the folder holds other series too (then `name` is the
    /// series' own, to be put under the folder's).
    pub shares_folder: bool,
    /// The file to open it from: its largest VOLUME instance (level 0), or
    /// its first file when it has none.
    pub main: PathBuf,
    /// Every file of the series, sorted.
    pub files: Vec<PathBuf>,
    /// Whether it has a slide image (a VOLUME instance), or is only a
    /// label, overview or thumbnail — or not a whole-slide image at all
    /// ([`DicomSeries::whole_slide`]).
    pub has_volume: bool,
    /// Whether it is a whole-slide image series (VL Whole Slide Microscopy).
    pub whole_slide: bool,
}

/// The series of the `.dcm` files in `folder` (not its subfolders), sorted
/// by name; files whose header cannot be read are left out (each fails on
/// its own when opened).
pub fn dicom_series(folder: &Path) -> std::io::Result<Vec<DicomSeries>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("dcm")) && p.is_file())
        .collect();
    files.sort();
    let mut by_uid: BTreeMap<String, Vec<DicomInstance>> = BTreeMap::new();
    for f in &files {
        if let Ok(Some(i)) = DicomInstance::read(f) {
            by_uid.entry(i.series.clone()).or_default().push(i);
        }
    }
    let with_volume = by_uid
        .values()
        .filter(|v| v.iter().any(|i| i.image() == DicomImage::Volume))
        .count();
    let folder_name = folder_name(folder);
    let own = own_names(&by_uid);
    let mut series: Vec<DicomSeries> = by_uid
        .into_iter()
        .map(|(uid, instances)| {
            let has_volume = instances.iter().any(|i| i.image() == DicomImage::Volume);
            let main = instances
                .iter()
                .filter(|i| i.image() == DicomImage::Volume)
                .max_by_key(|i| i.pixels)
                .unwrap_or(&instances[0])
                .path
                .clone();
            let shares_folder = !(has_volume && with_volume == 1);
            let name = match (&folder_name, shares_folder) {
                (Some(f), false) => f.clone(),
                _ => own[&uid].clone(),
            };
            DicomSeries {
                name,
                shares_folder,
                main,
                has_volume,
                whole_slide: instances
                    .iter()
                    .any(|i| i.sop_class == WHOLE_SLIDE_SOP_CLASS),
                files: instances.into_iter().map(|i| i.path).collect(),
                uid,
            }
        })
        .collect();
    series.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(series)
}

/// The folder a file is in (`.` for a bare file name).
pub fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The series the DICOM file `slide` belongs to (its folder's files read),
/// if it is a DICOM file whose header can be read.
pub fn dicom_series_of(slide: &Path) -> Option<DicomSeries> {
    let dcm = slide
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm"));
    if !dcm {
        return None;
    }
    dicom_series(&folder_of(slide))
        .ok()?
        .into_iter()
        .find(|s| s.files.iter().any(|f| f == slide))
}

/// The name `slide`'s outputs take: for a file of a DICOM series, the
/// series' name ([`DicomSeries::name`]); for any other file, its stem.
pub fn output_stem(slide: &Path) -> String {
    dicom_series_of(slide).map_or_else(
        || {
            slide
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        },
        |s| s.name,
    )
}

/// The folder's own name (`.` and `..` resolved), if it has one.
fn folder_name(folder: &Path) -> Option<String> {
    let full = std::fs::canonicalize(folder).ok()?;
    Some(full.file_name()?.to_string_lossy().into_owned())
}

/// A name for each series of one folder that tells them apart and stays
/// the same from run to run: its description when the descriptions differ,
/// else `series-N` by number when the numbers do, else `series-` and the
/// UID's last 8 characters.
fn own_names(by_uid: &BTreeMap<String, Vec<DicomInstance>>) -> BTreeMap<String, String> {
    let pick = |f: &dyn Fn(&DicomInstance) -> Option<String>| -> Option<Vec<String>> {
        let names: Vec<String> = by_uid
            .values()
            .map(|v| v.iter().find_map(f))
            .collect::<Option<_>>()?;
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        (unique.len() == names.len()).then_some(names)
    };
    let names = pick(&|i| i.description.as_deref().map(safe_name))
        .or_else(|| {
            pick(&|i| {
                i.number
                    .as_ref()
                    .map(|n| format!("series-{}", safe_name(n)))
            })
        })
        .unwrap_or_else(|| {
            by_uid
                .keys()
                .map(|uid| {
                    let tail = &uid[uid.len().saturating_sub(8)..];
                    format!("series-{}", safe_name(tail))
                })
                .collect()
        });
    by_uid.keys().cloned().zip(names).collect()
}

/// `s` with anything but letters, digits, `-`, `_` and `.` as `_` (a file
/// name of any system), never empty or starting with `.`.
fn safe_name(s: &str) -> String {
    let s: String = s
        .trim()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.strip_prefix('.') {
        _ if s.is_empty() => "series".into(),
        Some(_) => format!("_{s}"),
        None => s,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// Explicit VR little endian (every transfer syntax but one in use).
    Explicit,
    /// Implicit VR little endian (1.2.840.10008.1.2).
    Implicit,
}

/// The values the header reader looks for.
#[derive(Debug, Default)]
struct Found {
    transfer_syntax: Option<String>,
    sop_class: Option<String>,
    image_type: Vec<String>,
    description: Option<String>,
    series: Option<String>,
    number: Option<String>,
    columns: u64,
    rows: u64,
}

/// The last top-level tag the reader needs (Total Pixel Matrix Rows): it
/// stops there, far before the pixel data.
const LAST_TAG: u32 = 0x0048_0007;
/// The most a header may take before the tags wanted: a larger one is not
/// what whole-slide files hold.
const MAX_HEADER_BYTES: u64 = 64 << 20;
/// How deep sequences may nest.
const MAX_DEPTH: usize = 16;
const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: u32 = 0xFFFE_E000;
const ITEM_END: u32 = 0xFFFE_E00D;
const SEQUENCE_END: u32 = 0xFFFE_E0DD;

/// A reader of DICOM data elements that skips the values it does not need.
struct Header<R> {
    inner: R,
    pos: u64,
    encoding: Encoding,
}

impl<R: Read + Seek> Header<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            pos: 0,
            encoding: Encoding::Explicit,
        }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.inner
            .read_exact(&mut b)
            .map_err(|_| "its DICOM header is truncated".to_string())?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.bytes()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        if self.pos + n > MAX_HEADER_BYTES {
            return Err("its DICOM header is implausibly large (damaged?)".into());
        }
        self.inner
            .seek(SeekFrom::Current(n as i64))
            .map_err(|e| format!("cannot be read ({e})"))?;
        self.pos += n;
        Ok(())
    }

    fn value(&mut self, n: u32) -> Result<String, String> {
        if u64::from(n) > 1 << 16 {
            return Err("its DICOM header holds an implausibly long value (damaged?)".into());
        }
        let mut v = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut v)
            .map_err(|_| "its DICOM header is truncated".to_string())?;
        self.pos += u64::from(n);
        Ok(String::from_utf8_lossy(&v)
            .trim_end_matches(['\0', ' '])
            .trim_start()
            .to_string())
    }

    /// One element's tag and value length (`None` for the VR of an
    /// implicit element or an item); `Ok(None)` at the end of the file.
    fn element_head(&mut self, encoding: Encoding) -> Result<Option<(u32, u32, bool)>, String> {
        let mut b = [0u8; 4];
        match self.inner.read(&mut b[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(format!("cannot be read ({e})")),
        }
        self.inner
            .read_exact(&mut b[1..])
            .map_err(|_| "its DICOM header is truncated".to_string())?;
        self.pos += 4;
        let tag = (u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
            | u32::from(u16::from_le_bytes([b[2], b[3]]));
        if tag >> 16 == 0xFFFE || encoding == Encoding::Implicit {
            // Items, delimiters and implicit elements: a 4-byte length; an
            // undefined one is a sequence.
            let len = self.u32()?;
            return Ok(Some((tag, len, len == UNDEFINED)));
        }
        let vr = self.bytes::<2>()?;
        let long = matches!(
            &vr,
            b"OB"
                | b"OD"
                | b"OF"
                | b"OL"
                | b"OV"
                | b"OW"
                | b"SQ"
                | b"UC"
                | b"UN"
                | b"UR"
                | b"UT"
                | b"SV"
                | b"UV"
        );
        let len = if long {
            self.skip(2)?;
            self.u32()?
        } else {
            u32::from(self.u16()?)
        };
        Ok(Some((tag, len, &vr == b"SQ" || len == UNDEFINED)))
    }

    /// Reads elements until the end of `group` (the file meta group), an
    /// item's end, or [`LAST_TAG`]; sequences are skipped.
    fn elements(
        &mut self,
        found: &mut Found,
        encoding: Encoding,
        depth: usize,
        group: Option<u16>,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("its DICOM header nests sequences too deep (damaged?)".into());
        }
        loop {
            let start = self.pos;
            let Some((tag, len, sequence)) = self.element_head(encoding)? else {
                return Ok(());
            };
            if let Some(g) = group {
                if (tag >> 16) as u16 != g {
                    // The first element past the meta group: read it again
                    // in the data set's encoding.
                    self.inner
                        .seek(SeekFrom::Start(start))
                        .map_err(|e| format!("cannot be read ({e})"))?;
                    self.pos = start;
                    return Ok(());
                }
            }
            if tag == ITEM_END || tag == SEQUENCE_END {
                return Ok(());
            }
            if depth == 0 && group.is_none() && tag > LAST_TAG {
                return Ok(());
            }
            if sequence && len == UNDEFINED {
                self.sequence(encoding, depth + 1)?;
                continue;
            }
            if depth > 0 || sequence {
                self.skip(u64::from(len))?;
                continue;
            }
            match tag {
                0x0002_0010 => found.transfer_syntax = Some(self.value(len)?),
                0x0008_0008 => {
                    found.image_type = self
                        .value(len)?
                        .split('\\')
                        .map(|s| s.trim().to_ascii_uppercase())
                        .collect();
                }
                0x0008_0016 => found.sop_class = Some(self.value(len)?),
                0x0008_103E => found.description = Some(self.value(len)?),
                0x0020_000E => found.series = Some(self.value(len)?),
                0x0020_0011 => found.number = Some(self.value(len)?),
                0x0048_0006 if len == 4 => found.columns = u64::from(self.u32()?),
                0x0048_0007 if len == 4 => found.rows = u64::from(self.u32()?),
                _ => self.skip(u64::from(len))?,
            }
        }
    }

    /// Skips a sequence of undefined length: its items up to its end.
    fn sequence(&mut self, encoding: Encoding, depth: usize) -> Result<(), String> {
        loop {
            let Some((tag, len, _)) = self.element_head(encoding)? else {
                return Err("its DICOM header is truncated".into());
            };
            match tag {
                SEQUENCE_END => return Ok(()),
                ITEM if len == UNDEFINED => {
                    self.elements(&mut Found::default(), encoding, depth, None)?;
                }
                ITEM => self.skip(u64::from(len))?,
                _ => return Err("its DICOM header has a malformed sequence (damaged?)".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_names() {
        assert_eq!(safe_name("H&E 40x / case 1"), "H_E_40x___case_1");
        assert_eq!(safe_name("  "), "series");
        assert_eq!(safe_name(".hidden"), "_.hidden");
    }

    #[test]
    fn files_without_the_dicm_magic_are_not_dicom() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.dcm");
        std::fs::write(&f, b"not a dicom file at all").unwrap();
        assert_eq!(DicomInstance::read(&f), Ok(None));
        let mut head = vec![0u8; 128];
        head.extend_from_slice(b"DICM\x02\x00\x10\x00UI");
        std::fs::write(&f, &head).unwrap();
        assert_eq!(
            DicomInstance::read(&f),
            Err("its DICOM header is truncated".to_string())
        );
    }
}
