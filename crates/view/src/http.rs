//! HTTP/1.1 on a `TcpStream`, the small part a local viewer needs: one
//! request per connection (`Connection: close`), GET and HEAD only, a head
//! of at most [`MAX_HEAD`] bytes read within a deadline, parsed by
//! `httparse`; every other request gets a 4xx and the connection is closed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;
/// The longest request target.
pub const MAX_TARGET: usize = 2048;
/// How long a client has to send its request head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// Headers parsed at most.
const MAX_HEADERS: usize = 48;

/// A request the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// HEAD: the reply without its body.
    pub head_only: bool,
    /// The request target (path and query), as sent.
    pub target: String,
}

/// A reply: status, type and body (shared when it comes from the cache).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// The body.
    pub body: Arc<Vec<u8>>,
    /// Browsers may keep it (tiles, assets): they do not change while the
    /// server runs.
    pub cacheable: bool,
    /// Extra headers (`Name: value`).
    pub headers: Vec<(&'static str, &'static str)>,
}

impl Reply {
    /// A reply with `body` of `content_type`.
    pub fn ok(content_type: &'static str, body: impl Into<Arc<Vec<u8>>>) -> Self {
        Self {
            status: 200,
            content_type,
            body: body.into(),
            cacheable: false,
            headers: Vec::new(),
        }
    }

    /// A JSON reply.
    pub fn json(value: &serde_json::Value) -> Self {
        Self::ok("application/json", value.to_string().into_bytes())
    }

    /// An error reply whose body is one line of text.
    pub fn error(status: u16, message: &str) -> Self {
        let mut r = Self::ok(
            "text/plain; charset=utf-8",
            format!("{message}\n").into_bytes(),
        );
        r.status = status;
        r
    }

    /// The same reply, cacheable by the browser.
    pub fn cached(mut self) -> Self {
        self.cacheable = true;
        self
    }
}

/// The reason phrase of the statuses the server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Reads and parses one request head from `stream`, or the error reply to
/// send (`None`: the client went away, send nothing).
pub fn read_request(stream: &mut TcpStream) -> Result<Request, Option<Reply>> {
    let start = Instant::now();
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let left = HEAD_DEADLINE.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(Some(Reply::error(408, "request head not sent in time")));
        }
        // A client trickling bytes gets the time that is left, not more.
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) => return Err(None),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Some(Reply::error(408, "request head not sent in time")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(None),
        };
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => return check(&req).map_err(Some),
            Ok(httparse::Status::Partial) if len == MAX_HEAD => {
                return Err(Some(Reply::error(431, "request head too large")))
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Some(Reply::error(431, "too many request headers")))
            }
            Err(e) => return Err(Some(Reply::error(400, &format!("malformed request: {e}")))),
        }
    }
}

/// The request, if the server answers its method, version and target.
fn check(req: &httparse::Request) -> Result<Request, Reply> {
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(Reply::error(400, "malformed request"));
    };
    if req.version != Some(1) && req.version != Some(0) {
        return Err(Reply::error(400, "HTTP/1.x only"));
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut r = Reply::error(405, "GET and HEAD only");
            r.headers.push(("Allow", "GET, HEAD"));
            return Err(r);
        }
    };
    if target.len() > MAX_TARGET {
        return Err(Reply::error(414, "request target too long"));
    }
    if !target.starts_with('/') {
        return Err(Reply::error(400, "request target must be a path"));
    }
    Ok(Request {
        head_only,
        target: target.to_string(),
    })
}

/// Writes `reply` (without its body for HEAD) and closes the connection.
pub fn write_reply(stream: &mut TcpStream, reply: &Reply, head_only: bool) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         Cross-Origin-Resource-Policy: same-origin\r\nCache-Control: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len(),
        if reply.cacheable {
            "private, max-age=3600"
        } else {
            "no-store"
        }
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(&reply.body)?;
    }
    stream.flush()
}
