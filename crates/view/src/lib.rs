//! `wsiseg view OUT`: every slide of an output folder with its mask, heat
//! map, regions and ground truth, zoomable to the cells in a browser.
//!
//! A small HTTP/1.1 server on the standard library's `TcpListener`, with
//! `httparse` for the request head: an accept thread hands connections to a
//! fixed pool of workers through a bounded queue (a full queue is answered
//! 503 at once); each connection carries one GET or HEAD with a head of at
//! most 8 KiB read within 10 s. Every request must start with the random
//! token printed in the URL (403 otherwise, as Jupyter does); everything
//! served is named by a slide's index in the folder's run records — no
//! path of a request ever reaches the file system — and an output that
//! resolves outside the folder is not served. Tiles are made on demand
//! ([`render`]) and kept in a bounded cache of encoded bytes.
//!
//! The page is OpenSeadragon (built in from the npm registry at set-up
//! time: no network at run time) with wsiseg's own script.

mod cache;
mod catalog;
mod http;
mod outline;
mod pages;
pub mod render;

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use catalog::Catalog;
use http::{Reply, Request};
use render::Reduce;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// The output folder of `wsiseg segment`.
    pub out: PathBuf,
    /// Folders where slides that moved since their run are looked for.
    pub inputs: Vec<PathBuf>,
    /// The address to listen on (127.0.0.1 unless asked).
    pub bind: IpAddr,
    /// The port (0: any free one).
    pub port: u16,
    /// Worker threads (each answers one connection at a time).
    pub threads: usize,
    /// Bytes of encoded tiles kept.
    pub cache_bytes: usize,
    /// The token (None: a random one).
    pub token: Option<String>,
}

impl ViewOptions {
    /// The defaults for `out`: loopback, any free port, one worker per core
    /// (4 to 16), 256 MiB of tiles.
    pub fn new(out: &Path) -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        Self {
            out: out.to_path_buf(),
            inputs: Vec::new(),
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            threads: cores.clamp(4, 16),
            cache_bytes: 256 << 20,
            token: None,
        }
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The folder cannot be read or holds no results.
    #[error("{0}")]
    Folder(String),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No random token could be made.
    #[error("cannot read /dev/urandom for the token: {0}")]
    Token(std::io::Error),
}

/// Connections waiting for a worker before new ones are answered 503.
const QUEUE: usize = 64;

/// What the workers share.
struct State {
    catalog: Catalog,
    token: String,
    tiles: cache::Lru<(usize, u8, u32, u32, u32)>,
    served: AtomicU64,
}

/// A server bound to its address, not yet answering.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
    threads: usize,
}

/// 128 random bits, hex.
fn random_token() -> Result<String, ViewError> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(ViewError::Token)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Server {
    /// Reads the folder and binds the address.
    pub fn bind(opts: &ViewOptions) -> Result<Self, ViewError> {
        let catalog = Catalog::read(&opts.out, &opts.inputs).map_err(ViewError::Folder)?;
        if catalog.entries.is_empty() {
            return Err(ViewError::Folder(format!(
                "{}: no results of wsiseg here (no NAME.run.json, no summary): segment slides into it first",
                opts.out.display()
            )));
        }
        let token = match &opts.token {
            Some(t) => t.clone(),
            None => random_token()?,
        };
        let addr = SocketAddr::new(opts.bind, opts.port);
        let listener =
            TcpListener::bind(addr).map_err(|source| ViewError::Bind { addr, source })?;
        Ok(Self {
            listener,
            state: Arc::new(State {
                catalog,
                token,
                tiles: cache::Lru::new(opts.cache_bytes),
                served: AtomicU64::new(0),
            }),
            threads: opts.threads.max(1),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where this machine reaches it: its address, or loopback when it
    /// listens on every address.
    fn reachable(&self) -> SocketAddr {
        let addr = self.addr();
        match addr.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], addr.port()))
            }
            IpAddr::V6(v6) if v6.is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
            }
            _ => addr,
        }
    }

    /// The page's URL, token included.
    pub fn url(&self) -> String {
        format!("http://{}/{}/", self.reachable(), self.state.token)
    }

    /// The slides it serves.
    pub fn slides(&self) -> usize {
        self.state.catalog.entries.len()
    }

    /// Answers requests until `stop` is set (checked every 100 ms); then
    /// finishes the requests in hand and returns.
    pub fn run(self, stop: &AtomicBool) {
        let wake = self.reachable();
        let (tx, rx) = sync_channel::<TcpStream>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let workers: Vec<_> = (0..self.threads)
            .map(|i| {
                let (rx, state) = (rx.clone(), self.state.clone());
                std::thread::Builder::new()
                    .name(format!("view-{i}"))
                    .spawn(move || worker(&rx, &state))
                    .expect("spawn a worker thread")
            })
            .collect();
        let done = Arc::new(AtomicBool::new(false));
        std::thread::scope(|s| {
            let done2 = done.clone();
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                done2.store(true, Ordering::SeqCst);
                // Wakes the accept below.
                let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
            });
            accept(&self.listener, &tx, &done);
        });
        drop(tx);
        for w in workers {
            let _ = w.join();
        }
        tracing::debug!(
            "{} request(s) answered; {} MiB of tiles cached",
            self.state.served.load(Ordering::Relaxed),
            self.state.tiles.bytes() >> 20
        );
    }
}

fn accept(listener: &TcpListener, tx: &SyncSender<TcpStream>, done: &AtomicBool) {
    for stream in listener.incoming() {
        if done.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            // Out of descriptors and the like: wait, do not spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        match tx.try_send(stream) {
            Ok(()) => {}
            Err(TrySendError::Full(mut s)) => {
                let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = http::write_reply(&mut s, &Reply::error(503, "busy: try again"), false);
            }
            Err(TrySendError::Disconnected(_)) => break,
        }
    }
}

fn worker(rx: &Mutex<Receiver<TcpStream>>, state: &State) {
    loop {
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(mut stream) = next else { return };
        let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
        let _ = stream.set_nodelay(true);
        let (reply, head_only) = match http::read_request(&mut stream) {
            Ok(req) => {
                // A panic answers 500; the worker goes on.
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(state, &req)))
                        .unwrap_or_else(|_| Reply::error(500, "internal error"));
                (r, req.head_only)
            }
            Err(Some(r)) => (r, false),
            Err(None) => continue,
        };
        state.served.fetch_add(1, Ordering::Relaxed);
        let _ = http::write_reply(&mut stream, &reply, head_only);
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}

/// The reply to one request.
fn answer(state: &State, req: &Request) -> Reply {
    let path = req.target.split(['?', '#']).next().unwrap_or("");
    let mut parts = path.split('/').skip(1);
    if parts.next() != Some(state.token.as_str()) {
        return Reply::error(
            403,
            "forbidden: open the URL wsiseg view printed (it holds the token)",
        );
    }
    let rest: Vec<&str> = parts.collect();
    let not_found = || Reply::error(404, "not found");
    let id = |s: &str| -> Option<usize> {
        if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().filter(|&i| i < state.catalog.entries.len())
    };
    match rest.as_slice() {
        [""] | [] => pages::page(),
        ["assets", name] => pages::asset(name).unwrap_or_else(not_found),
        ["api", "slides"] => Reply::json(&pages::slides_json(&state.catalog)),
        ["api", "slide", i] => match id(i) {
            Some(i) => Reply::json(&pages::slide_json(&state.catalog, i)),
            None => not_found(),
        },
        ["api", "regions", i] => match id(i) {
            Some(i) => pages::regions(&state.catalog.entries[i]),
            None => not_found(),
        },
        ["truth", file] => match file.strip_suffix(".png").and_then(id) {
            Some(i) => outline::reply(&state.catalog.entries[i]),
            None => not_found(),
        },
        ["heatmap", file] => match file.strip_suffix(".png").and_then(id) {
            Some(i) => match state.catalog.entries[i].heatmap.as_deref() {
                Some(p) => match std::fs::read(p) {
                    Ok(b) => Reply::ok("image/png", b).cached(),
                    Err(e) => Reply::error(500, &format!("{}: {e}", p.display())),
                },
                None => not_found(),
            },
            None => not_found(),
        },
        ["tile", i, layer, level, file] => match (id(i), parse_tile(layer, level, file)) {
            (Some(i), Some(t)) => tile(state, i, t),
            _ => not_found(),
        },
        _ => not_found(),
    }
}

/// A tile request: layer (0 slide, 1 mask, 2 heat map), level, column, row.
type TileAt = (u8, u32, u32, u32);

fn parse_tile(layer: &str, level: &str, file: &str) -> Option<TileAt> {
    let num = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (layer, ext) = match layer {
        "slide" => (0, ".jpeg"),
        "mask" => (1, ".png"),
        "heat" => (2, ".png"),
        _ => return None,
    };
    let (x, y) = file.strip_suffix(ext)?.split_once('_')?;
    Some((layer, num(level)?, num(x)?, num(y)?))
}

fn tile(state: &State, id: usize, (layer, level, col, row): TileAt) -> Reply {
    let key = (id, layer, level, col, row);
    let content_type = if layer == 0 {
        "image/jpeg"
    } else {
        "image/png"
    };
    if let Some(bytes) = state.tiles.get(&key) {
        return Reply::ok(content_type, bytes).cached();
    }
    let opened = state.catalog.open(id);
    let source = match layer {
        0 => Some(&opened.slide),
        1 => opened.mask.as_ref(),
        _ => opened.prob.as_ref(),
    };
    let pyramid = match source {
        None => return Reply::error(404, "this slide has no such layer"),
        Some(Err(e)) => return Reply::error(502, e),
        Some(Ok(p)) => p,
    };
    let reduce = if layer == 1 {
        Reduce::Nearest
    } else {
        Reduce::Mean
    };
    let img = match pyramid.tile(level, col, row, reduce) {
        Ok(Some(img)) => img,
        Ok(None) => return Reply::error(404, "no such tile"),
        Err(render::TileError::Read(e)) => return Reply::error(502, &e),
        Err(render::TileError::NotYet) => {
            let mut r = Reply::error(
                503,
                "this slide has no small level: its overview is being made; the coarse zoom levels come when it is",
            );
            r.headers.push(("Retry-After", "5"));
            return r;
        }
    };
    let bytes = match layer {
        0 => render::jpeg(&img),
        1 => render::mask_png(&img, opened.background),
        _ => render::heat_png(&img),
    };
    match bytes {
        Ok(b) => {
            let b = Arc::new(b);
            state.tiles.put(key, b.clone());
            Reply::ok(content_type, b).cached()
        }
        Err(e) => Reply::error(500, &e),
    }
}
