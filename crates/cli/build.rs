//! Links libtorch (see crates/torch-link) and, into the `wsiseg` binary,
//! tcmalloc as the process's malloc.
//!
//! Why tcmalloc: libtorch allocates every activation with malloc. glibc
//! serves blocks of 32 MiB and more (the shipped UNet's largest activations,
//! batch 8) from fresh mappings and unmaps them when freed, so every batch
//! page-faults its working set again: on the CPU machine 7–9 s of a 14 s run were system
//! time. tcmalloc keeps freed pages for the next batch (0.5 s of system
//! time, the run 1.4–1.5× faster), and its resident memory stays flat as the
//! slide grows (issue 11; figures in the README). It is linked statically
//! (`libtcmalloc_minimal.a`, from libgoogle-perftools-dev), so the binary
//! needs no extra library at run time; its `malloc`/`free` are the
//! executable's and every shared library (libtorch, OpenSlide) uses them.
//!
//! `WSISEG_ALLOCATOR=glibc` at build time leaves glibc's malloc (for
//! comparison); the binary reports which one it has (`cfg(wsiseg_tcmalloc)`).

use std::env;
use std::path::{Path, PathBuf};

/// Where Debian and Ubuntu put the static library.
const DIRS: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
];

fn tcmalloc() -> Option<PathBuf> {
    if let Some(dir) = env::var_os("TCMALLOC_LIB_DIR") {
        return Some(Path::new(&dir).join("libtcmalloc_minimal.a")).filter(|p| p.exists());
    }
    DIRS.iter()
        .map(|d| Path::new(d).join("libtcmalloc_minimal.a"))
        .find(|p| p.exists())
}

fn main() {
    wsiseg_torch_link::emit();
    println!("cargo:rerun-if-env-changed=WSISEG_ALLOCATOR");
    println!("cargo:rerun-if-env-changed=TCMALLOC_LIB_DIR");
    println!("cargo:rustc-check-cfg=cfg(wsiseg_tcmalloc)");
    if env::var("WSISEG_ALLOCATOR").is_ok_and(|a| a == "glibc") {
        return;
    }
    let Some(lib) = tcmalloc() else {
        println!(
            "cargo:warning=libtcmalloc_minimal.a not found (apt install libgoogle-perftools-dev, \
             or run scripts/setup.sh): wsiseg is built with glibc's malloc and runs the model \
             markedly slower on the CPU"
        );
        return;
    };
    println!("cargo:rerun-if-changed={}", lib.display());
    // The whole archive, so that its malloc/free/new/delete replace the C
    // library's for the whole process, not only for what Rust references.
    println!("cargo:rustc-link-arg-bins=-Wl,--whole-archive");
    println!("cargo:rustc-link-arg-bins={}", lib.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--no-whole-archive");
    println!("cargo:rustc-cfg=wsiseg_tcmalloc");
}
