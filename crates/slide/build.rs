//! Compiles the scanline JPEG decoder (csrc/jpeg_rows.c) against the system's
//! libjpeg (libjpeg62-turbo-dev on Debian/Ubuntu; scripts/setup.sh installs it).

fn main() {
    // Run-time library paths (see crates/torch-link): the tests link OpenSlide.
    wsiseg_torch_link::emit();
    println!("cargo:rerun-if-changed=csrc/jpeg_rows.c");
    cc::Build::new()
        .file("csrc/jpeg_rows.c")
        .warnings(true)
        .compile("wsiseg_jpeg_rows");
    println!("cargo:rustc-link-lib=jpeg");
}
