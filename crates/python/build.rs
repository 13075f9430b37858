//! The module finds libtorch and OpenSlide as the `torch` and
//! `openslide-bin` packages installed beside it (`site-packages/torch/lib`,
//! `site-packages/openslide_bin`) — and `wsiseg/__init__.py` imports both
//! first, so the libraries are the ones Python already loaded — then, in a
//! checkout, where setup.sh put them.

fn main() {
    println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../torch/lib:$ORIGIN/../openslide_bin");
    wsiseg_torch_link::emit();
}
