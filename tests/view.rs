//! `wsiseg view` (issue 30): the viewer in Chromium, driven by playwright-core
//! in a network namespace of its own (`unshare -rn`: the server and the
//! browser on the namespace's loopback, nothing else reachable), with pixel
//! checks of its screenshots against the synthetic slide and its truth; and
//! the server's defences over real TCP on loopback — the token, traversal,
//! symbolic links out of the folder, absurd tiles, malformed and random
//! requests — with its memory watched.

// A test reads as one story (clippy.toml: tests excepted).
#![allow(clippy::too_many_lines)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo, run_ok, stderr, synth, unet};
use serde_json::{json, Value};

/// Two synthetic slides segmented (probabilities too) and evaluated in `d/out`.
fn folder(d: &Path, sizes: [(&str, &str); 2]) {
    for (seed, size) in sizes {
        synth(d, seed, size);
    }
    let o = common::segment(
        d,
        Path::new("slides"),
        &unet(),
        "out",
        &["--device", "cpu", "--probabilities"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    run_ok(d, &["eval", "--pred", "out", "--truth", "slides/truth"]);
}

/// A running `wsiseg view`; stopped with SIGINT when dropped.
struct Viewer {
    child: Child,
    addr: SocketAddr,
    token: String,
}

impl Viewer {
    fn start(d: &Path, extra: &[&str]) -> Self {
        let mut child = common::command(d)
            .args(["view", "out", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "printed {url:?}");
        let rest = &url["http://".len()..];
        let (host, path) = rest.split_once('/').unwrap();
        Self {
            child,
            addr: host.parse().unwrap(),
            token: path.trim_end_matches('/').to_string(),
        }
    }

    /// Stops it with Ctrl-C; its exit status and stderr.
    fn stop(mut self) -> (Option<i32>, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "Ctrl-C did not stop it"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.code(), err)
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `raw` on a fresh connection; the status and body of the reply
/// (status 0: no reply).
fn send(addr: SocketAddr, raw: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(raw);
    // Done sending: a head cut short ends here, as when a client goes away.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    parse_reply(&reply)
}

fn parse_reply(reply: &[u8]) -> (u16, Vec<u8>) {
    let Some(end) = reply.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, Vec::new());
    };
    let head = String::from_utf8_lossy(&reply[..end]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, reply[end + 4..].to_vec())
}

fn get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    send(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
}

fn get_json(v: &Viewer, what: &str) -> Value {
    let (status, body) = get(v.addr, &format!("/{}/{what}", v.token));
    assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// A tiny xorshift: the same "random" requests on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Request `i` of the random and malformed ones.
fn hostile_request(rng: &mut Rng, token: &str) -> Vec<u8> {
    const PIECES: [&str; 16] = [
        "..", "%2e%2e", "tile", "api", "slide", "0", "1", "99999999", "mask", "heat", "12",
        "0_0.jpeg", "%00", "//", "assets", "\u{e9}",
    ];
    let path = |rng: &mut Rng| {
        let mut p = String::from("/");
        if rng.below(3) > 0 {
            p.push_str(token);
            p.push('/');
        }
        for _ in 0..rng.below(6) {
            p.push_str(PIECES[rng.below(PIECES.len() as u64) as usize]);
            p.push('/');
        }
        p
    };
    match rng.below(8) {
        // Random bytes.
        0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        // A plausible path with random pieces.
        1 | 2 => format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", path(rng)).into_bytes(),
        // A method the server does not answer.
        3 => format!(
            "POST {} HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            path(rng)
        )
        .into_bytes(),
        // A head cut short (the client goes away).
        4 => format!("GET {} HTTP/1.1\r\nHo", path(rng)).into_bytes(),
        // Too many or too long headers.
        5 => {
            let mut r = format!("GET /{token}/ HTTP/1.1\r\n");
            for i in 0..rng.below(200) {
                r.push_str(&format!(
                    "X-{i}: {}\r\n",
                    "a".repeat(rng.below(100) as usize)
                ));
            }
            r.push_str("\r\n");
            r.into_bytes()
        }
        // A tile at absurd coordinates.
        6 => format!(
            "GET /{token}/tile/{}/slide/{}/{}_{}.jpeg HTTP/1.1\r\n\r\n",
            rng.below(4),
            rng.below(40),
            rng.next() % 5_000_000,
            rng.below(20)
        )
        .into_bytes(),
        // A garbled request line.
        _ => format!("G\u{0}T /{token}/\r\n\r\n").into_bytes(),
    }
}

#[test]
fn view_defends_itself_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    folder(d, [("311", "1024x1024"), ("312", "1024x1024")]);
    // A symbolic link out of the folder in place of one slide's regions, and
    // the other slide no longer readable.
    let outside = d.join("outside.geojson");
    std::fs::rename(d.join("out/synth-312.geojson"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, d.join("out/synth-312.geojson")).unwrap();
    let good = std::fs::read(d.join("slides/synth-311.svs")).unwrap();
    std::fs::write(d.join("slides/synth-311.svs"), &good[..4000]).unwrap();

    let v = Viewer::start(d, &["--threads", "4", "--cache-mb", "16"]);
    let (addr, token) = (v.addr, v.token.clone());
    let list = get_json(&v, "api/slides");
    let id_of = |name: &str| {
        list["slides"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    let (broken, linked) = (id_of("synth-311"), id_of("synth-312"));

    // The token: none, wrong, or a prefix of it → 403.
    assert_eq!(get(addr, "/").0, 403);
    assert_eq!(get(addr, "/api/slides").0, 403);
    assert_eq!(get(addr, "/0123456789abcdef0123456789abcdef/").0, 403);
    assert_eq!(get(addr, &format!("/{}/", &token[..31])).0, 403);
    assert_eq!(get(addr, &format!("/{token}/")).0, 200);
    // Traversal, encoded traversal, absolute paths, a link out → 404.
    for target in [
        format!("/{token}/.."),
        format!("/{token}/../../etc/passwd"),
        format!("/{token}/assets/../../../../etc/passwd"),
        format!("/{token}/%2e%2e/%2e%2e/etc/passwd"),
        format!("/{token}/assets/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
        format!("/{token}//etc/passwd"),
        format!("/{token}/{}", d.join("out/summary.json").display()),
        format!("/{token}/api/regions/{linked}"),
        format!("/{token}/tile/{linked}/slide/99/0_0.jpeg"),
        format!("/{token}/tile/{linked}/slide/10/99999_0.jpeg"),
        format!("/{token}/tile/{linked}/slide/10/4294967296_0.jpeg"),
        format!("/{token}/tile/99999999999/slide/0/0_0.jpeg"),
        format!("/{token}/tile/{linked}/mask/0/-1_0.png"),
    ] {
        assert_eq!(get(addr, &target).0, 404, "{target}");
    }
    let slide = get_json(&v, &format!("api/slide/{linked}"));
    assert!(slide["regions"].is_null(), "{slide}");
    // GET and HEAD only; HEAD without a body.
    let (status, body) = send(addr, format!("HEAD /{token}/ HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(
        send(
            addr,
            format!("DELETE /{token}/ HTTP/1.1\r\n\r\n").as_bytes()
        )
        .0,
        405
    );
    // Long or malformed requests → 4xx.
    let long = format!("GET /{token}/{} HTTP/1.1\r\n\r\n", "a".repeat(3000));
    assert_eq!(send(addr, long.as_bytes()).0, 414);
    let big = format!("GET /{token}/ HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(9000));
    assert_eq!(send(addr, big.as_bytes()).0, 431);
    assert_eq!(
        send(addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").0,
        400
    );
    // The unreadable slide: its tiles fail with a 5xx that says why, its
    // page entry names the problem, and the other slide is served.
    let (status, body) = get(addr, &format!("/{token}/tile/{broken}/slide/0/0_0.jpeg"));
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("synth-311.svs"));
    let b = get_json(&v, &format!("api/slide/{broken}"));
    assert!(
        b["layers"]["slide"]["error"]
            .as_str()
            .unwrap()
            .contains("synth-311.svs"),
        "{b}"
    );
    let (status, body) = get(addr, &format!("/{token}/tile/{linked}/slide/10/0_0.jpeg"));
    assert_eq!(status, 200);
    assert_eq!(&body[..2], b"\xff\xd8", "a JPEG");

    // A client that sends half a head and stalls is cut off (408) while
    // the others are answered.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();

    // 10 000 random and malformed requests from 4 clients: every one gets a
    // 4xx (or nothing, for a head cut short), none a 5xx or a hang, and the
    // server's memory stays flat.
    for _ in 0..300 {
        get(addr, &format!("/{token}/tile/{linked}/slide/9/0_0.jpeg"));
    }
    let before = v.rss_kib();
    let start = Instant::now();
    let statuses: Vec<Vec<u16>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let token = token.clone();
                s.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1));
                    (0..2500)
                        .map(|_| send(addr, &hostile_request(&mut rng, &token)).0)
                        .collect()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let took = start.elapsed();
    let after = v.rss_kib();
    let all: Vec<u16> = statuses.into_iter().flatten().collect();
    assert_eq!(all.len(), 10_000);
    // 502 is the unreadable slide's tiles; nothing else is a server error.
    let fives: Vec<_> = all.iter().filter(|&&s| s >= 500 && s != 502).collect();
    assert!(
        fives.is_empty(),
        "5xx replies to random requests: {fives:?}"
    );
    let ok = all.iter().filter(|&&s| s == 200).count();
    let four = all.iter().filter(|&&s| (400..500).contains(&s)).count();
    let bad_gateway = all.iter().filter(|&&s| s == 502).count();
    let none = all.iter().filter(|&&s| s == 0).count();
    eprintln!(
        "10 000 requests in {:.1} s: {ok} 200, {four} 4xx, {bad_gateway} 502 (the unreadable slide), {none} unanswered (cut short); RSS {} → {} MiB",
        took.as_secs_f64(),
        before >> 10,
        after >> 10
    );
    assert!(four > 6000 && none < 2500, "{ok} {four} {none}");
    assert!(took < Duration::from_secs(120), "took {took:?}");
    assert!(
        after < before + 24 * 1024,
        "memory grew from {before} to {after} KiB"
    );
    let mut reply = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = slow.read_to_end(&mut reply);
    assert_eq!(parse_reply(&reply).0, 408);
    // Still answering, and Ctrl-C stops it cleanly (exit 0, nothing left).
    assert_eq!(get(addr, &format!("/{token}/")).0, 200);
    assert!(d.join("out/.wsiseg-view.js").exists());
    let (code, err) = v.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(!d.join("out/.wsiseg-view.js").exists());

    // In the browser, the unreadable slide's page says so (its mask is
    // still shown), and the other slide opens as usual.
    let r = browse(
        d,
        &json!([
            {"open": "#slide=synth-311&mask=1"},
            {"eval": "document.getElementById('message').hidden", "as": "hidden"},
            {"eval": "document.getElementById('message').textContent", "as": "message"},
            {"open": "#slide=synth-312"},
            {"wait": true},
            {"eval": "document.getElementById('title').textContent", "as": "title"},
            {"eval": "document.getElementById('message').hidden", "as": "hidden_after"},
            {"eval": "window.wsisegView.transform() !== null", "as": "shown"},
        ]),
    );
    let res = &r["results"];
    assert_eq!(res["hidden"], json!(false), "{r}");
    let message = res["message"].as_str().unwrap();
    assert!(
        message.contains("cannot be shown in full") && message.contains("synth-311.svs"),
        "{message}"
    );
    assert_eq!(res["title"], "synth-312");
    assert_eq!(res["hidden_after"], json!(true), "{r}");
    assert_eq!(res["shown"], json!(true));
}

#[test]
fn view_refuses_what_it_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("empty")).unwrap();
    let o = common::run(d, &["view", "empty", "--port", "0"]);
    assert_eq!(o.status.code(), Some(1));
    let lines = common::error_lines(&o);
    assert_eq!(lines.len(), 1, "{}", stderr(&o));
    assert!(
        lines[0].contains("empty: no results of wsiseg here"),
        "{lines:?}"
    );
    let o = common::run(d, &["view", "missing"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("missing: no such folder"),
        "{}",
        stderr(&o)
    );
}

/// The browser session of the viewer test: the steps, and what they gave.
fn browse(d: &Path, plan: &Value) -> Value {
    let node_modules = repo("crates/view/web/node_modules");
    assert!(
        node_modules.join("playwright-core").is_dir(),
        "{}: missing; scripts/setup.sh installs it (npm ci in crates/view/web)",
        node_modules.display()
    );
    std::fs::write(d.join("plan.json"), plan.to_string()).unwrap();
    let _ = std::fs::remove_file(d.join("url.txt"));
    // In a namespace of its own: only its loopback exists.
    let script = r#"
        set -e
        ip link set lo up
        "$WSISEG" view out --port 0 > url.txt 2> view.log &
        pid=$!
        i=0; while [ ! -s url.txt ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
        node "$DRIVE" url.txt plan.json . > result.json
        "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir=profile-index \
            --dump-dom "file://$PWD/out/index.html" > index-dom.html 2>/dev/null
        kill -INT $pid
        wait $pid
    "#;
    let o = Command::new("timeout")
        .args(["180", "unshare", "-rn", "sh", "-c", script])
        .current_dir(d)
        .env("WSISEG", env!("CARGO_BIN_EXE_wsiseg"))
        .env("DRIVE", repo("tests/view/drive.js"))
        .env("PLAYWRIGHT_CORE", node_modules.join("playwright-core"))
        .env("CHROMIUM", "/usr/bin/chromium")
        .env("NETLOG", d.join("net.json"))
        .output()
        .unwrap();
    let log = std::fs::read_to_string(d.join("view.log")).unwrap_or_default();
    assert!(
        o.status.success(),
        "browser session: {}\nviewer: {log}",
        stderr(&o)
    );
    serde_json::from_str(&std::fs::read_to_string(d.join("result.json")).unwrap()).unwrap()
}

/// RGB of `img` at (x, y).
fn px(img: &image::RgbImage, x: u32, y: u32) -> [u8; 3] {
    img.get_pixel(x, y).0
}

fn close(a: [u8; 3], b: [u8; 3], tol: u8) -> bool {
    a.iter().zip(b).all(|(p, q)| p.abs_diff(q) <= tol)
}

/// Screen pixels of `shot` at least `margin` slide pixels from any truth
/// boundary, as (screen x, screen y, slide x, slide y, truth is tumor).
fn samples(t: &Value, truth: &image::RgbImage, margin: i64) -> Vec<(u32, u32, u32, u32, bool)> {
    let (x0, y0, scale) = (
        t["x0"].as_f64().unwrap(),
        t["y0"].as_f64().unwrap(),
        t["scale"].as_f64().unwrap(),
    );
    let (tw, th) = (i64::from(truth.width()), i64::from(truth.height()));
    let tumor = |x: i64, y: i64| truth.get_pixel(x as u32, y as u32).0[0] > 0;
    let mut out = Vec::new();
    // The viewer's area (left list 290 px, right panel 270 px, header 40),
    // clear of the scale bar and the navigator in its corners.
    for v in (60..680).step_by(7) {
        for u in (310..990).step_by(7) {
            let (sx, sy) = (
                ((f64::from(u) + 0.5 - x0) / scale) as i64,
                ((f64::from(v) + 0.5 - y0) / scale) as i64,
            );
            if sx < margin || sy < margin || sx >= tw - margin || sy >= th - margin {
                continue;
            }
            let here = tumor(sx, sy);
            let uniform = (-margin..=margin).step_by(margin as usize).all(|dy| {
                (-margin..=margin)
                    .step_by(margin as usize)
                    .all(|dx| tumor(sx + dx, sy + dy) == here)
            });
            if uniform {
                out.push((u, v, sx as u32, sy as u32, here));
            }
        }
    }
    out
}

#[test]
fn view_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    folder(d, [("301", "3000x2500"), ("302", "2048x2048")]);
    let slide_path = d.join("slides/synth-301.svs");
    let truth_path = d.join("slides/truth/synth-301.tiff");
    let level0 = |p: &PathBuf| {
        let s = wsiseg_slide::open(p).unwrap();
        let size = s.levels()[0].size;
        s.read_inside(0, wsiseg_slide::Rect::new(0, 0, size.w, size.h))
            .unwrap()
    };
    let (slide, truth) = (level0(&slide_path), level0(&truth_path));
    // The largest region of the slide, from its GeoJSON: the link goes to it.
    let geo: Value = common::json(&d.join("out/synth-301.geojson"));
    let bbox = |f: &Value| {
        let ring = f["geometry"]["coordinates"][0].as_array().unwrap().clone();
        let xs: Vec<f64> = ring.iter().map(|p| p[0].as_f64().unwrap()).collect();
        let ys: Vec<f64> = ring.iter().map(|p| p[1].as_f64().unwrap()).collect();
        let min = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
        let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
        [min(&xs), min(&ys), max(&xs), max(&ys)]
    };
    let largest = geo["features"]
        .as_array()
        .unwrap()
        .iter()
        .max_by(|a, b| {
            let area = |f: &Value| {
                f["properties"]["measurements"]["Area (level-0 px^2)"]
                    .as_f64()
                    .unwrap()
            };
            area(a).total_cmp(&area(b))
        })
        .unwrap();
    let b = bbox(largest);
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let link = format!("#slide=synth-301&x={cx}&y={cy}&z=1&mask=1&heat=0&regions=0&truth=0");
    let plain = format!("#slide=synth-301&x={cx}&y={cy}&z=1&mask=0&heat=0&regions=0&truth=0");
    let plan = json!([
        {"open": link},
        {"eval": "window.wsisegView.transform()", "as": "t"},
        {"shot": "mask.png"},
        {"open": plain},
        {"wait": true},
        {"eval": "window.wsisegView.transform()", "as": "t0"},
        {"shot": "plain.png"},
        {"open": "#slide=synth-301"},
        {"eval": "window.wsisegView.centre()", "as": "home"},
        {"eval": "document.querySelectorAll('#regions li').length", "as": "listed"},
        {"click": "#regions li:nth-child(2)"},
        {"eval": "window.wsisegView.centre()", "as": "region"},
        {"eval": "document.querySelector('#regions li:nth-child(2)').textContent", "as": "region_text"},
        {"eval": "window.wsisegView.current()", "as": "first"},
        {"click": "#next"},
        {"eval": "window.wsisegView.current()", "as": "next"},
        {"eval": "document.getElementById('title').textContent", "as": "next_title"},
        {"click": "#prev"},
        {"eval": "window.wsisegView.current()", "as": "prev"},
        {"eval": "document.getElementById('scalebar-label').textContent", "as": "scale"},
        {"eval": "location.href", "as": "href"},
    ]);
    let r = browse(d, &plan);
    let res = &r["results"];
    assert_eq!(r["errors"], json!([]), "{r}");
    let shot = |name: &str| image::open(d.join(name)).unwrap().to_rgb8();

    // The link put the region's centre at the viewer's centre, 1:1.
    let t = &res["t"];
    assert!((t["scale"].as_f64().unwrap() - 1.0).abs() < 1e-6, "{t}");
    // Tumor colour where the truth says tumor, the slide's own pixels where
    // it says not (8 slide pixels from any truth boundary).
    let mask = shot("mask.png");
    let tumor_colour = [230, 30, 30];
    let s = samples(t, &truth, 8);
    type Sample = (u32, u32, u32, u32, bool);
    let (inside, outside): (Vec<&Sample>, Vec<&Sample>) = s.iter().partition(|p| p.4);
    assert!(
        inside.len() > 300 && outside.len() > 300,
        "{} {}",
        inside.len(),
        outside.len()
    );
    let red = inside
        .iter()
        .filter(|p| close(px(&mask, p.0, p.1), tumor_colour, 8))
        .count();
    let near_slide = |img: &image::RgbImage, p: &(u32, u32, u32, u32, bool)| {
        // The slide's pixel or a neighbour's (JPEG tiles; sub-pixel placement).
        (-1i32..=1).any(|dy| {
            (-1i32..=1).any(|dx| {
                let (x, y) = ((p.2 as i32 + dx) as u32, (p.3 as i32 + dy) as u32);
                close(px(img, p.0, p.1), px(&slide, x, y), 24)
            })
        })
    };
    let plain_outside = outside.iter().filter(|p| near_slide(&mask, p)).count();
    eprintln!(
        "mask view: {red} of {} truth-tumor samples in the tumor colour, {plain_outside} of {} others the slide's pixels",
        inside.len(),
        outside.len()
    );
    assert!(red * 100 >= inside.len() * 90, "{red} of {}", inside.len());
    assert!(
        plain_outside * 100 >= outside.len() * 90,
        "{plain_outside} of {}",
        outside.len()
    );
    // Opacity 0: the slide alone, everywhere.
    let plain = shot("plain.png");
    let all = samples(&res["t0"], &truth, 8);
    let same = all.iter().filter(|p| near_slide(&plain, p)).count();
    let red_left = all
        .iter()
        .filter(|p| close(px(&plain, p.0, p.1), tumor_colour, 8))
        .count();
    assert!(same * 100 >= all.len() * 97, "{same} of {}", all.len());
    assert_eq!(red_left, 0);

    // A click on a region of the list moves the view to it.
    let regions: Vec<[f64; 4]> = {
        let mut f: Vec<&Value> = geo["features"].as_array().unwrap().iter().collect();
        f.sort_by(|a, b| {
            let area = |f: &Value| {
                f["properties"]["measurements"]["Area (level-0 px^2)"]
                    .as_f64()
                    .unwrap()
            };
            area(b).total_cmp(&area(a))
        });
        f.iter().map(|f| bbox(f)).collect()
    };
    assert_eq!(res["listed"], json!(regions.len()));
    let c = &res["region"];
    let (rx, ry) = (c["x"].as_f64().unwrap(), c["y"].as_f64().unwrap());
    let rb = regions[1];
    assert!(
        rx >= rb[0] && rx <= rb[2] && ry >= rb[1] && ry <= rb[3],
        "centre {c} outside region {rb:?} ({})",
        res["region_text"]
    );
    assert!(
        c["z"].as_f64().unwrap() > res["home"]["z"].as_f64().unwrap(),
        "zoomed in: {c} vs {}",
        res["home"]
    );

    // Previous / next.
    assert_eq!(res["first"]["name"], "synth-301");
    assert_eq!(res["next"]["name"], "synth-302");
    assert_eq!(res["next_title"], "synth-302");
    assert_eq!(res["prev"]["name"], "synth-301");
    assert!(res["scale"].as_str().unwrap().ends_with("µm"), "{res}");
    assert!(res["href"]
        .as_str()
        .unwrap()
        .contains("#slide=synth-301&x="));

    // Every request went to the server: what the page saw, and Chromium's
    // own network log.
    let url = std::fs::read_to_string(d.join("url.txt")).unwrap();
    let origin = url.trim().split('/').take(3).collect::<Vec<_>>().join("/") + "/";
    let requests: Vec<&str> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(requests.len() > 20, "{requests:?}");
    let away: Vec<_> = requests
        .iter()
        .filter(|u| !u.starts_with(&origin) && !u.starts_with("data:"))
        .collect();
    assert!(away.is_empty(), "requests that left the server: {away:?}");
    let logged = common::page_requests(&d.join("net.json"));
    assert!(!logged.is_empty());
    let away: Vec<_> = logged.iter().filter(|u| !u.starts_with(&origin)).collect();
    assert!(
        away.is_empty(),
        "Chromium's log: requests that left the server: {away:?}"
    );

    // index.html, opened while the server ran, linked to it.
    let index = std::fs::read_to_string(d.join("index-dom.html")).unwrap();
    assert!(
        index.contains(&format!("href=\"{}#slide=synth-301\"", url.trim())),
        "index.html has no link to the viewer"
    );
    // Kept for people to look at.
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("view-mask.png");
    std::fs::copy(d.join("mask.png"), &keep).unwrap();
    eprintln!("screenshot: {}", keep.display());
}

/// A tiled RGB TIFF with a level per (width, height) (512² uncompressed
/// tiles, reduced levels marked as such), whose every tile entry points at
/// the same stored picture: real pixels to read at any size, in a file of a
/// few MB (as python/tests/test_memory.py makes them).
fn shared_tile_tiff(path: &Path, levels: &[(u32, u32)]) {
    const T: u32 = 512;
    let pixels: Vec<u8> = (0..T * T)
        .flat_map(|i| {
            let (x, y) = (i % T, i / T);
            [(x ^ y) as u8, (x / 2) as u8, (255 - y / 2) as u8]
        })
        .collect();
    let counts: Vec<u32> = levels
        .iter()
        .map(|&(w, h)| w.div_ceil(T) * h.div_ceil(T))
        .collect();
    let entries = |level: usize| if level == 0 { 11u32 } else { 12 };
    // Positions: header, then per level its IFD and two arrays, then the pixels.
    let mut at = 8u32;
    let mut ifd_at = Vec::new();
    for (i, n) in counts.iter().enumerate() {
        ifd_at.push(at);
        at += 2 + 12 * entries(i) + 4 + 8 * n;
    }
    let data_at = at;
    let mut out = b"II*\0".to_vec();
    out.extend(8u32.to_le_bytes());
    for (i, (&(w, h), &n)) in levels.iter().zip(&counts).enumerate() {
        let arrays = ifd_at[i] + 2 + 12 * entries(i) + 4;
        let mut tags: Vec<(u16, u16, u32, u32)> = vec![
            (256, 4, 1, w),
            (257, 4, 1, h),
            (258, 3, 1, 8),
            (259, 3, 1, 1),
            (262, 3, 1, 2),
            (277, 3, 1, 3),
            (284, 3, 1, 1),
            (322, 3, 1, T),
            (323, 3, 1, T),
            (324, 4, n, arrays),
            (325, 4, n, arrays + 4 * n),
        ];
        if i > 0 {
            tags.insert(0, (254, 4, 1, 1));
        }
        out.extend((tags.len() as u16).to_le_bytes());
        for (tag, kind, count, value) in tags {
            out.extend(tag.to_le_bytes());
            out.extend(kind.to_le_bytes());
            out.extend(count.to_le_bytes());
            if kind == 3 {
                out.extend((value as u16).to_le_bytes());
                out.extend([0, 0]);
            } else {
                out.extend(value.to_le_bytes());
            }
        }
        let next = ifd_at.get(i + 1).copied().unwrap_or(0);
        out.extend(next.to_le_bytes());
        for _ in 0..n {
            out.extend(data_at.to_le_bytes());
        }
        for _ in 0..n {
            out.extend((pixels.len() as u32).to_le_bytes());
        }
    }
    assert_eq!(out.len() as u32, data_at);
    out.extend(&pixels);
    std::fs::write(path, out).unwrap();
}

#[test]
fn view_pans_every_tile_of_a_100000_by_80000_slide_in_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("slides")).unwrap();
    let slide = d.join("slides/big.tif");
    // A run record for the slide's path (made on a small stand-in, quickly),
    // then the 100000×80000 pyramid in its place: the viewer reads the slide
    // the record names.
    shared_tile_tiff(&slide, &[(1024, 1024)]);
    run_ok(
        d,
        &args![
            "segment",
            &slide,
            "--model",
            common::threshold_model(),
            "--device",
            "cpu",
            "--out",
            "out"
        ],
    );
    shared_tile_tiff(
        &slide,
        &[
            (100_000, 80_000),
            (25_000, 20_000),
            (6250, 5000),
            (1563, 1250),
        ],
    );
    let v = Viewer::start(d, &["--threads", "2", "--cache-mb", "16"]);
    let info = get_json(&v, "api/slide/0");
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(100_000), Some(80_000)),
        "{info}"
    );
    let top = 17; // ⌈log2 100000⌉
    let (across, down) = (100_000u32.div_ceil(510), 80_000u32.div_ceil(510));
    let tiles: Vec<(u32, u32)> = (0..down)
        .flat_map(|r| (0..across).map(move |c| (c, r)))
        .collect();
    assert_eq!(tiles.len(), 197 * 157);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let rss = std::sync::Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(c, r)) = tiles.get(i) else { return };
                let (status, body) = get(
                    v.addr,
                    &format!("/{}/tile/0/slide/{top}/{c}_{r}.jpeg", v.token),
                );
                assert_eq!(
                    status,
                    200,
                    "tile {c},{r}: {}",
                    String::from_utf8_lossy(&body)
                );
                assert_eq!(&body[..2], b"\xff\xd8");
                if i.is_multiple_of(1000) {
                    rss.lock().unwrap().push((i, v.rss_kib()));
                }
            });
        }
    });
    let took = start.elapsed();
    // Every coarser level answers too (from the slide's own levels).
    for level in 0..top {
        assert_eq!(
            get(
                v.addr,
                &format!("/{}/tile/0/slide/{level}/0_0.jpeg", v.token)
            )
            .0,
            200
        );
    }
    let mut rss = rss.into_inner().unwrap();
    rss.sort();
    let early = rss.iter().find(|(i, _)| *i >= 3000).unwrap().1;
    let peak = rss.iter().map(|r| r.1).max().unwrap();
    let end = v.rss_kib();
    eprintln!(
        "{} tiles in {:.0} s ({:.0} tiles/s); RSS after 3000 tiles {} MiB, peak {} MiB, at the end {} MiB",
        tiles.len(),
        took.as_secs_f64(),
        tiles.len() as f64 / took.as_secs_f64(),
        early >> 10,
        peak >> 10,
        end >> 10
    );
    assert!(
        peak < early + 48 * 1024 && end < early + 48 * 1024,
        "{rss:?} end {end}"
    );
}
