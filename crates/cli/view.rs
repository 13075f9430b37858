//! `wsiseg view OUT`: the folder's slides in a browser (crates/view).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use wsiseg_view::{Server, ViewOptions};

use crate::args::ViewArgs;

/// `OUT/.wsiseg-view.js` while the server runs: index.html's link to it.
struct Beacon(Option<PathBuf>);

impl Beacon {
    fn write(out: &std::path::Path, url: &str) -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        let path = out.join(wsiseg_engine::VIEW_SCRIPT);
        let body = format!(
            "window.WSISEG_VIEW = {};\n",
            serde_json::json!({"url": url, "pid": std::process::id()})
        );
        // Owner-only: the URL holds the token.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(body.as_bytes()));
        match written {
            Ok(()) => Self(Some(path)),
            Err(e) => {
                tracing::warn!(
                    "{}: {e} (index.html will not link to the viewer)",
                    path.display()
                );
                Self(None)
            }
        }
    }
}

impl Drop for Beacon {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub fn run(args: &ViewArgs) -> Result<()> {
    if !args.out.is_dir() {
        bail!("{}: no such folder", args.out.display());
    }
    for i in &args.input {
        if !i.exists() {
            bail!("{}: no such file or folder (--input)", i.display());
        }
    }
    if args.cache_mb == 0 || args.threads == Some(0) {
        bail!("--cache-mb and --threads must be at least 1");
    }
    let mut opts = ViewOptions::new(&args.out);
    opts.inputs.clone_from(&args.input);
    opts.bind = args.bind;
    opts.port = args.port;
    opts.cache_bytes = args.cache_mb << 20;
    if let Some(t) = args.threads {
        opts.threads = t;
    }
    let server = match Server::bind(&opts) {
        Err(wsiseg_view::ViewError::Bind { addr, source })
            if source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            bail!("cannot listen on {addr}: the port is in use (another wsiseg view?); choose another with --port, or --port 0 for any free one")
        }
        r => r?,
    };
    if !args.bind.is_loopback() {
        tracing::warn!(
            "listening on {}: other machines can reach this server (each request still needs the token)",
            server.addr()
        );
    }
    let url = server.url();
    let _beacon = Beacon::write(&args.out, &url);
    tracing::info!(
        "{} slide(s) of {}; open this link in a browser (from a laptop: ssh -L {port}:127.0.0.1:{port} THIS_SERVER, then the same link); Ctrl-C stops",
        server.slides(),
        args.out.display(),
        port = server.addr().port()
    );
    // The URL on stdout alone: scripts read it there.
    println!("{url}");
    let _ = std::io::stdout().flush();
    server.run(crate::signals::cancel_flag());
    tracing::info!("stopped");
    Ok(())
}
