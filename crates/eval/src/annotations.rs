//! Ground truth drawn as polygons: ASAP XML (`<ASAP_Annotations>`, as the
//! CAMELYON and ACDC@LungHP challenges hand it out) and GeoJSON (QuPath's
//! export, or wsiseg's own `NAME.geojson`), in the slide's level-0 pixels,
//! rasterised row by row at a prediction's resolution.
//!
//! Every annotation gets a label from its group (ASAP `PartOfGroup`) or
//! classification (GeoJSON `properties.classification`): see [`Labels`].
//! A pixel is inside a polygon when its centre is (even–odd rule over the
//! polygon's rings, so holes are holes). A pixel inside any polygon labelled
//! 0 (an exclusion, CAMELYON's `_2`) is 0; else it takes the largest label of
//! the polygons that hold it; else 0.

use std::path::Path;

use serde_json::Value;

use crate::EvalError;

/// File extensions read as annotations rather than masks.
pub const ANNOTATION_EXTENSIONS: &[&str] = &["xml", "geojson"];

/// Whether `path` names an annotation file (by its extension).
pub fn is_annotation_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ANNOTATION_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// How annotation names become labels, in this order:
/// 1. `explicit` (`--truth-labels NAME=LABEL`, names compared without case);
/// 2. a class name (`--classes`; `tumor` → 1 with the default classes);
/// 3. exclusion names → 0: `_2` (CAMELYON), a word `exclusion`,
///    `excluded`, `exclude`, `normal`, `benign`, `background` or `ignore`,
///    or "non" before a tumor word (`Non-tumor`, `non-neoplastic`);
/// 4. tumor names → 1: `_0`, `_1` (CAMELYON), or containing `tumo` (tumor,
///    tumour), `carcinoma`, `cancer`, `malignan`, `metasta`, `neoplas` or
///    `lesion`;
/// 5. an annotation with no group or classification → 1.
///
/// Any other name is an error naming it (never a silent guess).
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// Names given a label by the user.
    pub explicit: Vec<(String, u8)>,
    /// Class names by label value, background first.
    pub classes: Vec<String>,
}

impl Labels {
    /// The label of annotations named `name` (`None`: no rule applies).
    pub fn of(&self, name: Option<&str>) -> Option<u8> {
        let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
            return Some(1);
        };
        let lower = name.to_lowercase();
        if let Some((_, l)) = self
            .explicit
            .iter()
            .find(|(n, _)| n.to_lowercase() == lower)
        {
            return Some(*l);
        }
        if let Some(i) = self.classes.iter().position(|c| c.to_lowercase() == lower) {
            return u8::try_from(i).ok();
        }
        const TUMOR: [&str; 7] = [
            "tumo",
            "carcinoma",
            "cancer",
            "malignan",
            "metasta",
            "neoplas",
            "lesion",
        ];
        const EXCLUDED: [&str; 7] = [
            "exclusion",
            "excluded",
            "exclude",
            "normal",
            "benign",
            "background",
            "ignore",
        ];
        // "Non-tumor", "non tumour", "non-neoplastic"…: one word, after "non".
        let compact: String = lower.chars().filter(|c| c.is_alphanumeric()).collect();
        let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).collect();
        if lower == "_2"
            || TUMOR.iter().any(|t| compact.contains(&format!("non{t}")))
            || words.iter().any(|w| EXCLUDED.contains(w))
        {
            return Some(0);
        }
        if lower == "_0" || lower == "_1" || TUMOR.iter().any(|t| lower.contains(t)) {
            return Some(1);
        }
        None
    }
}

/// One annotated region: its rings (outer and holes) in level-0 pixels.
#[derive(Debug, Clone)]
struct Region {
    label: u8,
    rings: Vec<Vec<(f64, f64)>>,
}

/// The regions of one annotation file.
#[derive(Debug, Clone)]
pub struct Annotations {
    regions: Vec<Region>,
    /// Annotations without an area (points, lines) that were left out.
    pub skipped: usize,
}

/// An annotation as read, before labelling.
struct Raw {
    name: Option<String>,
    rings: Vec<Vec<(f64, f64)>>,
}

fn problem(path: &Path, problem: impl Into<String>) -> EvalError {
    EvalError::Annotations {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

impl Annotations {
    /// Reads ASAP XML or GeoJSON (told apart by the first character) and
    /// labels every annotation.
    pub fn read(path: &Path, labels: &Labels) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = text.trim_start_matches('\u{feff}');
        let (raw, skipped) = if text.trim_start().starts_with('<') {
            asap(path, text)?
        } else {
            geojson(path, text)?
        };
        let mut regions = Vec::with_capacity(raw.len());
        for r in raw {
            let label = labels
                .of(r.name.as_deref())
                .ok_or_else(|| EvalError::Unlabelled {
                    path: path.to_path_buf(),
                    class: r.name.clone().unwrap_or_default(),
                })?;
            if usize::from(label) >= labels.classes.len().max(2) {
                return Err(problem(
                    path,
                    format!(
                        "annotation class '{}' has label {label}, but there are only {} classes",
                        r.name.unwrap_or_default(),
                        labels.classes.len().max(2)
                    ),
                ));
            }
            regions.push(Region {
                label,
                rings: r.rings,
            });
        }
        Ok(Self { regions, skipped })
    }

    /// How many regions (polygons with an area) the file holds.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether the file holds no region.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// A rasteriser of these regions at `size` pixels, each `downsample`
    /// level-0 pixels wide.
    pub fn raster(&self, size: (u32, u32), downsample: f64) -> Raster {
        let mut edges = Vec::new();
        for (id, region) in self.regions.iter().enumerate() {
            for ring in &region.rings {
                for (i, &(x0, y0)) in ring.iter().enumerate() {
                    let (x1, y1) = ring[(i + 1) % ring.len()];
                    let (x0, y0, x1, y1) = (
                        x0 / downsample,
                        y0 / downsample,
                        x1 / downsample,
                        y1 / downsample,
                    );
                    if y0 == y1
                        || !(x0.is_finite() && y0.is_finite() && x1.is_finite() && y1.is_finite())
                    {
                        continue;
                    }
                    edges.push(Edge {
                        region: id as u32,
                        top: y0.min(y1),
                        bottom: y0.max(y1),
                        x_at_y0: x0,
                        y0,
                        slope: (x1 - x0) / (y1 - y0),
                    });
                }
            }
        }
        edges.sort_by(|a, b| a.top.total_cmp(&b.top));
        Raster {
            labels: self.regions.iter().map(|r| r.label).collect(),
            edges,
            size,
            next_edge: 0,
            active: Vec::new(),
            next_row: 0,
        }
    }
}

/// One polygon edge in raster pixels.
#[derive(Debug, Clone)]
struct Edge {
    region: u32,
    top: f64,
    bottom: f64,
    x_at_y0: f64,
    y0: f64,
    slope: f64,
}

/// Polygons turned into label rows, top to bottom (scanline with an active
/// edge list: memory is the edges and one row).
#[derive(Debug, Clone)]
pub struct Raster {
    labels: Vec<u8>,
    edges: Vec<Edge>,
    size: (u32, u32),
    next_edge: usize,
    active: Vec<usize>,
    next_row: u32,
}

impl Raster {
    /// Width and height.
    pub fn size(&self) -> (u32, u32) {
        self.size
    }

    /// Rows `y0..y0 + n`, `width` bytes each.
    pub fn rows(&mut self, y0: u32, n: u32) -> Vec<u8> {
        if y0 < self.next_row {
            self.next_edge = 0;
            self.active.clear();
        }
        let w = self.size.0 as usize;
        let mut out = vec![0u8; w * n as usize];
        let mut excluded = vec![false; w];
        let mut crossings: Vec<(u32, f64)> = Vec::new();
        for (r, row) in out.chunks_exact_mut(w.max(1)).enumerate() {
            let yc = f64::from(y0) + r as f64 + 0.5;
            while self.next_edge < self.edges.len() && self.edges[self.next_edge].top <= yc {
                self.active.push(self.next_edge);
                self.next_edge += 1;
            }
            let edges = &self.edges;
            self.active.retain(|&e| edges[e].bottom > yc);
            crossings.clear();
            // Every active edge starts at or above this row's centre.
            crossings.extend(self.active.iter().map(|&e| {
                let e = &edges[e];
                (e.region, e.x_at_y0 + (yc - e.y0) * e.slope)
            }));
            crossings.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            excluded.fill(false);
            // Each region's crossings, in pairs: inside between 1st and
            // 2nd, 3rd and 4th… (an odd one out, from a broken ring, is
            // dropped).
            for group in crossings.chunk_by(|a, b| a.0 == b.0) {
                let label = self.labels[group[0].0 as usize];
                for pair in group.chunks_exact(2) {
                    // Pixels whose centre x + 0.5 lies in [xa, xb).
                    let first = (pair[0].1 - 0.5).ceil().clamp(0.0, w as f64) as usize;
                    let end = (pair[1].1 - 0.5).ceil().clamp(0.0, w as f64) as usize;
                    if first >= end {
                        continue;
                    }
                    if label == 0 {
                        excluded[first..end].fill(true);
                    } else {
                        for v in &mut row[first..end] {
                            *v = (*v).max(label);
                        }
                    }
                }
            }
            for (v, &x) in row.iter_mut().zip(&excluded) {
                if x {
                    *v = 0;
                }
            }
        }
        self.next_row = y0 + n;
        out
    }
}

/// A number written by ASAP: a decimal point, or a comma where the locale of
/// the machine that saved it uses one.
fn number(s: &str) -> Option<f64> {
    s.trim()
        .replace(',', ".")
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
}

/// `<ASAP_Annotations><Annotations><Annotation PartOfGroup=… Type=…>
/// <Coordinates><Coordinate Order=… X=… Y=…/>…`.
fn asap(path: &Path, text: &str) -> Result<(Vec<Raw>, usize), EvalError> {
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| problem(path, format!("not valid XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "ASAP_Annotations" {
        return Err(problem(
            path,
            format!(
                "not ASAP annotations (the root element is <{}>, not <ASAP_Annotations>)",
                root.tag_name().name()
            ),
        ));
    }
    let mut out = Vec::new();
    let mut skipped = 0;
    for a in root.descendants().filter(|n| n.has_tag_name("Annotation")) {
        let kind = a.attribute("Type").unwrap_or("Polygon");
        let title = a.attribute("Name").unwrap_or("?");
        let mut points: Vec<(f64, f64, f64)> = Vec::new();
        for c in a.descendants().filter(|n| n.has_tag_name("Coordinate")) {
            let get = |k: &str| {
                c.attribute(k).and_then(number).ok_or_else(|| {
                    let line = doc.text_pos_at(c.range().start).row;
                    problem(
                        path,
                        format!("line {line}: annotation '{title}' has a coordinate without a number {k}"),
                    )
                })
            };
            let order = c
                .attribute("Order")
                .and_then(number)
                .unwrap_or(points.len() as f64);
            points.push((order, get("X")?, get("Y")?));
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ring: Vec<(f64, f64)> = points.into_iter().map(|(_, x, y)| (x, y)).collect();
        let area_kind =
            ["polygon", "rectangle", "spline"].contains(&kind.to_ascii_lowercase().as_str());
        if !area_kind || ring.len() < 3 {
            skipped += 1;
            continue;
        }
        let name = a
            .attribute("PartOfGroup")
            .filter(|g| !g.is_empty() && *g != "None")
            .map(str::to_string);
        out.push(Raw {
            name,
            rings: vec![ring],
        });
    }
    Ok((out, skipped))
}

/// A FeatureCollection, an array of Features, one Feature, or a bare
/// geometry; Polygons and MultiPolygons (holes kept), other geometries
/// skipped.
fn geojson(path: &Path, text: &str) -> Result<(Vec<Raw>, usize), EvalError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| problem(path, format!("neither ASAP XML nor valid GeoJSON: {e}")))?;
    let features: Vec<&Value> = match &doc {
        Value::Array(items) => items.iter().collect(),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("FeatureCollection") => o
            .get("features")
            .and_then(Value::as_array)
            .ok_or_else(|| problem(path, "a FeatureCollection without a \"features\" array"))?
            .iter()
            .collect(),
        Value::Object(_) => vec![&doc],
        _ => return Err(problem(path, "not a GeoJSON object or array")),
    };
    let mut out = Vec::new();
    let mut skipped = 0;
    for (i, f) in features.iter().enumerate() {
        let (geometry, name) = if f.get("type").and_then(Value::as_str) == Some("Feature") {
            let class = &f["properties"]["classification"];
            let name = class["name"]
                .as_str()
                .or_else(|| class.as_str())
                .map(str::to_string);
            (&f["geometry"], name)
        } else {
            (*f, None)
        };
        let polygons =
            polygons(geometry).map_err(|why| problem(path, format!("feature {i}: {why}")))?;
        if polygons.is_empty() {
            skipped += 1;
        }
        for rings in polygons {
            out.push(Raw {
                name: name.clone(),
                rings,
            });
        }
    }
    Ok((out, skipped))
}

type Rings = Vec<Vec<(f64, f64)>>;

/// The polygons of a GeoJSON geometry (none for points and lines).
fn polygons(g: &Value) -> Result<Vec<Rings>, String> {
    let ring = |r: &Value| -> Result<Vec<(f64, f64)>, String> {
        r.as_array()
            .ok_or("a ring is not an array")?
            .iter()
            .map(|p| {
                match (
                    p.get(0).and_then(Value::as_f64),
                    p.get(1).and_then(Value::as_f64),
                ) {
                    (Some(x), Some(y)) => Ok((x, y)),
                    _ => Err(format!("a position is not [x, y]: {p}")),
                }
            })
            .collect()
    };
    let polygon = |p: &Value| -> Result<Rings, String> {
        p.as_array()
            .ok_or("a polygon is not an array of rings")?
            .iter()
            .map(ring)
            .filter(|r| !matches!(r, Ok(r) if r.len() < 3))
            .collect()
    };
    let coords = &g["coordinates"];
    Ok(match g["type"].as_str() {
        Some("Polygon") => vec![polygon(coords)?],
        Some("MultiPolygon") => coords
            .as_array()
            .ok_or("MultiPolygon coordinates are not an array")?
            .iter()
            .map(polygon)
            .collect::<Result<_, _>>()?,
        Some("GeometryCollection") => {
            let mut all = Vec::new();
            for part in g["geometries"]
                .as_array()
                .ok_or("a GeometryCollection without geometries")?
            {
                all.extend(polygons(part)?);
            }
            all
        }
        None if g.is_null() => Vec::new(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|rings: &Rings| !rings.is_empty())
    .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn labels() -> Labels {
        Labels {
            explicit: Vec::new(),
            classes: vec!["background".into(), "tumor".into()],
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn count(rows: &[u8], v: u8) -> usize {
        rows.iter().filter(|&&x| x == v).count()
    }

    /// A 40×20 rectangle at (10, 10) with a 10×10 hole cut out by a `_2`
    /// exclusion, read at downsample 2: a 20×10 block of 1s minus 5×5.
    #[test]
    fn asap_polygons_with_an_exclusion() {
        let dir = tempfile::tempdir().unwrap();
        let xml = r##"<?xml version="1.0"?>
<ASAP_Annotations>
  <Annotations>
    <Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="2" X="50" Y="30" />
        <Coordinate Order="0" X="10" Y="10" />
        <Coordinate Order="1" X="50" Y="10" />
        <Coordinate Order="3" X="10" Y="30" />
      </Coordinates>
    </Annotation>
    <Annotation Name="hole" Type="Rectangle" PartOfGroup="_2">
      <Coordinates>
        <Coordinate Order="0" X="20,0" Y="14" />
        <Coordinate Order="1" X="30" Y="14" />
        <Coordinate Order="2" X="30" Y="24" />
        <Coordinate Order="3" X="20" Y="24" />
      </Coordinates>
    </Annotation>
    <Annotation Name="a dot" Type="Dot" PartOfGroup="_0">
      <Coordinates><Coordinate Order="0" X="1" Y="1" /></Coordinates>
    </Annotation>
  </Annotations>
  <AnnotationGroups><Group Name="_0" PartOfGroup="None" Color="#ff0000"><Attributes /></Group></AnnotationGroups>
</ASAP_Annotations>"##;
        let a = Annotations::read(&write(dir.path(), "a.xml", xml), &labels()).unwrap();
        assert_eq!((a.len(), a.skipped), (2, 1));
        let mut r = a.raster((40, 30), 2.0);
        let rows = r.rows(0, 30);
        assert_eq!(count(&rows, 1), 20 * 10 - 5 * 5);
        // Row 5 (level-0 y 10–12) from x 5 to 24; the hole at x 10–14, rows 7–11.
        assert_eq!(
            &rows[5 * 40 + 4..5 * 40 + 26],
            &[&[0u8][..], &[1; 20], &[0]].concat()[..]
        );
        assert_eq!(rows[8 * 40 + 9..8 * 40 + 16], [1, 0, 0, 0, 0, 0, 1]);
        // Read again in bands, from any row: the same.
        let mut again = Vec::new();
        for y in (0..30).step_by(7) {
            again.extend(r.rows(y, 7.min(30 - y)));
        }
        assert_eq!(again, rows);
    }

    /// QuPath's export: a FeatureCollection of classified polygons, one with
    /// a hole, a MultiPolygon, a point; classes by `--classes`, by the
    /// built-in names, by `--truth-labels`; an unknown class is an error
    /// naming it.
    #[test]
    fn geojson_features_holes_and_classes() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"type": "FeatureCollection", "features": [
 {"type": "Feature", "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}},
  "geometry": {"type": "Polygon", "coordinates": [[[0,0],[10,0],[10,10],[0,10],[0,0]], [[2,2],[4,2],[4,4],[2,4],[2,2]]]}},
 {"type": "Feature", "properties": {"classification": {"name": "Stroma"}},
  "geometry": {"type": "MultiPolygon", "coordinates": [[[[12,0],[14,0],[14,2],[12,2]]], [[[16,0],[18,0],[18,2],[16,2]]]]}},
 {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [1, 1]}}
]}"#;
        let path = write(dir.path(), "b.geojson", text);
        let e = Annotations::read(&path, &labels()).unwrap_err().to_string();
        assert!(
            e.contains("b.geojson: ")
                && e.contains("'Stroma' has no label")
                && e.contains("label it 'Stroma=1'"),
            "{e}"
        );
        let mut with = labels();
        with.explicit.push(("stroma".into(), 0));
        let a = Annotations::read(&path, &with).unwrap();
        assert_eq!((a.len(), a.skipped), (3, 1));
        let rows = a.raster((20, 12), 1.0).rows(0, 12);
        assert_eq!(count(&rows, 1), 100 - 4);
        // Three classes: "stroma" is class 2 now, and paints.
        let three = Labels {
            explicit: Vec::new(),
            classes: vec!["background".into(), "tumor".into(), "stroma".into()],
        };
        let rows = Annotations::read(&path, &three)
            .unwrap()
            .raster((20, 12), 1.0)
            .rows(0, 12);
        assert_eq!((count(&rows, 1), count(&rows, 2)), (96, 8));
        // A label beyond the classes.
        with.explicit[0].1 = 5;
        let e = Annotations::read(&path, &with).unwrap_err().to_string();
        assert!(e.contains("label 5, but there are only 2 classes"), "{e}");
    }

    #[test]
    fn names_to_labels() {
        let l = labels();
        for (name, label) in [
            (None, Some(1)),
            (Some("_0"), Some(1)),
            (Some("_1"), Some(1)),
            (Some("_2"), Some(0)),
            (Some("Tumor"), Some(1)),
            (Some("Tumour region"), Some(1)),
            (Some("Non-tumor"), Some(0)),
            (Some("Exclusion"), Some(0)),
            (Some("Adenocarcinoma"), Some(1)),
            (Some("Normal lung"), Some(0)),
            (Some("Necrosis"), None),
            (Some("Abnormal"), None),
            (Some("non-neoplastic"), Some(0)),
            (Some("Nonmalignant epithelium"), Some(0)),
            (Some("Malignant"), Some(1)),
            (Some("Metastases"), Some(1)),
            (Some("Ignore*"), Some(0)),
        ] {
            assert_eq!(l.of(name), label, "{name:?}");
        }
    }

    #[test]
    fn unreadable_files_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let l = labels();
        for (name, text, says) in [
            ("x.xml", "<Other/>", "root element is <Other>"),
            ("y.xml", "<ASAP_Annotations><Annotation", "not valid XML"),
            (
                "z.xml",
                "<ASAP_Annotations><Annotation Name=\"A\"><Coordinates><Coordinate X=\"a\" Y=\"1\"/></Coordinates></Annotation></ASAP_Annotations>",
                "line 1: annotation 'A' has a coordinate without a number X",
            ),
            ("w.geojson", "{\"type\": \"FeatureCollection\"}", "without a \"features\" array"),
            ("v.geojson", "{oops", "neither ASAP XML nor valid GeoJSON"),
        ] {
            let e = Annotations::read(&write(dir.path(), name, text), &l).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{}: ", dir.path().join(name).display())) && e.contains(says), "{e}");
        }
    }
}
