//! Palette-colour TIFFs (wsiseg's label masks): OpenSlide renders their
//! pixels in colour; these map the colours back to the stored labels.

use std::collections::HashMap;
use std::path::Path;

use image::RgbImage;

/// The colour map of a palette TIFF's first image (`colours[i]` is value
/// i's colour, 8 bits per channel), or `None` for any other file.
pub fn tiff_palette(path: &Path) -> Option<Vec<[u8; 3]>> {
    use tiff::tags::Tag;
    let file = std::fs::File::open(path).ok()?;
    let mut d = tiff::decoder::Decoder::new(std::io::BufReader::new(file)).ok()?;
    if d.get_tag_u32(Tag::PhotometricInterpretation).ok()? != 3 {
        return None;
    }
    let map = d.get_tag_u16_vec(Tag::ColorMap).ok()?;
    let n = map.len() / 3;
    if n == 0 || map.len() != 3 * n {
        return None;
    }
    Some(
        (0..n)
            .map(|i| [map[i], map[n + i], map[2 * n + i]].map(|v| (v >> 8) as u8))
            .collect(),
    )
}

/// Maps colours back to palette indices (the first index of a colour wins,
/// so a class's own colour maps to its label); colours outside the palette
/// map to 0.
pub struct PaletteLookup(HashMap<[u8; 3], u8>);

impl PaletteLookup {
    /// The lookup of `colours`.
    pub fn new(colours: &[[u8; 3]]) -> Self {
        let mut map = HashMap::new();
        for (i, c) in colours.iter().enumerate().take(256) {
            map.entry(*c).or_insert(i as u8);
        }
        Self(map)
    }

    /// The labels of an image OpenSlide rendered from a palette TIFF.
    pub fn labels(&self, rgb: &RgbImage) -> Vec<u8> {
        rgb.pixels()
            .map(|p| self.0.get(&p.0).copied().unwrap_or(0))
            .collect()
    }
}
