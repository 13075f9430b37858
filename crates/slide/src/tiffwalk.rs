//! A minimal walk over a TIFF's directories, for the few fields whose
//! damage makes OpenSlide abort the process (see `slide::tiff_hazard`).

/// Tiles wider or taller than this are damage (OpenSlide holds a decoded
/// tile whole, and aborts when it cannot allocate one).
const MAX_TILE_SIDE: u64 = 16384;

/// The most tile offsets read per directory (a 250000² level of 256-px
/// tiles has under a million).
const MAX_TILES: u64 = 4 << 20;

/// Reads unsigned integers of a file's byte order, at offsets (no more
/// of the file than the directories and their tile arrays).
struct Bytes<'a> {
    file: &'a std::fs::File,
    len: u64,
    le: bool,
}

impl Bytes<'_> {
    fn read(&self, at: u64, n: u64) -> Option<Vec<u8>> {
        if at.checked_add(n)? > self.len {
            return None;
        }
        let mut buf = vec![0u8; usize::try_from(n).ok()?];
        std::os::unix::fs::FileExt::read_exact_at(self.file, &mut buf, at).ok()?;
        Some(buf)
    }

    fn decode(&self, s: &[u8]) -> u64 {
        let mut v = 0u64;
        for i in 0..s.len() {
            let byte = if self.le { s[s.len() - 1 - i] } else { s[i] };
            v = (v << 8) | u64::from(byte);
        }
        v
    }

    fn uint(&self, at: u64, width: usize) -> Option<u64> {
        Some(self.decode(&self.read(at, width as u64)?))
    }
}

/// One directory entry: its values, read whole (at most `cap` of them).
fn values(r: &Bytes, big: bool, entry: u64, cap: u64) -> Option<Vec<u64>> {
    let typ = r.uint(entry.saturating_add(2), 2)?;
    let count = r.uint(entry.saturating_add(4), if big { 8 } else { 4 })?;
    let width = match typ {
        3 => 2,
        4 | 13 => 4,
        16..=18 => 8,
        1 | 2 | 6 | 7 => 1,
        _ => return Some(Vec::new()),
    };
    let inline = if big { 8 } else { 4 };
    let value_at = entry.saturating_add(if big { 12 } else { 8 });
    let start = if count.saturating_mul(width) <= inline {
        value_at
    } else {
        r.uint(value_at, inline as usize)?
    };
    let block = r.read(start, count.min(cap).saturating_mul(width))?;
    Some(
        block
            .chunks_exact(width as usize)
            .map(|c| r.decode(c))
            .collect(),
    )
}

/// What is damaged in the TIFF `file`, if anything OpenSlide would trip on;
/// `None` too for a file that is not TIFF or BigTIFF.
pub(crate) fn hazard(file: &std::fs::File) -> Option<String> {
    let len = file.metadata().ok()?.len();
    let mut r = Bytes {
        file,
        len,
        le: true,
    };
    r.le = match r.read(0, 2)?.as_slice() {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let big = match r.uint(2, 2)? {
        42 => false,
        43 => true,
        _ => return None,
    };
    let mut ifd = if big { r.uint(8, 8)? } else { r.uint(4, 4)? };
    let mut seen = std::collections::HashSet::new();
    for index in 0..4096 {
        if ifd == 0 || !seen.insert(ifd) {
            return None;
        }
        let n = r.uint(ifd, if big { 8 } else { 2 })?;
        let (first, size) = if big {
            (ifd.saturating_add(8), 20)
        } else {
            (ifd.saturating_add(2), 12)
        };
        let mut tile = (None, None);
        let (mut offsets, mut counts) = (Vec::new(), Vec::new());
        for k in 0..n.min(4096) {
            let entry = first.saturating_add(k * size);
            let tag = r.uint(entry, 2)?;
            match tag {
                65420 => return None, // NDPI
                322 => tile.0 = values(&r, big, entry, 1)?.first().copied(),
                323 => tile.1 = values(&r, big, entry, 1)?.first().copied(),
                324 => offsets = values(&r, big, entry, MAX_TILES)?,
                325 => counts = values(&r, big, entry, MAX_TILES)?,
                _ => {}
            }
        }
        if let (Some(w), Some(h)) = tile {
            if w == 0 || h == 0 || w > MAX_TILE_SIDE || h > MAX_TILE_SIDE {
                return Some(format!(
                    "TIFF directory {index} declares tiles of {w}×{h} pixels"
                ));
            }
            for (t, (&o, &c)) in offsets.iter().zip(&counts).enumerate() {
                if o.checked_add(c).is_none_or(|end| end > len) {
                    return Some(format!(
                        "TIFF directory {index}: tile {t} ({c} bytes at offset {o}) reaches past the end of the file ({len} bytes)"
                    ));
                }
            }
        }
        ifd = r.uint(
            first.saturating_add(n.saturating_mul(size)),
            if big { 8 } else { 4 },
        )?;
    }
    None
}
