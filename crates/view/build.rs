//! Builds OpenSeadragon (installed from the npm registry by scripts/setup.sh,
//! `npm ci` in crates/view/web) into the crate: the viewer needs no network.
use std::path::Path;

fn main() {
    wsiseg_torch_link::emit();
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let osd = web.join("node_modules/openseadragon");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for (from, to) in [
        (
            "build/openseadragon/openseadragon.min.js",
            "openseadragon.min.js",
        ),
        ("LICENSE.txt", "openseadragon-LICENSE.txt"),
        ("package.json", "openseadragon-package.json"),
    ] {
        let src = osd.join(from);
        println!("cargo:rerun-if-changed={}", src.display());
        if let Err(e) = std::fs::copy(&src, out.join(to)) {
            panic!(
                "{}: {e}. wsiseg view builds OpenSeadragon in from the npm registry: run scripts/setup.sh, or `npm ci` in {}",
                src.display(),
                web.display()
            );
        }
    }
}
