//! Tiles made on the device from the stored JPEG tiles of a slide: each
//! batch's distinct stored tiles decoded once (by nvJPEG on a GPU), then
//! every tile of the batch cut from them on the device — no decoded pixel
//! crosses the PCIe bus. The CPU decoder stays the fallback: a stream
//! nvJPEG fails on is decoded again on the host, whose strict decoder says
//! what is wrong with it.

use tch::Tensor;

use crate::{Device, InferError};

/// Where a device tile's pixels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Stored tile `i` of the batch's streams (decoded on the device).
    Stream(usize),
    /// Stored tile `i` of the batch's host tiles (decoded on the host).
    Host(usize),
    /// A colour (no data stored for the tile).
    Fill([u8; 3]),
}

/// One rectangle of a tile copied from a stored tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Where from.
    pub source: Source,
    /// Its top-left corner in the stored tile.
    pub from: (u32, u32),
    /// Its top-left corner in the tile.
    pub to: (u32, u32),
    /// Width and height.
    pub size: (u32, u32),
}

/// A batch's tiles as placements of stored tiles: what
/// [`crate::Segmenter::submit_assembled`] makes on the device.
#[derive(Debug, Default)]
pub struct Assembly<'a> {
    /// The stored tiles' size (every stream decodes to it).
    pub stored: (u32, u32),
    /// Distinct compressed stored tiles, decoded on the device.
    pub streams: Vec<&'a [u8]>,
    /// Distinct stored tiles decoded on the host already (RGB, `stored` size).
    pub host: Vec<&'a [u8]>,
    /// Per tile of the batch: its placements (the rest of the tile is
    /// white), or `None` for a tile already in the staging buffer.
    pub tiles: Vec<Option<Vec<Placement>>>,
    /// The streams hold R, G, B components (Aperio's RGB tiles), not YCbCr.
    pub rgb_components: bool,
}

/// Which decoder decodes the streams.
enum Backend {
    Nvjpeg(crate::nvjpeg::NvJpeg),
    /// The host's decoder, the pixels then uploaded: the device path's
    /// assembly exercised on machines without nvJPEG (tests), and the
    /// fallback.
    Host(HostDecode),
}

/// A host JPEG decoder: a complete stream and its size to RGB bytes, or
/// what is wrong with it.
pub type HostDecode = fn(&[u8], u32, u32) -> Result<Vec<u8>, String>;

/// Decodes stored JPEG tiles for one inference worker's device.
pub struct TileDecoder {
    backend: Backend,
    device: Device,
}

/// Why a batch's streams could not be decoded on the device.
#[derive(Debug, Clone)]
pub struct DecodeFailure(pub String);

impl TileDecoder {
    /// nvJPEG on `device` (a CUDA device, current on this thread), or why not.
    pub fn nvjpeg(device: Device) -> Result<Self, String> {
        if !device.is_cuda() {
            return Err(format!("nvJPEG decodes on a CUDA GPU, not on {device}"));
        }
        Ok(Self {
            backend: Backend::Nvjpeg(crate::nvjpeg::NvJpeg::new(device.tch())?),
            device,
        })
    }

    /// The host decoder `decode`, its pixels uploaded to `device` and cut
    /// there as nvJPEG's would be.
    pub fn host(device: Device, decode: HostDecode) -> Self {
        Self {
            backend: Backend::Host(decode),
            device,
        }
    }

    /// Its name in reports: `nvJPEG (hardware)`, `nvJPEG` or `host`.
    pub fn name(&self) -> &'static str {
        match &self.backend {
            Backend::Nvjpeg(n) if n.hardware => "nvJPEG (hardware)",
            Backend::Nvjpeg(_) => "nvJPEG",
            Backend::Host(_) => "host",
        }
    }

    /// The device it decodes onto.
    pub fn device(&self) -> Device {
        self.device
    }

    /// `streams` (each `w`×`h`; `rgb`: R, G, B components) decoded into one
    /// `k×h×w×3` uint8 RGB tensor on the device (queued there: synchronize
    /// before timing it). It stays valid until the next call's.
    pub fn decode(
        &mut self,
        streams: &[&[u8]],
        (w, h): (u32, u32),
        rgb: bool,
    ) -> Result<Tensor, DecodeFailure> {
        let shape = [streams.len() as i64, i64::from(h), i64::from(w), 3];
        match &mut self.backend {
            Backend::Nvjpeg(n) => n.decode(streams, w, h, rgb).map_err(DecodeFailure),
            Backend::Host(decode) => {
                // The host decoder reads the stream's Adobe marker itself.
                let _ = rgb;
                let mut all = Vec::with_capacity(streams.len() * (w * h * 3) as usize);
                for s in streams {
                    all.extend(decode(s, w, h).map_err(DecodeFailure)?);
                }
                Ok(upload(&all, shape, self.device))
            }
        }
    }
}

/// Host bytes as a `shape` uint8 tensor on `device`.
fn upload(bytes: &[u8], shape: [i64; 4], device: Device) -> Tensor {
    let t = Tensor::from_slice(bytes).view(shape);
    if device.is_cuda() {
        t.to_device(device.tch())
    } else {
        t
    }
}

/// Makes `assembly`'s tiles in `x` (`n×t×t×3` uint8 on the device; tiles
/// marked `None` are left as they are).
pub(crate) fn assemble(
    decoder: &mut TileDecoder,
    assembly: &Assembly,
    x: &mut Tensor,
) -> Result<(), InferError> {
    let _no_grad = tch::no_grad_guard();
    let (w, h) = assembly.stored;
    let decoded = decoder
        .decode(&assembly.streams, (w, h), assembly.rgb_components)
        .map_err(|DecodeFailure(detail)| InferError::Decode { detail })?;
    let host = (!assembly.host.is_empty()).then(|| {
        let all = assembly.host.concat();
        upload(
            &all,
            [assembly.host.len() as i64, i64::from(h), i64::from(w), 3],
            decoder.device,
        )
    });
    let device = decoder.device.tch();
    for (i, tile) in assembly.tiles.iter().enumerate() {
        let Some(placements) = tile else { continue };
        let mut dst = x.get(i as i64);
        let _ = dst.fill_(255);
        for p in placements {
            let (fx, fy) = (i64::from(p.from.0), i64::from(p.from.1));
            let (tx, ty) = (i64::from(p.to.0), i64::from(p.to.1));
            let (pw, ph) = (i64::from(p.size.0), i64::from(p.size.1));
            let mut part = dst.narrow(0, ty, ph).narrow(1, tx, pw);
            match p.source {
                Source::Stream(j) => {
                    part.copy_(&decoded.get(j as i64).narrow(0, fy, ph).narrow(1, fx, pw));
                }
                Source::Host(j) => {
                    let host = host.as_ref().expect("host tiles uploaded");
                    part.copy_(&host.get(j as i64).narrow(0, fy, ph).narrow(1, fx, pw));
                }
                Source::Fill(c) => {
                    let colour = Tensor::from_slice(&c).to_device(device).view([1, 1, 3]);
                    part.copy_(&colour.expand_as(&part));
                }
            }
        }
    }
    // The copies out of the decoded tiles are queued: their buffer is
    // free once they ran.
    if let Backend::Nvjpeg(n) = &mut decoder.backend {
        n.release();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "stream" of one byte decodes to a stored tile of that grey.
    fn grey(stream: &[u8], w: u32, h: u32) -> Result<Vec<u8>, String> {
        match stream {
            [v] => Ok(vec![*v; (w * h * 3) as usize]),
            _ => Err("not a one-byte stream".into()),
        }
    }

    #[test]
    fn tiles_are_cut_from_streams_host_tiles_and_fills_the_rest_white() {
        let mut decoder = TileDecoder::host(Device::Cpu, grey);
        assert_eq!(decoder.name(), "host");
        let host: Vec<u8> = (0..4 * 4 * 3).map(|i| i as u8).collect();
        let (s10, s20) = ([10u8], [20u8]);
        let at = |source, from, to, size| Placement {
            source,
            from,
            to,
            size,
        };
        let assembly = Assembly {
            stored: (4, 4),
            streams: vec![&s10, &s20],
            host: vec![&host],
            tiles: vec![
                Some(vec![
                    at(Source::Stream(0), (2, 2), (0, 0), (2, 2)),
                    at(Source::Stream(1), (0, 0), (2, 0), (3, 2)),
                    at(Source::Host(0), (1, 1), (0, 2), (2, 2)),
                    at(Source::Fill([1, 2, 3]), (0, 0), (4, 4), (1, 1)),
                ]),
                None,
            ],
            rgb_components: false,
        };
        let mut x = Tensor::full([2, 5, 5, 3], 7, (tch::Kind::Uint8, tch::Device::Cpu));
        assemble(&mut decoder, &assembly, &mut x).unwrap();
        let px = |i: i64, y: i64, xx: i64| -> Vec<u8> {
            let t = x.get(i).get(y).get(xx);
            let mut v = vec![0u8; 3];
            t.copy_data(&mut v, 3);
            v
        };
        assert_eq!(px(0, 0, 0), [10, 10, 10]);
        assert_eq!(px(0, 1, 1), [10, 10, 10]);
        assert_eq!(px(0, 1, 4), [20, 20, 20]);
        // Host tile pixel (1 + dx, 1 + dy): bytes 3·(4·(1+dy) + 1+dx).
        assert_eq!(px(0, 2, 0), [15, 16, 17]);
        assert_eq!(px(0, 3, 1), [30, 31, 32]);
        assert_eq!(px(0, 4, 4), [1, 2, 3]);
        // Not covered: white; the tile marked None: untouched.
        assert_eq!(px(0, 2, 3), [255, 255, 255]);
        assert_eq!(px(1, 2, 2), [7, 7, 7]);
        // A stream the decoder fails on is the batch's error.
        let bad = [1u8, 2];
        let failing = Assembly {
            streams: vec![&bad],
            ..Assembly::default()
        };
        let e = assemble(&mut decoder, &failing, &mut x).unwrap_err();
        assert!(e.to_string().contains("not a one-byte stream"), "{e}");
    }

    #[test]
    fn nvjpeg_decodes_on_a_cuda_gpu_only() {
        let e = TileDecoder::nvjpeg(Device::Cpu).err().unwrap();
        assert!(e.contains("not on cpu"), "{e}");
    }
}
