//! Plain RGB images — PNG, baseline JPEG, strip TIFF — written as a stream of
//! row bands, the way competitions hand out whole slides: one level, no
//! tiles. Memory is a band, whatever the size. Like every output, the file
//! gets its final name only when complete ([`PartialFile`]).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use wsiseg_geometry::Size;

use crate::{PartialFile, PngMaskWriter, PngWriteError, Staged};

/// Which plain format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainFormat {
    /// 8-bit RGB PNG, fast Deflate.
    Png,
    /// Baseline JPEG (4:2:0), at this quality; at most 65535 px a side.
    Jpeg {
        /// 1–100.
        quality: u8,
    },
    /// RGB BigTIFF of one uncompressed strip, as Pillow writes TIFFs.
    Tiff,
}

impl PlainFormat {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg { .. } => "jpg",
            Self::Tiff => "tiff",
        }
    }
}

/// Errors writing a plain image; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PlainWriteError {
    /// Writing the PNG failed.
    #[error(transparent)]
    Png(#[from] PngWriteError),
    /// Writing or encoding the file failed.
    #[error("{}: cannot write {what}: {detail}", path.display())]
    Write {
        /// The final name of the file.
        path: PathBuf,
        /// The format.
        what: &'static str,
        /// What went wrong.
        detail: String,
    },
}

/// Streams an RGB image into a PNG, JPEG or TIFF file, rows top to bottom.
pub struct PlainWriter {
    path: PathBuf,
    inner: Inner,
}

enum Inner {
    Png(Box<PngMaskWriter>),
    Thread(EncoderThread),
}

/// JPEG and TIFF encoders pull rows: they run on their own thread, fed
/// bands through a channel. Dropped unfinished, the feed is cut and the
/// thread removes its file.
struct EncoderThread {
    tx: Option<SyncSender<Vec<u8>>>,
    done: Option<JoinHandle<Result<Staged, String>>>,
    what: &'static str,
}

impl EncoderThread {
    /// Closes the feed and waits for the file: complete and fsynced under
    /// its temporary name, or why not.
    fn finish(&mut self, path: &Path) -> Result<Staged, PlainWriteError> {
        drop(self.tx.take());
        let fail = |detail: String| PlainWriteError::Write {
            path: path.to_path_buf(),
            what: self.what,
            detail,
        };
        let handle = self
            .done
            .take()
            .ok_or_else(|| fail("already finished".into()))?;
        handle
            .join()
            .map_err(|_| fail("the encoder panicked".into()))?
            .map_err(fail)
    }
}

impl Drop for EncoderThread {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.done.take() {
            let _ = h.join();
        }
    }
}

/// Rows taken from the channel, for an encoder's thread.
struct Feed {
    rx: Receiver<Vec<u8>>,
    band: Vec<u8>,
    at: usize,
    /// The channel closed before the image was complete.
    cut: bool,
}

impl Feed {
    /// The next `out.len()` bytes of rows; white once the feed is cut.
    fn take(&mut self, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            if self.at == self.band.len() {
                match self.rx.recv() {
                    Ok(band) => {
                        self.band = band;
                        self.at = 0;
                    }
                    Err(_) => {
                        self.cut = true;
                        out[done..].fill(255);
                        return;
                    }
                }
            }
            let k = (out.len() - done).min(self.band.len() - self.at);
            out[done..done + k].copy_from_slice(&self.band[self.at..self.at + k]);
            self.at += k;
            done += k;
        }
    }
}

/// The JPEG encoder's view of the feed: rows asked for in order.
struct JpegRows {
    size: Size,
    feed: std::cell::RefCell<(Feed, u32, Vec<u8>)>,
    cut: std::rc::Rc<std::cell::Cell<bool>>,
}

impl jpeg_encoder::ImageBuffer for JpegRows {
    fn get_jpeg_color_type(&self) -> jpeg_encoder::JpegColorType {
        jpeg_encoder::JpegColorType::Ycbcr
    }
    fn width(&self) -> u16 {
        self.size.w as u16
    }
    fn height(&self) -> u16 {
        self.size.h as u16
    }
    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let mut guard = self.feed.borrow_mut();
        let (feed, next, row) = &mut *guard;
        // The encoder repeats the last row to fill its last block row.
        if u32::from(y) >= *next {
            feed.take(row);
            self.cut.set(feed.cut);
            *next = u32::from(y) + 1;
        }
        for p in row.chunks_exact(3) {
            let (l, cb, cr) = jpeg_encoder::rgb_to_ycbcr(p[0], p[1], p[2]);
            buffers[0].push(l);
            buffers[1].push(cb);
            buffers[2].push(cr);
        }
    }
}

impl PlainWriter {
    /// Starts writing a `size` image that will be named `path`.
    pub fn create(path: &Path, size: Size, format: PlainFormat) -> Result<Self, PlainWriteError> {
        let what = match format {
            PlainFormat::Png => {
                return Ok(Self {
                    path: path.to_path_buf(),
                    inner: Inner::Png(Box::new(PngMaskWriter::create_rgb(path, size)?)),
                })
            }
            PlainFormat::Jpeg { .. } => "JPEG",
            PlainFormat::Tiff => "TIFF",
        };
        let fail = |detail: String| PlainWriteError::Write {
            path: path.to_path_buf(),
            what,
            detail,
        };
        if matches!(format, PlainFormat::Jpeg { .. }) && size.w.max(size.h) > 65535 {
            return Err(fail(format!(
                "{}×{} pixels: JPEG holds at most 65535 a side",
                size.w, size.h
            )));
        }
        let (partial, file) = PartialFile::create(path).map_err(|e| fail(e.to_string()))?;
        let (tx, rx) = sync_channel::<Vec<u8>>(2);
        let feed = Feed {
            rx,
            band: Vec::new(),
            at: 0,
            cut: false,
        };
        let done = std::thread::spawn(move || -> Result<Staged, String> {
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let cut = match format {
                PlainFormat::Jpeg { quality } => {
                    let cut = std::rc::Rc::new(std::cell::Cell::new(false));
                    let rows = JpegRows {
                        size,
                        feed: std::cell::RefCell::new((feed, 0, vec![0; size.w as usize * 3])),
                        cut: cut.clone(),
                    };
                    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
                    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
                    encoder.encode_image(rows).map_err(|e| e.to_string())?;
                    cut.get()
                }
                _ => write_tiff(&mut out, size, feed)?,
            };
            if cut {
                return Err("the image ended before its last row".into());
            }
            let file = out.into_inner().map_err(|e| e.error().to_string())?;
            partial.finish(file).map_err(|e| e.to_string())
        });
        Ok(Self {
            path: path.to_path_buf(),
            inner: Inner::Thread(EncoderThread {
                tx: Some(tx),
                done: Some(done),
                what,
            }),
        })
    }

    /// Appends whole rows (RGB, top to bottom).
    pub fn write_rows(&mut self, rows: &[u8]) -> Result<(), PlainWriteError> {
        match &mut self.inner {
            Inner::Png(w) => Ok(w.write_rows(rows)?),
            Inner::Thread(t) => {
                if t.tx
                    .as_ref()
                    .is_some_and(|tx| tx.send(rows.to_vec()).is_ok())
                {
                    return Ok(());
                }
                // The encoder stopped: its error comes from finishing.
                let e = t.finish(&self.path).err();
                Err(e.unwrap_or_else(|| PlainWriteError::Write {
                    path: self.path.clone(),
                    what: t.what,
                    detail: "the encoder stopped early".into(),
                }))
            }
        }
    }

    /// Finishes the file and gives it its final name.
    pub fn commit(self) -> Result<PathBuf, PlainWriteError> {
        let path = self.path;
        let staged = match self.inner {
            Inner::Png(w) => w.finish_staged()?,
            Inner::Thread(mut t) => t.finish(&path)?,
        };
        staged.commit().map_err(|e| PlainWriteError::Write {
            path,
            what: "file",
            detail: e.to_string(),
        })
    }
}

/// Rows taken from the feed at a time.
const TIFF_BAND_ROWS: u32 = 64;

/// Writes an uncompressed BigTIFF of one strip — the whole image, as
/// Pillow writes TIFFs, the layout hardest on readers — from `feed`,
/// streamed: the pixels from byte 16, then the directory. Whether the feed
/// was cut.
fn write_tiff<W: Write + std::io::Seek>(
    mut out: W,
    size: Size,
    mut feed: Feed,
) -> Result<bool, String> {
    let err = |e: std::io::Error| e.to_string();
    // "II", 43, offset size 8, 0, then the directory's offset (below).
    out.write_all(&[b'I', b'I', 43, 0, 8, 0, 0, 0])
        .map_err(err)?;
    out.write_all(&[0; 8]).map_err(err)?;
    let mut band = Vec::new();
    let mut y = 0;
    while y < size.h {
        let rows = TIFF_BAND_ROWS.min(size.h - y);
        band.resize(size.w as usize * rows as usize * 3, 0);
        feed.take(&mut band);
        if feed.cut {
            return Ok(true);
        }
        out.write_all(&band).map_err(err)?;
        y += rows;
    }
    let bytes = u64::from(size.w) * u64::from(size.h) * 3;
    let ifd = 16 + bytes + (bytes & 1);
    if bytes & 1 == 1 {
        out.write_all(&[0]).map_err(err)?;
    }
    // (tag, type, count, value): SHORT 3, LONG 4, LONG8 16; sorted by tag.
    let (short, long, long8) = (3u16, 4u16, 16u16);
    let entries: [(u16, u16, u64, [u8; 8]); 10] = [
        (256, long, 1, u64::from(size.w).to_le_bytes()),
        (257, long, 1, u64::from(size.h).to_le_bytes()),
        (258, short, 3, [8, 0, 8, 0, 8, 0, 0, 0]),
        (259, short, 1, 1u64.to_le_bytes()),
        (262, short, 1, 2u64.to_le_bytes()),
        (273, long8, 1, 16u64.to_le_bytes()),
        (277, short, 1, 3u64.to_le_bytes()),
        (278, long, 1, u64::from(size.h).to_le_bytes()),
        (279, long8, 1, bytes.to_le_bytes()),
        (284, short, 1, 1u64.to_le_bytes()),
    ];
    let mut dir = Vec::with_capacity(8 + entries.len() * 20 + 8);
    dir.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (tag, kind, count, value) in entries {
        dir.extend_from_slice(&tag.to_le_bytes());
        dir.extend_from_slice(&kind.to_le_bytes());
        dir.extend_from_slice(&count.to_le_bytes());
        dir.extend_from_slice(&value);
    }
    dir.extend_from_slice(&0u64.to_le_bytes());
    out.write_all(&dir).map_err(err)?;
    out.seek(std::io::SeekFrom::Start(8)).map_err(err)?;
    out.write_all(&ifd.to_le_bytes()).map_err(err)?;
    Ok(false)
}
