//! Run-time library paths for every package that links a binary or test
//! using libtorch or OpenSlide.
//!
//! Call [`emit`] from a `build.rs`:
//!
//! ```
//! wsiseg_torch_link::emit();
//! ```
//!
//! It embeds a RUNPATH to the libtorch the binary was built against, and to
//! the OpenSlide 4 library `scripts/setup.sh` takes from the `openslide-bin`
//! wheel (`.openslide/`, read through `WSISEG_OPENSLIDE_DIR`), so binaries run
//! without `LD_LIBRARY_PATH`, while `LD_LIBRARY_PATH` still takes precedence
//! (the GPU servers point it at their own libtorch 2.11). `scripts/bundle.sh`
//! replaces the RUNPATH with `$ORIGIN/lib`.
//!
//! `libtorch_cuda.so` is deliberately *not* linked: with the default
//! `--as-needed` the linker would drop it anyway (no symbol of it is used
//! directly, `shared/DESIGN.md`), and a binary that needs it cannot start on a
//! CPU-only libtorch. `wsiseg_infer::load_cuda_support` loads it at run time
//! from the folder libtorch came from, before anything asks for a GPU.

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

/// The folder holding the `libopenslide.so.1` that `.openslide/libopenslide.so`
/// (made by scripts/setup.sh) links to, when there is one.
fn openslide_lib_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env::var_os("WSISEG_OPENSLIDE_DIR")?);
    let lib = dir.join("libopenslide.so.1").canonicalize().ok()?;
    lib.parent().map(PathBuf::from)
}

/// Prints the `cargo:` lines; see the crate documentation.
pub fn emit() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=WSISEG_OPENSLIDE_DIR");
    if let Some(dir) = openslide_lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
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
}

/// The root of the libtorch being built against (`LIBTORCH`: a libtorch
/// archive, or a pip `torch` package folder), canonicalised.
fn libtorch_root() -> Option<PathBuf> {
    let root = PathBuf::from(env::var_os("LIBTORCH")?);
    Some(root.canonicalize().unwrap_or(root))
}

/// The folders to compile C++ against libtorch's headers with (the build
/// scripts of crates with a C++ shim over libtorch, such as wsiseg-infer's
/// AOTInductor loader); empty when `LIBTORCH` is not set or has no headers.
pub fn libtorch_include_dirs() -> Vec<PathBuf> {
    let Some(root) = libtorch_root() else {
        return Vec::new();
    };
    let include = root.join("include");
    if !include.join("torch").is_dir() {
        return Vec::new();
    }
    vec![include.join("torch/csrc/api/include"), include]
}

/// The folder holding libtorch's shared libraries (for `-L`), when known.
pub fn libtorch_libs() -> Option<PathBuf> {
    let lib = libtorch_lib_dir()?;
    Some(lib.canonicalize().unwrap_or(lib))
}
