//! What a synthetic slide looks like: tissue islands with holes on glass,
//! fibrous pink stroma, purple nuclei, tumor regions with crowded, enlarged,
//! darker, pleomorphic nuclei and soft borders, and distractors (lymphocyte
//! clusters, dense normal areas, per-slide stain and focus variation).
//!
//! Large-scale structure lives in coarse *fields* (one value per
//! [`CELL`]×[`CELL`] level-0 pixels, bilinearly interpolated); nuclei are
//! placed on jittered grids and splatted. Everything is a pure function of the
//! seed and absolute coordinates, so tiles can be rendered in any order.

use crate::noise::{fbm, hash, smoothstep, unit};

/// Level-0 pixels per field cell.
pub const CELL: u32 = 32;
/// Field cells of margin around a band, enough for the largest nucleus.
const MARGIN: i64 = 3;
/// Side of the periodic texture tiles.
const TEX: usize = 256;

/// One kind of nucleus.
#[derive(Clone, Copy)]
struct Population {
    id: u64,
    cell_um: f32,
    radius_um: (f32, f32),
    elongation: (f32, f32),
    darkness: (f32, f32),
    irregularity: f32,
}

const STROMA: Population = Population {
    id: 11,
    cell_um: 13.0,
    radius_um: (3.5, 5.5),
    elongation: (2.2, 3.8),
    darkness: (0.45, 0.7),
    irregularity: 0.05,
};
const DENSE_NORMAL: Population = Population {
    id: 12,
    cell_um: 8.5,
    radius_um: (2.6, 3.3),
    elongation: (1.0, 1.3),
    darkness: (0.35, 0.6),
    irregularity: 0.05,
};
const LYMPHOCYTE: Population = Population {
    id: 13,
    cell_um: 6.0,
    radius_um: (2.0, 2.6),
    elongation: (1.0, 1.1),
    darkness: (0.85, 1.0),
    irregularity: 0.02,
};
const TUMOR: Population = Population {
    id: 14,
    cell_um: 9.5,
    radius_um: (3.0, 5.5),
    elongation: (1.0, 1.7),
    darkness: (0.6, 1.0),
    irregularity: 0.3,
};

/// A rectangle of level-0 pixels being rendered.
#[derive(Debug, Clone, Copy)]
pub struct Area {
    pub x0: u32,
    pub y0: u32,
    pub w: u32,
    pub h: u32,
}

/// The fields of a horizontal band of the slide.
pub struct Fields {
    gx0: i64,
    gy0: i64,
    cols: usize,
    rows: usize,
    tissue: Vec<f32>,
    tumor: Vec<f32>,
    lymph: Vec<f32>,
    dense: Vec<f32>,
}

impl Fields {
    /// Bilinear value of `field` at level-0 pixel (x, y).
    fn at(&self, field: &[f32], x: f32, y: f32) -> f32 {
        let fx = x / CELL as f32 - self.gx0 as f32;
        let fy = y / CELL as f32 - self.gy0 as f32;
        let ix = (fx.floor() as isize).clamp(0, self.cols as isize - 2) as usize;
        let iy = (fy.floor() as isize).clamp(0, self.rows as isize - 2) as usize;
        let (tx, ty) = (fx - ix as f32, fy - iy as f32);
        let i = iy * self.cols + ix;
        let top = field[i] + (field[i + 1] - field[i]) * tx;
        let bottom = field[i + self.cols] + (field[i + self.cols + 1] - field[i + self.cols]) * tx;
        top + (bottom - top) * ty
    }
}

/// A synthetic slide's look, fixed by its seed.
pub struct Scene {
    seed: u64,
    width: u32,
    height: u32,
    mpp: f64,
    tissue_scale: f64,
    tumor_scale: f64,
    tumor_threshold: f32,
    glass: [f32; 3],
    eosin_light: [f32; 3],
    eosin_dark: [f32; 3],
    tumor_cytoplasm: [f32; 3],
    hema_light: [f32; 3],
    hema_dark: [f32; 3],
    edge_softness: f32,
    fiber: Vec<f32>,
    grain: Vec<f32>,
}

fn jitter(seed: u64, k: u32, base: [f32; 3], amount: f32) -> [f32; 3] {
    let h = hash(seed, 77, 0, u64::from(k));
    let shift = (unit(h, 0) - 0.5) * 2.0 * amount;
    [0usize, 1, 2]
        .map(|c| (base[c] + shift + (unit(h, c as u32 + 1) - 0.5) * amount).clamp(0.0, 255.0))
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

impl Scene {
    /// The scene of slide `seed`: `width × height` level-0 pixels of `mpp` µm.
    pub fn new(seed: u64, width: u32, height: u32, mpp: f64) -> Self {
        let extent_um = f64::from(width.min(height)) * mpp;
        let h = hash(seed, 1, 2, 3);
        let mut scene = Self {
            seed,
            width,
            height,
            mpp,
            tissue_scale: (extent_um * 0.6).clamp(300.0, 4000.0),
            tumor_scale: (extent_um * 0.3).clamp(150.0, 1500.0),
            tumor_threshold: 0.0,
            glass: jitter(seed, 1, [241.0, 240.0, 244.0], 4.0),
            eosin_light: jitter(seed, 2, [246.0, 196.0, 218.0], 10.0),
            eosin_dark: jitter(seed, 3, [222.0, 118.0, 166.0], 18.0),
            tumor_cytoplasm: jitter(seed, 4, [205.0, 150.0, 200.0], 14.0),
            hema_light: jitter(seed, 5, [140.0, 100.0, 180.0], 14.0),
            hema_dark: jitter(seed, 6, [52.0, 24.0, 96.0], 14.0),
            edge_softness: 0.08 + 0.25 * unit(h, 1),
            fiber: Vec::new(),
            grain: Vec::new(),
        };
        scene.fiber = scene.texture(21, true);
        scene.grain = scene.texture(22, false);
        scene.tumor_threshold = scene.choose_tumor_threshold(0.15 + 0.25 * unit(h, 2));
        scene
    }

    /// A periodic texture: wavy fibres, or fine grain, in [0, 1].
    fn texture(&self, k: u64, fibrous: bool) -> Vec<f32> {
        let s = self.seed.wrapping_add(k);
        // An integer wave vector keeps the fibres periodic with the tile.
        let (kx, ky) = (9.0, (unit(hash(s, 0, 0, 0), 0) * 7.0).floor() as f64 - 3.0);
        let mut t = vec![0.0f32; TEX * TEX];
        for y in 0..TEX {
            for x in 0..TEX {
                // Periodic noise: sample a torus-wrapped lattice.
                let (u, v) = (x as f64 / TEX as f64, y as f64 / TEX as f64);
                let n = periodic_noise(s, u, v, 8) * 0.6 + periodic_noise(s ^ 5, u, v, 32) * 0.4;
                t[y * TEX + x] = if fibrous {
                    let along = (u * kx + v * ky) * 2.0 * std::f64::consts::PI;
                    (0.5 + 0.5 * (along + 3.0 * f64::from(n)).sin()) as f32 * 0.7
                        + 0.3 * (n * 0.5 + 0.5)
                } else {
                    n * 0.5 + 0.5
                };
            }
        }
        t
    }

    fn tex(t: &[f32], x: u32, y: u32) -> f32 {
        t[(y as usize % TEX) * TEX + x as usize % TEX]
    }

    /// Field values at field-cell corner (gx, gy): tissue, tumor, lymph, dense.
    fn field_point(&self, gx: i64, gy: i64) -> [f32; 4] {
        let (x, y) = (
            (gx * i64::from(CELL)) as f64 * self.mpp,
            (gy * i64::from(CELL)) as f64 * self.mpp,
        );
        let s = self.seed;
        let base = fbm(s ^ 0x11, x, y, self.tissue_scale, 4) + 0.35 * fbm(s ^ 0x12, x, y, 250.0, 3);
        let hole = fbm(s ^ 0x13, x, y, 90.0, 2);
        // Glass around the edges of the slide.
        let w_um = f64::from(self.width) * self.mpp;
        let h_um = f64::from(self.height) * self.mpp;
        let border = (x.min(w_um - x).min(y).min(h_um - y) / (0.06 * w_um.min(h_um))).min(1.0);
        let tissue =
            base + 0.12 - 1.2 * (hole - 0.45).max(0.0) - 0.8 * (1.0 - border.max(0.0) as f32);
        let tumor = fbm(s ^ 0x21, x, y, self.tumor_scale, 4) + 0.3 * fbm(s ^ 0x22, x, y, 120.0, 3);
        let lymph = fbm(s ^ 0x31, x, y, 220.0, 3);
        let dense = fbm(s ^ 0x41, x, y, 400.0, 3);
        [tissue, tumor, lymph, dense]
    }

    /// The tumor threshold that makes about `share` of the tissue tumor.
    fn choose_tumor_threshold(&self, share: f32) -> f32 {
        let (gw, gh) = (
            i64::from(self.width.div_ceil(CELL)),
            i64::from(self.height.div_ceil(CELL)),
        );
        let n = 128i64;
        let mut tumor: Vec<f32> = (0..n * n)
            .map(|i| self.field_point(i % n * gw / n, i / n * gh / n))
            .filter(|f| f[0] > 0.0)
            .map(|f| f[1])
            .collect();
        if tumor.is_empty() {
            return 0.2;
        }
        tumor.sort_by(|a, b| a.total_cmp(b));
        tumor[((1.0 - share) * (tumor.len() - 1) as f32) as usize]
    }

    /// Fields covering level-0 rows `y0..y1` (with margins) across the slide.
    pub fn fields(&self, y0: u32, y1: u32) -> Fields {
        let gx0 = -MARGIN;
        let gy0 = i64::from(y0 / CELL) - MARGIN;
        let cols = (i64::from(self.width.div_ceil(CELL)) + 2 * MARGIN + 1) as usize;
        let rows = (i64::from(y1.div_ceil(CELL)) - gy0 + MARGIN + 1) as usize;
        let mut f = Fields {
            gx0,
            gy0,
            cols,
            rows,
            tissue: Vec::with_capacity(cols * rows),
            tumor: Vec::with_capacity(cols * rows),
            lymph: Vec::with_capacity(cols * rows),
            dense: Vec::with_capacity(cols * rows),
        };
        for r in 0..rows as i64 {
            for c in 0..cols as i64 {
                let [t, u, l, d] = self.field_point(gx0 + c, gy0 + r);
                f.tissue.push(t);
                f.tumor.push(u);
                f.lymph.push(l);
                f.dense.push(d);
            }
        }
        f
    }

    /// Renders a level-0 `area` into `rgb` (`w×h×3`) and its ground truth
    /// into `labels` (`w×h`, 1 = tumor).
    pub fn render(&self, f: &Fields, area: Area, rgb: &mut [u8], labels: &mut [u8]) {
        let Area { x0, y0, w, h } = area;
        let mut px = vec![[0f32; 3]; (w * h) as usize];
        let thr = self.tumor_threshold;
        for j in 0..h {
            let y = y0 + j;
            for i in 0..w {
                let x = x0 + i;
                let k = (j * w + i) as usize;
                let (xf, yf) = (x as f32 + 0.5, y as f32 + 0.5);
                let tv = f.at(&f.tissue, xf, yf);
                let uv = f.at(&f.tumor, xf, yf);
                let tissue = smoothstep(-0.004, 0.004, tv);
                let tum = smoothstep(thr - 0.03, thr + 0.03, uv) * tissue;
                labels[k] = u8::from(tv > 0.0 && uv > thr);
                let fiber = Self::tex(&self.fiber, x, y) * 0.6
                    + Self::tex(&self.fiber, x / 3 + 97, y / 3 + 31) * 0.4;
                let grain = Self::tex(&self.grain, x, y);
                let stroma = lerp3(self.eosin_light, self.eosin_dark, fiber);
                let cyto = lerp3(stroma, self.tumor_cytoplasm, 0.75 * tum);
                let mut c = lerp3(self.glass, cyto, tissue);
                let g = (grain - 0.5) * 10.0;
                c = [c[0] + g, c[1] + g, c[2] + g];
                px[k] = c;
            }
        }
        for pop in [STROMA, DENSE_NORMAL, LYMPHOCYTE, TUMOR] {
            self.splat(f, pop, area, &mut px);
        }
        for (k, c) in px.iter().enumerate() {
            rgb[3 * k] = c[0].clamp(0.0, 255.0) as u8;
            rgb[3 * k + 1] = c[1].clamp(0.0, 255.0) as u8;
            rgb[3 * k + 2] = c[2].clamp(0.0, 255.0) as u8;
        }
    }

    /// Probability that a nucleus of `pop` sits at level-0 point (x, y).
    fn presence(&self, f: &Fields, pop: Population, x: f32, y: f32) -> f32 {
        let thr = self.tumor_threshold;
        let tissue = smoothstep(-0.004, 0.004, f.at(&f.tissue, x, y));
        let tumor = smoothstep(thr - 0.03, thr + 0.03, f.at(&f.tumor, x, y)) * tissue;
        let lymph = smoothstep(0.25, 0.4, f.at(&f.lymph, x, y));
        let dense = smoothstep(0.15, 0.3, f.at(&f.dense, x, y));
        match pop.id {
            11 => 0.4 * tissue * (1.0 - tumor) * (1.0 - lymph) * (1.0 - dense),
            12 => 0.75 * dense * tissue * (1.0 - tumor) * (1.0 - lymph),
            13 => 0.8 * lymph * tissue * (1.0 - tumor),
            _ => 0.85 * tumor,
        }
    }

    fn splat(&self, f: &Fields, pop: Population, area: Area, px: &mut [[f32; 3]]) {
        let Area { x0, y0, w, h } = area;
        let cell = pop.cell_um as f64 / self.mpp;
        let rmax = (pop.radius_um.1 * 1.4) as f64 / self.mpp;
        let cx0 = ((f64::from(x0) - rmax) / cell).floor() as i64;
        let cx1 = ((f64::from(x0 + w) + rmax) / cell).ceil() as i64;
        let cy0 = ((f64::from(y0) - rmax) / cell).floor() as i64;
        let cy1 = ((f64::from(y0 + h) + rmax) / cell).ceil() as i64;
        let soft = self.edge_softness;
        for cy in cy0..=cy1 {
            for cx in cx0..=cx1 {
                let hsh = hash(self.seed, cx, cy, pop.id);
                let x = ((cx as f64 + 0.1 + 0.8 * f64::from(unit(hsh, 0))) * cell) as f32;
                let y = ((cy as f64 + 0.1 + 0.8 * f64::from(unit(hsh, 1))) * cell) as f32;
                if unit(hsh, 2) >= self.presence(f, pop, x, y) {
                    continue;
                }
                let r = (pop.radius_um.0 + (pop.radius_um.1 - pop.radius_um.0) * unit(hsh, 3))
                    / self.mpp as f32;
                let e = pop.elongation.0 + (pop.elongation.1 - pop.elongation.0) * unit(hsh, 4);
                let (a, b) = (r * e.sqrt(), r / e.sqrt());
                let theta = unit(hsh, 5) * std::f32::consts::PI;
                let (ct, st) = (theta.cos(), theta.sin());
                let dark = pop.darkness.0 + (pop.darkness.1 - pop.darkness.0) * unit(hsh, 6);
                let color = lerp3(self.hema_light, self.hema_dark, dark);
                let lobes = pop.irregularity;
                let phase = unit(hsh, 7) * std::f32::consts::TAU;
                let ext = a.max(b) * (1.0 + lobes) + 2.0;
                let bx0 = ((x - ext).floor() as i64).max(i64::from(x0));
                let bx1 = ((x + ext).ceil() as i64).min(i64::from(x0 + w));
                let by0 = ((y - ext).floor() as i64).max(i64::from(y0));
                let by1 = ((y + ext).ceil() as i64).min(i64::from(y0 + h));
                for py in by0..by1 {
                    for qx in bx0..bx1 {
                        let (dx, dy) = (qx as f32 + 0.5 - x, py as f32 + 0.5 - y);
                        let u = (dx * ct + dy * st) / a;
                        let v = (-dx * st + dy * ct) / b;
                        let mut q = u * u + v * v;
                        if q > (1.0 + lobes) * (1.0 + lobes) + soft * 2.0 {
                            continue;
                        }
                        let grain = Self::tex(&self.grain, qx as u32 * 2, py as u32 * 2);
                        if lobes > 0.0 {
                            // Irregular outline: bumps around the rim.
                            let ang = v.atan2(u);
                            q /= (1.0
                                + lobes * (3.0 * ang + phase).sin() * 0.5
                                + lobes * (grain - 0.5))
                                .powi(2);
                        }
                        let alpha = ((1.0 + soft - q) / (2.0 * soft)).clamp(0.0, 1.0)
                            * (0.8 + 0.35 * grain);
                        let k = ((py - i64::from(y0)) as u32 * w + (qx - i64::from(x0)) as u32)
                            as usize;
                        px[k] = lerp3(px[k], color, alpha.min(1.0));
                    }
                }
            }
        }
    }
}

/// Value noise on a torus: periodic in u and v with period 1.
fn periodic_noise(seed: u64, u: f64, v: f64, cells: i64) -> f32 {
    let (x, y) = (u * cells as f64, v * cells as f64);
    let (ix, iy) = (x.floor() as i64, y.floor() as i64);
    let (tx, ty) = ((x - x.floor()) as f32, (y - y.floor()) as f32);
    let l = |i: i64, j: i64| {
        (hash(seed, i.rem_euclid(cells), j.rem_euclid(cells), 9) >> 40) as f32 / (1u64 << 23) as f32
            - 1.0
    };
    let s = |t: f32| t * t * (3.0 - 2.0 * t);
    let (sx, sy) = (s(tx), s(ty));
    let top = l(ix, iy) + (l(ix + 1, iy) - l(ix, iy)) * sx;
    let bottom = l(ix, iy + 1) + (l(ix + 1, iy + 1) - l(ix, iy + 1)) * sx;
    top + (bottom - top) * sy
}
