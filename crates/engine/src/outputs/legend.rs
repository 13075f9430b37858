//! Legends drawn into the overlay and heat map PNGs, so that a picture read
//! alone (on a closed server, in a slide deck) says what its colours and
//! size are: a white box in the lower left with a colour swatch or colour
//! bar and a scale bar, labelled with a built-in 5×7 pixel font scaled to
//! the picture.

use image::{Rgb, RgbImage};

/// 5×7 glyphs (each row's 5 bits, most significant on the left) of the few
/// characters legends use.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        'm' => [0, 0, 0x1A, 0x15, 0x15, 0x11, 0x11],
        'u' => [0, 0, 0x11, 0x11, 0x11, 0x13, 0x0D],
        't' => [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06],
        'o' => [0, 0, 0x0E, 0x11, 0x11, 0x11, 0x0E],
        'r' => [0, 0, 0x16, 0x19, 0x10, 0x10, 0x10],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        _ => [0; 7],
    }
}

/// Draws `text` with its top-left corner at (x, y), each font pixel `s`×`s`.
fn text(img: &mut RgbImage, x: u32, y: u32, s: u32, t: &str, colour: Rgb<u8>) {
    for (i, c) in t.chars().enumerate() {
        let g = glyph(c);
        let x0 = x + i as u32 * 6 * s;
        for (row, bits) in g.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    fill(img, x0 + col * s, y + row as u32 * s, s, s, colour);
                }
            }
        }
    }
}

fn text_width(t: &str, s: u32) -> u32 {
    t.chars().count() as u32 * 6 * s
}

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, colour: Rgb<u8>) {
    let (iw, ih) = img.dimensions();
    for yy in y..(y + h).min(ih) {
        for xx in x..(x + w).min(iw) {
            img.put_pixel(xx, yy, colour);
        }
    }
}

/// The font's pixel size for a picture `width` wide (2 at 1000 px).
fn scale(width: u32) -> u32 {
    (width / 500).clamp(1, 4)
}

/// A round length near a sixth of the picture's width, in µm, and its label.
fn scale_length(width_um: f64) -> (f64, String) {
    const STEPS: [f64; 12] = [
        10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 50000.0,
    ];
    let target = width_um / 6.0;
    let len = STEPS
        .iter()
        .copied()
        .min_by(|a, b| (a - target).abs().total_cmp(&(b - target).abs()))
        .unwrap_or(1000.0);
    let label = if len >= 1000.0 {
        format!("{} mm", len / 1000.0)
    } else {
        format!("{len} um")
    };
    (len, label)
}

/// What the legend shows besides the scale bar.
pub enum Key<'a> {
    /// A swatch of the tumor colour labelled "tumor".
    Tumor([u8; 3]),
    /// A colour bar of P from 0 to 1, by this colour map.
    Probability(&'a dyn Fn(f32) -> [f32; 3]),
}

/// Draws the legend box in the lower-left corner: the key, and a scale bar
/// when `um_per_px` (microns per picture pixel) is known.
pub fn draw(img: &mut RgbImage, key: Key, um_per_px: Option<f64>) {
    let (w, h) = img.dimensions();
    let s = scale(w);
    let pad = 4 * s;
    let line = 9 * s;
    let black = Rgb([0, 0, 0]);
    let bar = um_per_px.map(|u| {
        let (len, label) = scale_length(f64::from(w) * u);
        (((len / u).round() as u32).max(1), label)
    });
    let key_width = match key {
        Key::Tumor(_) => line + s * 2 + text_width("tumor", s),
        Key::Probability(_) => text_width("P(tumor) 0", s) + 60 * s + text_width(" 1", s),
    };
    let bar_width = bar
        .as_ref()
        .map_or(0, |(px, label)| (*px).max(text_width(label, s)));
    let box_w = key_width.max(bar_width) + 2 * pad;
    let box_h = pad + line + if bar.is_some() { pad + line + 3 * s } else { 0 } + pad;
    if box_w + 2 * pad > w || box_h + 2 * pad > h {
        return;
    }
    let (bx, by) = (pad, h - box_h - pad);
    fill(img, bx, by, box_w, box_h, Rgb([255, 255, 255]));
    let (x, y) = (bx + pad, by + pad);
    match key {
        Key::Tumor(c) => {
            fill(img, x, y, line, line, black);
            fill(img, x + s, y + s, line - 2 * s, line - 2 * s, Rgb(c));
            text(img, x + line + 2 * s, y + s, s, "tumor", black);
        }
        Key::Probability(colour) => {
            text(img, x, y + s, s, "P(tumor) 0", black);
            let x0 = x + text_width("P(tumor) 0", s);
            let n = 60 * s;
            for i in 0..n {
                let c = colour(i as f32 / (n - 1) as f32);
                fill(img, x0 + i, y, 1, line, Rgb(c.map(|v| v as u8)));
            }
            text(img, x0 + n, y + s, s, " 1", black);
        }
    }
    if let Some((px, label)) = bar {
        let y = y + line + pad;
        text(img, x, y, s, &label, black);
        fill(img, x, y + line - s, px, 3 * s, black);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_bar_has_the_length_it_says() {
        // 2000 px showing 10 mm: 5 µm/px; a sixth is 1.67 mm → "2 mm", 400 px.
        let mut img = RgbImage::from_pixel(2000, 1400, Rgb([200, 200, 200]));
        draw(&mut img, Key::Tumor([230, 30, 30]), Some(5.0));
        let s = scale(2000);
        let y = (0..1400)
            .rev()
            .find(|&y| img.get_pixel(4 * s * 2, y).0 == [0, 0, 0])
            .unwrap();
        let black = (0..2000)
            .filter(|&x| img.get_pixel(x, y).0 == [0, 0, 0])
            .count();
        assert_eq!(black as u32, 400, "the bar on row {y}");
        assert!(img.pixels().any(|p| p.0 == [230, 30, 30]), "the swatch");
        assert_eq!(scale_length(10_000.0), (2000.0, "2 mm".to_string()));
        assert_eq!(scale_length(600.0), (100.0, "100 um".to_string()));
    }
}
