//! NAME.geojson: QuPath-compatible GeoJSON of the tumor regions; NAME.xml:
//! the same regions as ASAP annotations.
//!
//! Regions are traced along pixel edges (4-connected regions, holes as inner
//! rings), with each vertex at the midpoint of a boundary edge: rings then
//! never touch or cross themselves or each other, even where regions meet
//! diagonally, and straight runs collapse to single segments. The staircase
//! is then smoothed away by Douglas–Peucker simplification (tolerance
//! [`SIMPLIFY_PX`] mask pixels); a polygon whose simplified rings would touch
//! or cross keeps its exact rings. Coordinates are level-0 pixels of the slide
//! (x right, y down), as QuPath expects.

use std::collections::HashMap;

use serde_json::{json, Value};
use wsiseg_slide::Size;
use wsiseg_stitch::{NearestRows, RowSink};

use super::{
    boxed, fit, stage_bytes, Finished, Format, FormatSpec, MaskOutput, OutputContext, SlideResult,
    GEOMETRY_SIDE,
};
use crate::EngineError;

/// The format: NAME.geojson.
pub(super) const SPEC: FormatSpec = FormatSpec {
    name: "geojson",
    files: |paths| vec![paths.file("geojson")],
    create: |ctx| boxed(GeoJson::create(ctx)),
};

/// The format: NAME.xml, traced with NAME.geojson when both are asked for
/// (one copy of the labels, traced once).
pub(super) const ASAP_SPEC: FormatSpec = FormatSpec {
    name: "asap",
    files: |paths| vec![paths.file("xml")],
    create: |ctx| {
        if ctx.request.formats.contains(&Format::GEOJSON) {
            return Ok(None);
        }
        boxed(GeoJson::create(ctx))
    },
};

/// A copy of the labels (at most [`GEOMETRY_SIDE`] a side) to trace at the
/// end, into NAME.geojson, NAME.xml or both (whichever were asked for).
pub(super) struct GeoJson {
    copy: NearestRows<Vec<u8>>,
    size: Size,
    geojson: bool,
    asap: bool,
}

impl GeoJson {
    pub(super) fn create(ctx: &OutputContext) -> Self {
        let working = ctx.plan.working.size;
        let size = fit(working, GEOMETRY_SIDE);
        let asked = |f| ctx.request.formats.contains(&f);
        Self {
            copy: NearestRows::new(Vec::new(), working, size),
            size,
            geojson: asked(Format::GEOJSON),
            asap: asked(Format::ASAP),
        }
    }
}

impl MaskOutput for GeoJson {
    fn label_rows(&mut self, rows: &[u8]) -> Result<(), EngineError> {
        Ok(self.copy.write_rows(rows)?)
    }

    fn finish(self: Box<Self>, result: &SlideResult) -> Result<Finished, EngineError> {
        let ctx = result.context;
        let working = &ctx.plan.working;
        let level0_per_px = working.downsample * f64::from(working.size.w) / f64::from(self.size.w);
        let regions = traced_regions(
            &self.copy.into_inner(),
            self.size,
            level0_per_px,
            ctx.slide.mpp().map(|m| m.mean()),
            ctx.request.min_area,
        );
        let mut staged = Vec::new();
        if self.geojson {
            let path = ctx.paths.file("geojson");
            let doc = document(&regions, level0_per_px, ctx.classes, ctx.colours);
            let bytes = serde_json::to_vec(&doc)
                .map_err(|e| EngineError::io(&path, "cannot write", e.into()))?;
            staged.push(stage_bytes(&path, &bytes, ctx.limit)?);
        }
        if self.asap {
            let xml = asap_document(&regions, level0_per_px, ctx.classes, ctx.colours);
            staged.push(stage_bytes(
                &ctx.paths.file("xml"),
                xml.as_bytes(),
                ctx.limit,
            )?);
        }
        Ok(Finished {
            staged,
            regions_written: Some(regions.len()),
            ..Finished::default()
        })
    }
}

/// A closed ring (first point not repeated), in mask pixels.
pub type Ring = Vec<(f64, f64)>;

/// A region: outer ring and holes.
#[derive(Debug, Clone)]
pub struct Polygon {
    pub shell: Ring,
    pub holes: Vec<Ring>,
}

/// Signed area: positive for outer boundaries as traced here.
pub fn signed_area(ring: &Ring) -> f64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum::<f64>()
        / 2.0
}

impl Polygon {
    pub fn area(&self) -> f64 {
        signed_area(&self.shell) + self.holes.iter().map(signed_area).sum::<f64>()
    }

    /// The number of mask pixels of the region, from its traced rings: a
    /// midpoint ring cuts 1/8 pixel at each convex corner and adds 1/8 at
    /// each concave one, and a simple ring has four more convex corners
    /// than concave, so each ring's area is 1/2 pixel short of (a hole's 1/2
    /// pixel over) the pixels it encloses. Exact before simplification.
    pub fn pixel_area(&self) -> f64 {
        self.area() + 0.5 * (1.0 - self.holes.len() as f64)
    }
}

const DIRS: [(i64, i64); 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)]; // E, S, W, N

/// Traces the regions where `mask == class`.
pub fn trace(mask: &[u8], size: Size, class: u8) -> Vec<Polygon> {
    let (w, h) = (i64::from(size.w), i64::from(size.h));
    let fg =
        |x: i64, y: i64| x >= 0 && y >= 0 && x < w && y < h && mask[(y * w + x) as usize] == class;
    // Directed boundary edges, foreground on the right: (start vertex, direction).
    let mut edges: Vec<((i64, i64), usize)> = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if !fg(x, y) {
                continue;
            }
            if !fg(x, y - 1) {
                edges.push(((x, y), 0));
            }
            if !fg(x + 1, y) {
                edges.push(((x + 1, y), 1));
            }
            if !fg(x, y + 1) {
                edges.push(((x + 1, y + 1), 2));
            }
            if !fg(x - 1, y) {
                edges.push(((x, y + 1), 3));
            }
        }
    }
    let mut starting: HashMap<(i64, i64), Vec<usize>> = HashMap::with_capacity(edges.len());
    for (i, (v, _)) in edges.iter().enumerate() {
        starting.entry(*v).or_default().push(i);
    }
    let mut used = vec![false; edges.len()];
    let mut rings: Vec<Ring> = Vec::new();
    for first in 0..edges.len() {
        if used[first] {
            continue;
        }
        let mut ring: Ring = Vec::new();
        let mut e = first;
        loop {
            used[e] = true;
            let ((x, y), d) = edges[e];
            let (dx, dy) = DIRS[d];
            ring.push((x as f64 + dx as f64 * 0.5, y as f64 + dy as f64 * 0.5));
            let end = (x + dx, y + dy);
            let candidates = &starting[&end];
            // At a saddle, turn right: diagonal neighbours stay separate regions.
            let right = (d + 1) % 4;
            let next = candidates
                .iter()
                .copied()
                .find(|&c| !used[c] && edges[c].1 == right)
                .or_else(|| candidates.iter().copied().find(|&c| !used[c]));
            match next {
                Some(n) => e = n,
                None => break,
            }
        }
        rings.push(drop_collinear(ring));
    }
    assemble(rings)
}

/// Removes vertices that lie on the straight line between their neighbours.
fn drop_collinear(ring: Ring) -> Ring {
    let n = ring.len();
    if n < 4 {
        return ring;
    }
    let keep: Vec<bool> = (0..n)
        .map(|i| {
            let (a, b, c) = (ring[(i + n - 1) % n], ring[i], ring[(i + 1) % n]);
            ((b.0 - a.0) * (c.1 - b.1) - (b.1 - a.1) * (c.0 - b.0)).abs() > 1e-9
        })
        .collect();
    ring.into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(p, _)| p)
        .collect()
}

fn bbox(r: &Ring) -> (f64, f64, f64, f64) {
    r.iter()
        .fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |b, p| {
            (b.0.min(p.0), b.1.min(p.1), b.2.max(p.0), b.3.max(p.1))
        })
}

/// Even-odd point in ring.
pub fn contains(ring: &Ring, p: (f64, f64)) -> bool {
    let n = ring.len();
    let mut inside = false;
    for i in 0..n {
        let (a, b) = (ring[i], ring[(i + 1) % n]);
        if (a.1 > p.1) != (b.1 > p.1) && p.0 < a.0 + (p.1 - a.1) * (b.0 - a.0) / (b.1 - a.1) {
            inside = !inside;
        }
    }
    inside
}

/// Douglas–Peucker tolerance, in mask pixels.
pub const SIMPLIFY_PX: f64 = 0.7;

/// Douglas–Peucker on a closed ring, anchored at its first point and the
/// point farthest from it.
fn simplify_ring(ring: &Ring, tolerance: f64) -> Ring {
    let n = ring.len();
    if n <= 4 {
        return ring.clone();
    }
    let far = (1..n)
        .max_by(|&a, &b| dist2(ring[0], ring[a]).total_cmp(&dist2(ring[0], ring[b])))
        .unwrap_or(n / 2);
    let mut keep = vec![false; n];
    keep[0] = true;
    keep[far] = true;
    let pts: Vec<(f64, f64)> = ring
        .iter()
        .copied()
        .chain(std::iter::once(ring[0]))
        .collect();
    let mut stack = vec![(0usize, far), (far, n)];
    while let Some((a, b)) = stack.pop() {
        if b <= a + 1 {
            continue;
        }
        let (i, d) = (a + 1..b)
            .map(|i| (i, segment_distance(pts[i], pts[a], pts[b])))
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .expect("non-empty range");
        if d > tolerance {
            keep[i % n] = true;
            stack.push((a, i));
            stack.push((i, b));
        }
    }
    let out: Ring = ring
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(p, _)| *p)
        .collect();
    if out.len() < 3 {
        ring.clone()
    } else {
        out
    }
}

fn dist2(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)
}

fn segment_distance(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let l2 = dist2(a, b);
    if l2 == 0.0 {
        return dist2(p, a).sqrt();
    }
    let t = (((p.0 - a.0) * (b.0 - a.0) + (p.1 - a.1) * (b.1 - a.1)) / l2).clamp(0.0, 1.0);
    dist2(p, (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))).sqrt()
}

fn orient(o: (f64, f64), p: (f64, f64), q: (f64, f64)) -> f64 {
    (p.0 - o.0) * (q.1 - o.1) - (p.1 - o.1) * (q.0 - o.0)
}

/// Whether closed segments ab and cd share any point.
fn segments_meet(a: (f64, f64), b: (f64, f64), c: (f64, f64), d: (f64, f64)) -> bool {
    let within = |p: (f64, f64), q: (f64, f64), r: (f64, f64)| {
        r.0 >= p.0.min(q.0) && r.0 <= p.0.max(q.0) && r.1 >= p.1.min(q.1) && r.1 <= p.1.max(q.1)
    };
    let (d1, d2, d3, d4) = (
        orient(c, d, a),
        orient(c, d, b),
        orient(a, b, c),
        orient(a, b, d),
    );
    if d1 * d2 < 0.0 && d3 * d4 < 0.0 {
        return true;
    }
    (d1 == 0.0 && within(c, d, a))
        || (d2 == 0.0 && within(c, d, b))
        || (d3 == 0.0 && within(a, b, c))
        || (d4 == 0.0 && within(a, b, d))
}

/// Whether the rings of a polygon are simple and disjoint (OGC validity,
/// shell/hole nesting aside), checked on a grid of buckets.
pub fn rings_are_simple(rings: &[Ring]) -> bool {
    const CELL: f64 = 16.0;
    // (ring, index, ring length, a, b)
    let mut segs = Vec::new();
    for (r, ring) in rings.iter().enumerate() {
        if ring.len() < 3 {
            return false;
        }
        for i in 0..ring.len() {
            segs.push((r, i, ring.len(), ring[i], ring[(i + 1) % ring.len()]));
        }
    }
    let mut grid: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
    for (k, s) in segs.iter().enumerate() {
        let (x0, x1) = (s.3 .0.min(s.4 .0), s.3 .0.max(s.4 .0));
        let (y0, y1) = (s.3 .1.min(s.4 .1), s.3 .1.max(s.4 .1));
        for gx in (x0 / CELL).floor() as i64..=(x1 / CELL).floor() as i64 {
            for gy in (y0 / CELL).floor() as i64..=(y1 / CELL).floor() as i64 {
                grid.entry((gx, gy)).or_default().push(k);
            }
        }
    }
    for bucket in grid.values() {
        for (i, &p) in bucket.iter().enumerate() {
            for &q in &bucket[i + 1..] {
                let (s, t) = (segs[p], segs[q]);
                let adjacent = s.0 == t.0 && ((s.1 + 1) % s.2 == t.1 || (t.1 + 1) % t.2 == s.1);
                if !adjacent && segments_meet(s.3, s.4, t.3, t.4) {
                    return false;
                }
            }
        }
    }
    true
}

impl Polygon {
    /// The polygon with Douglas–Peucker rings, or itself when simplifying
    /// would make rings touch or cross (or lose a ring).
    pub fn simplified(&self, tolerance: f64) -> Polygon {
        let shell = simplify_ring(&self.shell, tolerance);
        let holes: Vec<Ring> = self
            .holes
            .iter()
            .map(|h| simplify_ring(h, tolerance))
            .collect();
        let mut rings = vec![shell.clone()];
        rings.extend(holes.iter().cloned());
        let nested = holes.iter().all(|h| contains(&shell, h[0]));
        let oriented = signed_area(&shell) > 0.0 && holes.iter().all(|h| signed_area(h) < 0.0);
        if nested && oriented && rings_are_simple(&rings) {
            Polygon { shell, holes }
        } else {
            self.clone()
        }
    }
}

/// Gives each hole to the smallest shell around it.
fn assemble(rings: Vec<Ring>) -> Vec<Polygon> {
    let (shells, holes): (Vec<Ring>, Vec<Ring>) =
        rings.into_iter().partition(|r| signed_area(r) > 0.0);
    let boxes: Vec<_> = shells.iter().map(bbox).collect();
    let areas: Vec<f64> = shells.iter().map(signed_area).collect();
    let mut polygons: Vec<Polygon> = shells
        .into_iter()
        .map(|shell| Polygon {
            shell,
            holes: Vec::new(),
        })
        .collect();
    for hole in holes {
        let p = hole[0];
        let owner = (0..polygons.len())
            .filter(|&i| {
                let b = boxes[i];
                p.0 >= b.0
                    && p.0 <= b.2
                    && p.1 >= b.1
                    && p.1 <= b.3
                    && contains(&polygons[i].shell, p)
            })
            .min_by(|&a, &b| areas[a].total_cmp(&areas[b]));
        if let Some(i) = owner {
            polygons[i].holes.push(hole);
        }
    }
    polygons
}

/// A traced region of one class, ready to write.
struct Traced {
    class: u8,
    /// Simplified, in mask pixels.
    poly: Polygon,
    /// Its pixels' area in level-0 pixels².
    area_level0: f64,
    /// The same in µm², when the slide's mpp is known.
    area_um2: Option<f64>,
}

/// The regions of every class ≥ 1 of `mask` (`size` pixels, each
/// `level0_per_px` level-0 pixels wide), those under `min_area` (µm², or
/// level-0 px² without an mpp) left out; class by class, as traced.
fn traced_regions(
    mask: &[u8],
    size: Size,
    level0_per_px: f64,
    mpp: Option<f64>,
    min_area: f64,
) -> Vec<Traced> {
    let mut seen = [false; 256];
    for &v in mask {
        seen[v as usize] = true;
    }
    let mut out = Vec::new();
    for class in (1..=255u8).filter(|&c| seen[c as usize]) {
        for poly in trace(mask, size, class) {
            // Measured on the region's pixels, drawn smoothed (within SIMPLIFY_PX).
            let area_level0 = poly.pixel_area() * level0_per_px * level0_per_px;
            let area_um2 = mpp.map(|m| area_level0 * m * m);
            if area_um2.unwrap_or(area_level0) < min_area {
                continue;
            }
            out.push(Traced {
                class,
                poly: poly.simplified(SIMPLIFY_PX),
                area_level0,
                area_um2,
            });
        }
    }
    out
}

/// A class's name and colour.
fn class_of(class: u8, classes: &[String], colours: &[[u8; 3]]) -> (String, [u8; 3]) {
    let name = classes
        .get(class as usize)
        .cloned()
        .unwrap_or_else(|| format!("class {class}"));
    let colour = colours
        .get(class as usize)
        .copied()
        .unwrap_or([128, 128, 128]);
    (name, colour)
}

/// The GeoJSON FeatureCollection of the regions.
fn document(
    regions: &[Traced],
    level0_per_px: f64,
    classes: &[String],
    colours: &[[u8; 3]],
) -> Value {
    let ring = |r: &Ring| -> Value {
        let mut pts: Vec<Value> = r
            .iter()
            .map(|p| json!([round2(p.0 * level0_per_px), round2(p.1 * level0_per_px)]))
            .collect();
        pts.push(pts[0].clone());
        Value::Array(pts)
    };
    let features: Vec<Value> = regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (name, color) = class_of(r.class, classes, colours);
            let mut rings = vec![ring(&r.poly.shell)];
            rings.extend(r.poly.holes.iter().map(ring));
            let mut measurements = serde_json::Map::new();
            measurements.insert("Area (level-0 px^2)".into(), json!(r.area_level0.round()));
            if let Some(um2) = r.area_um2 {
                measurements.insert("Area µm^2".into(), json!(round2(um2)));
                measurements.insert("Area mm^2".into(), json!(um2 / 1e6));
            }
            json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": rings},
                "properties": {
                    "objectType": "annotation",
                    "name": format!("{name} {}", i + 1),
                    "classification": {"name": name, "color": color},
                    "isLocked": false,
                    "measurements": measurements,
                },
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

/// One ring holding a polygon's holes, each joined to it by a bridge walked
/// there and back (a keyhole): ASAP annotations have no holes, and both the
/// even–odd and the non-zero rule fill the keyhole ring exactly as the
/// polygon with its holes (the bridge's two passes cancel; holes run against
/// the shell).
fn keyhole(poly: &Polygon) -> Ring {
    let mut ring = poly.shell.clone();
    for hole in poly.holes.iter().filter(|h| !h.is_empty()) {
        let h0 = hole[0];
        let i = (0..ring.len())
            .min_by(|&a, &b| dist2(ring[a], h0).total_cmp(&dist2(ring[b], h0)))
            .unwrap_or(0);
        let mut joined = Vec::with_capacity(ring.len() + hole.len() + 2);
        joined.extend_from_slice(&ring[..=i]);
        joined.extend_from_slice(hole);
        joined.push(h0);
        joined.push(ring[i]);
        joined.extend_from_slice(&ring[i + 1..]);
        ring = joined;
    }
    ring
}

/// Text for an XML attribute value.
fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The regions as ASAP annotations: one Polygon per region (holes joined
/// in, [`keyhole`]) in the group of its class, coordinates in level-0
/// pixels; one group per class present, in the class colour.
fn asap_document(
    regions: &[Traced],
    level0_per_px: f64,
    classes: &[String],
    colours: &[[u8; 3]],
) -> String {
    use std::fmt::Write as _;
    let hex = |c: [u8; 3]| format!("#{:02X}{:02X}{:02X}", c[0], c[1], c[2]);
    let mut xml = String::from("<?xml version=\"1.0\"?>\n<ASAP_Annotations>\n\t<Annotations>\n");
    let mut groups: Vec<u8> = Vec::new();
    for (i, r) in regions.iter().enumerate() {
        let (name, colour) = class_of(r.class, classes, colours);
        if !groups.contains(&r.class) {
            groups.push(r.class);
        }
        let _ = writeln!(
            xml,
            "\t\t<Annotation Name=\"{} {}\" Type=\"Polygon\" PartOfGroup=\"{}\" Color=\"{}\">\n\t\t\t<Coordinates>",
            xml_attr(&name),
            i + 1,
            xml_attr(&name),
            hex(colour)
        );
        for (k, p) in keyhole(&r.poly).iter().enumerate() {
            let _ = writeln!(
                xml,
                "\t\t\t\t<Coordinate Order=\"{k}\" X=\"{}\" Y=\"{}\" />",
                round2(p.0 * level0_per_px),
                round2(p.1 * level0_per_px)
            );
        }
        xml.push_str("\t\t\t</Coordinates>\n\t\t</Annotation>\n");
    }
    xml.push_str("\t</Annotations>\n\t<AnnotationGroups>\n");
    for class in groups {
        let (name, colour) = class_of(class, classes, colours);
        let _ = writeln!(
            xml,
            "\t\t<Group Name=\"{}\" PartOfGroup=\"None\" Color=\"{}\">\n\t\t\t<Attributes />\n\t\t</Group>",
            xml_attr(&name),
            hex(colour)
        );
    }
    xml.push_str("\t</AnnotationGroups>\n</ASAP_Annotations>\n");
    xml
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> (Vec<u8>, Size) {
        let h = rows.len() as u32;
        let w = rows[0].len() as u32;
        let m = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
            .collect();
        (m, Size::new(w, h))
    }

    /// Non-zero winding number of `ring` around `p`.
    fn winding(ring: &Ring, p: (f64, f64)) -> i32 {
        let n = ring.len();
        let mut w = 0;
        for i in 0..n {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            let side = (b.0 - a.0) * (p.1 - a.1) - (p.0 - a.0) * (b.1 - a.1);
            if a.1 <= p.1 && b.1 > p.1 && side > 0.0 {
                w += 1;
            } else if a.1 > p.1 && b.1 <= p.1 && side < 0.0 {
                w -= 1;
            }
        }
        w
    }

    /// A region with two holes, an island in one of them: the keyhole
    /// rings (and the island's ring) hold exactly the mask's pixel centres,
    /// by the even–odd rule and by the non-zero rule; the ASAP document
    /// names the class, its colour and every vertex in level-0 pixels.
    #[test]
    fn keyhole_rings_fill_like_the_polygon_with_its_holes() {
        let (m, s) = mask(&[
            "...........", //
            ".#########.", //
            ".#...#...#.", //
            ".#.#.#...#.", //
            ".#...#...#.", //
            ".#########.", //
            "...........", //
        ]);
        let polys = trace(&m, s, 1);
        assert!(polys.iter().any(|p| p.holes.len() == 2), "{polys:?}");
        let rings: Vec<Ring> = polys.iter().map(keyhole).collect();
        for y in 0..s.h {
            for x in 0..s.w {
                let p = (f64::from(x) + 0.5, f64::from(y) + 0.5);
                let want = m[(y * s.w + x) as usize] == 1;
                let odd = rings.iter().filter(|r| contains(r, p)).count() % 2 == 1;
                let wound = rings.iter().map(|r| winding(r, p)).sum::<i32>() != 0;
                assert_eq!((odd, wound), (want, want), "pixel ({x}, {y})");
            }
        }
        let regions: Vec<Traced> = polys
            .into_iter()
            .map(|poly| Traced {
                class: 1,
                poly,
                area_level0: 0.0,
                area_um2: None,
            })
            .collect();
        let xml = asap_document(
            &regions,
            4.0,
            &["background".into(), "a<b".into()],
            &[[0, 0, 0], [230, 30, 30]],
        );
        assert!(xml.starts_with("<?xml version=\"1.0\"?>\n<ASAP_Annotations>"));
        assert_eq!(xml.matches("<Annotation ").count(), 2);
        assert_eq!(
            xml.matches("<Group Name=\"a&lt;b\" PartOfGroup=\"None\" Color=\"#E61E1E\">")
                .count(),
            1,
            "{xml}"
        );
        let vertices: usize = rings.iter().map(Vec::len).sum();
        assert_eq!(xml.matches("<Coordinate ").count(), vertices);
        // Level-0 pixels: the first vertex (1.5, 1) of the mask is (6, 4).
        assert!(xml.contains("X=\"6\" Y=\"4\""), "{xml}");
    }

    #[test]
    fn a_square_with_a_hole_and_a_diagonal_neighbour() {
        let (m, s) = mask(&[
            "......", //
            ".###..", //
            ".#.#..", //
            ".###..", //
            "....#.", //
        ]);
        let polys = trace(&m, s, 1);
        assert_eq!(polys.len(), 2, "the diagonal pixel is its own region");
        let big = polys
            .iter()
            .find(|p| p.holes.len() == 1)
            .expect("ring with a hole");
        // Midpoint vertices cut each corner by 1/8 px²: the 3×3 shell is an
        // octagon of 8.5 px², the 1-px hole a diamond of 0.5 px².
        assert!((big.area() - 8.0).abs() < 1e-9, "{}", big.area());
        let small = polys.iter().find(|p| p.holes.is_empty()).unwrap();
        assert!((small.area() - 0.5).abs() < 1e-9);
        assert!(contains(&big.shell, (2.5, 2.5)) && !contains(&big.holes[0], (1.5, 1.5)));
        let rings = |p: &Polygon| [vec![p.shell.clone()], p.holes.clone()].concat();
        assert!(rings_are_simple(&rings(big)));
    }

    /// The measured area of a traced region is its pixel count, whatever
    /// its shape: rectangles, thin bars, holes, staircases, a lone pixel.
    #[test]
    fn pixel_area_of_traced_regions_is_their_pixel_count() {
        let size = Size::new(64, 48);
        let shapes: [&dyn Fn(u32, u32) -> bool; 5] = [
            &|x, y| (2..40).contains(&x) && (3..8).contains(&y),
            &|x, y| (x, y) == (20, 20),
            &|x, y| {
                (4..44).contains(&x)
                    && (4..44).contains(&y)
                    && !((10..20).contains(&x) && (10..20).contains(&y))
                    && !((25..30).contains(&x) && (30..41).contains(&y))
            },
            &|x, y| (f64::from(x) - 0.37 * f64::from(y) - 20.0).abs() < 6.0,
            &|x, y| (x / 3 + y / 2) % 5 == 0 && x < 30,
        ];
        for (k, shape) in shapes.iter().enumerate() {
            let m: Vec<u8> = (0..size.area() as u32)
                .map(|i| u8::from(shape(i % size.w, i / size.w)))
                .collect();
            let polys = trace(&m, size, 1);
            let traced: f64 = polys.iter().map(Polygon::pixel_area).sum();
            let pixels = m.iter().filter(|&&v| v == 1).count() as f64;
            assert_eq!(traced, pixels, "shape {k}: {} regions", polys.len());
        }
    }

    #[test]
    fn simplification_removes_staircases_and_never_breaks_validity() {
        // A diagonal band: a staircase of many vertices that simplifies to a few.
        let size = Size::new(60, 60);
        let m: Vec<u8> = (0..3600u32)
            .map(|i| {
                let (x, y) = (i % 60, i / 60);
                u8::from((f64::from(x) - 0.37 * f64::from(y) - 20.0).abs() < 6.0)
            })
            .collect();
        let polys = trace(&m, size, 1);
        assert_eq!(polys.len(), 1);
        let s = polys[0].simplified(SIMPLIFY_PX);
        assert!(
            s.shell.len() * 4 < polys[0].shell.len(),
            "{} → {}",
            polys[0].shell.len(),
            s.shell.len()
        );
        assert!((s.area() - polys[0].area()).abs() / polys[0].area() < 0.02);
        assert!(rings_are_simple(std::slice::from_ref(&s.shell)));
        // A crossing pair of segments is caught.
        let bowtie = vec![(0.0, 0.0), (2.0, 2.0), (2.0, 0.0), (0.0, 2.0)];
        assert!(!rings_are_simple(&[bowtie]));
    }
}
