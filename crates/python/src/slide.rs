//! `wsiseg.open(path)`: a slide read through the engine's readers, and its
//! tiles streamed by background threads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use numpy::ndarray::Array3;
use numpy::PyArray3;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use wsiseg_engine::{plan_tiles, EngineError, TileStream, TissuePolicy};
use wsiseg_slide::{Reader, Rect, Resolution, RgbImage};

use crate::{setting_error, to_py};

/// Pixels as a `uint8` H×W×3 array, without a copy.
fn array(py: Python<'_>, rgb: RgbImage) -> Bound<'_, PyArray3<u8>> {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let a = Array3::from_shape_vec((h, w, 3), rgb.into_raw()).expect("h×w×3 bytes");
    PyArray3::from_owned_array(py, a)
}

/// The process that opened a slide: its reader threads and OpenSlide's
/// handles do not survive `fork`.
fn check_process(pid: u32, path: &std::path::Path) -> PyResult<()> {
    if std::process::id() == pid {
        return Ok(());
    }
    Err(crate::SlideError::new_err(format!(
        "{}: this slide was opened in another process (the parent of a fork, as a DataLoader worker is): open it in the worker (in the dataset's __getitem__ or worker_init_fn), or use multiprocessing's 'spawn' start method",
        path.display()
    )))
}

/// Opens a slide (any format the `wsiseg` command reads: SVS, NDPI, MRXS,
/// DICOM, tiled or plain TIFF, PNG, JPEG) through the engine's readers
/// (`reader="auto"`: JPEG tiles decoded directly; `"openslide"`:
/// everything through OpenSlide). `mpp` overrides the resolution the file
/// records (plain images record none).
#[pyfunction]
#[pyo3(signature = (path, reader = "auto", mpp = None))]
pub fn open(py: Python<'_>, path: PathBuf, reader: &str, mpp: Option<f64>) -> PyResult<Slide> {
    let reader: Reader = reader
        .parse()
        .map_err(|e| setting_error(format!("reader={reader}: {e}")))?;
    check_mpp(mpp)?;
    let slide = py
        .detach(|| {
            if let Err(e) = std::fs::metadata(&path) {
                return Err(wsiseg_slide::missing(&path, e));
            }
            let s = wsiseg_slide::open_with(&path, reader)?;
            Ok(match mpp {
                Some(m) => wsiseg_slide::with_mpp(s, m),
                None => s,
            })
        })
        .map_err(|e| to_py(EngineError::Slide(e)))?;
    Ok(Slide {
        slide: Arc::from(slide),
        pid: std::process::id(),
    })
}

/// A slide: its levels, resolution and pixels.
#[pyclass(module = "wsiseg", frozen)]
pub struct Slide {
    slide: Arc<dyn wsiseg_slide::Slide>,
    pid: u32,
}

impl Slide {
    fn level(&self, level: u32) -> PyResult<wsiseg_slide::Level> {
        wsiseg_slide::level(self.slide.as_ref(), level).map_err(|e| to_py(e.into()))
    }
}

#[pymethods]
impl Slide {
    /// The file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.slide.path().to_path_buf()
    }

    /// The format as the reader names it ("aperio", "generic-tiff", "png"…).
    #[getter]
    fn format(&self) -> String {
        self.slide.format().to_string()
    }

    /// Level 0's width and height.
    #[getter]
    fn dimensions(&self) -> (u32, u32) {
        let s = self.slide.levels()[0].size;
        (s.w, s.h)
    }

    /// Each level's width, height and downsample (level-0 pixels per pixel).
    #[getter]
    fn levels(&self) -> Vec<(u32, u32, f64)> {
        self.slide
            .levels()
            .iter()
            .map(|l| (l.size.w, l.size.h, l.downsample))
            .collect()
    }

    /// µm per level-0 pixel (x, y), or None when the file records none.
    #[getter]
    fn mpp(&self) -> Option<(f64, f64)> {
        self.slide.mpp().map(|m| (m.x, m.y))
    }

    /// What the reader knows of the slide: format, levels, resolution, how
    /// each level is read, and the associated images.
    #[getter]
    fn properties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("format", self.slide.format())?;
        d.set_item("levels", self.levels())?;
        d.set_item("mpp", self.mpp())?;
        let codecs: Vec<Option<&str>> = (0..self.slide.levels().len() as u32)
            .map(|l| self.slide.direct_codec(l))
            .collect();
        d.set_item("direct_codecs", codecs)?;
        let associated: Vec<(String, (u32, u32))> = self
            .slide
            .associated()
            .into_iter()
            .map(|(n, s)| (n, (s.w, s.h)))
            .collect();
        d.set_item("associated", associated)?;
        Ok(d)
    }

    /// Reads `w`×`h` pixels of `level` whose top-left corner is at level-0
    /// (`x`, `y`), as OpenSlide's read_region does; outside the slide is
    /// white. Returns a `uint8` h×w×3 RGB array.
    #[pyo3(signature = (x, y, w, h, level = 0))]
    fn read_region<'py>(
        &self,
        py: Python<'py>,
        x: i64,
        y: i64,
        w: u32,
        h: u32,
        level: u32,
    ) -> PyResult<Bound<'py, PyArray3<u8>>> {
        check_process(self.pid, self.slide.path())?;
        let l = self.level(level)?;
        check_size(w, h)?;
        let rect = Rect {
            x: (x as f64 / l.downsample).floor() as i64,
            y: (y as f64 / l.downsample).floor() as i64,
            w,
            h,
        };
        let slide = self.slide.clone();
        let rgb = py
            .detach(|| wsiseg_slide::read_padded(slide.as_ref(), level, rect))
            .map_err(|e| to_py(e.into()))?;
        Ok(array(py, rgb))
    }

    /// Reads `w`×`h` pixels at `mpp` µm per pixel (from the finest level at
    /// least that fine, reduced as the engine reduces its working level)
    /// whose top-left corner is at level-0 (`x`, `y`).
    #[pyo3(signature = (x, y, w, h, mpp))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        x: i64,
        y: i64,
        w: u32,
        h: u32,
        mpp: f64,
    ) -> PyResult<Bound<'py, PyArray3<u8>>> {
        check_process(self.pid, self.slide.path())?;
        check_size(w, h)?;
        check_mpp(Some(mpp))?;
        let slide = self.slide.clone();
        let rgb = py
            .detach(|| {
                let working = wsiseg_engine::working_level(slide.as_ref(), Resolution::Mpp(mpp))?;
                let rect = Rect {
                    x: (x as f64 / working.downsample).round() as i64,
                    y: (y as f64 / working.downsample).round() as i64,
                    w,
                    h,
                };
                Ok(working.read(slide.as_ref(), rect)?)
            })
            .map_err(to_py)?;
        Ok(array(py, rgb))
    }

    /// The slide's overview, its longer side at most `max_side` pixels.
    #[pyo3(signature = (max_side = 2048))]
    fn thumbnail<'py>(&self, py: Python<'py>, max_side: u32) -> PyResult<Bound<'py, PyArray3<u8>>> {
        check_process(self.pid, self.slide.path())?;
        if max_side == 0 {
            return Err(setting_error("max_side=0: must be at least 1"));
        }
        let slide = self.slide.clone();
        let rgb = py
            .detach(|| wsiseg_slide::thumbnail(slide.as_ref(), max_side))
            .map_err(|e| to_py(e.into()))?;
        Ok(array(py, rgb))
    }

    /// The tissue on the engine's overview (as a segment run detects it):
    /// a `bool` array over the thumbnail, and the saturation threshold used.
    #[pyo3(signature = (threshold = None))]
    fn tissue<'py>(
        &self,
        py: Python<'py>,
        threshold: Option<u8>,
    ) -> PyResult<(Bound<'py, PyAny>, u8)> {
        check_process(self.pid, self.slide.path())?;
        let slide = self.slide.clone();
        let thumb = py
            .detach(|| wsiseg_slide::thumbnail(slide.as_ref(), wsiseg_engine::OVERVIEW_SIDE))
            .map_err(|e| to_py(e.into()))?;
        let (w, h) = (thumb.width() as usize, thumb.height() as usize);
        let (mask, threshold) = wsiseg_slide::tissue_mask_with(&thumb, threshold);
        let a = numpy::ndarray::Array2::from_shape_vec((h, w), mask).expect("h×w mask");
        Ok((
            numpy::PyArray2::from_owned_array(py, a).into_any(),
            threshold,
        ))
    }

    /// The tiles a segment run at `mpp` would run (`tissue=True`: those
    /// whose core holds tissue; `False`: every tile), `tile` px sharing
    /// `overlap` px, read by `threads` background threads: an iterator of
    /// (level-0 x, level-0 y, `uint8` tile×tile×3 array), row by row.
    /// Without `mpp`, level `level` (default 0) as stored.
    #[pyo3(signature = (mpp = None, tile = 256, overlap = 0, tissue = true, threads = None, level = None))]
    fn tiles(
        &self,
        py: Python<'_>,
        mpp: Option<f64>,
        tile: u32,
        overlap: u32,
        tissue: bool,
        threads: Option<usize>,
        level: Option<u32>,
    ) -> PyResult<Tiles> {
        check_process(self.pid, self.slide.path())?;
        if tile == 0 || tile > wsiseg_infer::MAX_TILE {
            return Err(setting_error(format!(
                "tile={tile}: must be between 1 and {} pixels",
                wsiseg_infer::MAX_TILE
            )));
        }
        if threads == Some(0) {
            return Err(setting_error("threads=0: must be at least 1"));
        }
        if overlap >= tile {
            return Err(setting_error(format!(
                "overlap={overlap}: must be smaller than the tile ({tile})"
            )));
        }
        check_mpp(mpp)?;
        let resolution = match (mpp, level) {
            (Some(m), _) => Resolution::Mpp(m),
            (None, l) => Resolution::Level(l.unwrap_or(0)),
        };
        let policy = if tissue {
            TissuePolicy::Detect(None)
        } else {
            TissuePolicy::All
        };
        let slide = self.slide.clone();
        let plan = py
            .detach(|| plan_tiles(slide.as_ref(), resolution, tile, overlap, policy, false))
            .map_err(to_py)?;
        let threads = threads.unwrap_or_else(wsiseg_engine::default_readers);
        let stream = TileStream::new(self.slide.clone(), &plan, threads);
        Ok(Tiles {
            total: stream.len(),
            stream: Mutex::new(Some(stream)),
            pid: self.pid,
            path: self.slide.path().to_path_buf(),
        })
    }

    fn __repr__(&self) -> String {
        let (w, h) = self.dimensions();
        format!(
            "Slide({:?}, format={:?}, {w}×{h}, {} level(s), mpp={})",
            self.slide.path().display().to_string(),
            self.slide.format(),
            self.slide.levels().len(),
            self.mpp()
                .map_or("None".to_string(), |m| format!("{:.4}", (m.0 + m.1) / 2.0))
        )
    }
}

/// A resolution given by the caller: positive and finite.
fn check_mpp(mpp: Option<f64>) -> PyResult<()> {
    match mpp {
        Some(m) if !(m.is_finite() && m > 0.0) => Err(setting_error(format!(
            "mpp={m}: must be a positive number of µm per pixel"
        ))),
        _ => Ok(()),
    }
}

/// A read of more than 1 gigapixel at once is refused before allocating.
fn check_size(w: u32, h: u32) -> PyResult<()> {
    if w == 0 || h == 0 || u64::from(w) * u64::from(h) > 1 << 30 {
        return Err(setting_error(format!(
            "{w}×{h}: a region must have 1 to 2^30 pixels (read larger areas in pieces, or at a coarser mpp)"
        )));
    }
    Ok(())
}

impl Drop for Tiles {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // A forked child: the reader threads are the parent's and do
            // not exist here; joining them would wait forever.
            let stream = self
                .stream
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            std::mem::forget(stream);
        }
    }
}

/// One tile as Python gets it: level-0 x, y and the pixels.
type TileItem<'py> = (i64, i64, Bound<'py, PyArray3<u8>>);

/// The tiles of `Slide.tiles()`: iterate for (x, y, array); `len()` is the
/// number of tiles in all.
#[pyclass(module = "wsiseg", frozen)]
pub struct Tiles {
    total: usize,
    stream: Mutex<Option<TileStream>>,
    pid: u32,
    path: PathBuf,
}

#[pymethods]
impl Tiles {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Tiles in all (however many were taken).
    fn __len__(&self) -> usize {
        self.total
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<TileItem<'py>>> {
        check_process(self.pid, &self.path)?;
        loop {
            let got = py.detach(|| {
                let mut guard = self.stream.lock().unwrap_or_else(|e| e.into_inner());
                let Some(stream) = guard.as_mut() else {
                    return Err(wsiseg_engine::TilesDone);
                };
                let got = stream.next_timeout(Duration::from_millis(50));
                if got.is_err() {
                    // Every tile handed out: stop the threads now.
                    *guard = None;
                }
                got
            });
            match got {
                Err(wsiseg_engine::TilesDone) => return Ok(None),
                Ok(None) => py.check_signals()?,
                Ok(Some(Err(e))) => {
                    self.close();
                    return Err(to_py(e));
                }
                Ok(Some(Ok(read))) => return Ok(Some((read.x0, read.y0, array(py, read.rgb)))),
            }
        }
    }

    /// Stops the reader threads (iteration ends).
    fn close(&self) {
        let stream = self.stream.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(stream);
    }
}
