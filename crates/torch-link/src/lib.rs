//! Link flags for every package that links a binary or test using libtorch.
//!
//! Call [`emit`] from a `build.rs`:
//!
//! ```
//! wsiseg_torch_link::emit();
//! ```
//!
//! It does two things (see `shared/DESIGN.md`, "Hard-won build facts"):
//!
//! * keeps `libtorch_cuda.so` in the final link. With the default `--as-needed`
//!   the linker drops it, because no symbol of it is referenced directly, and
//!   `tch::Cuda::is_available()` then answers `false` on a GPU machine;
//! * embeds a RUNPATH to the libtorch the binary was built against, so it runs
//!   without `LD_LIBRARY_PATH`, while `LD_LIBRARY_PATH` still takes precedence
//!   (the GPU servers point it at their own libtorch 2.11).

use std::env;
use std::path::PathBuf;

/// Where libtorch's shared libraries are, as tch's build script will find them.
fn libtorch_lib_dir() -> Option<PathBuf> {
    if let Ok(lib) = env::var("LIBTORCH_LIB") {
        return Some(PathBuf::from(lib).join("lib"));
    }
    if let Ok(root) = env::var("LIBTORCH") {
        return Some(PathBuf::from(root).join("lib"));
    }
    None
}

/// Prints the `cargo:` lines; see the crate documentation.
pub fn emit() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    let Some(lib) = libtorch_lib_dir() else {
        println!(
            "cargo:warning=LIBTORCH is not set: run scripts/setup.sh (the binary will need LD_LIBRARY_PATH)"
        );
        return;
    };
    // Canonicalise so the RUNPATH survives the `.libtorch` link being moved.
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{}", lib.display());
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
