//! Links libtorch (see crates/torch-link) and compiles the AOTInductor
//! loader's C++ shim (csrc/aoti.cpp) against libtorch's headers. Without
//! the headers (`LIBTORCH` unset, or a libtorch without
//! `torch/csrc/inductor/aoti_package/`), the crate builds without the
//! `wsiseg_aoti` cfg and `.pt2` models are refused with a message.
fn main() {
    wsiseg_torch_link::emit();
    println!("cargo::rustc-check-cfg=cfg(wsiseg_aoti)");
    println!("cargo:rerun-if-changed=csrc/aoti.cpp");
    let include = wsiseg_torch_link::libtorch_include_dirs();
    let header = "torch/csrc/inductor/aoti_package/model_package_loader.h";
    let has_loader = include.iter().any(|d| d.join(header).is_file());
    let Some(lib) = wsiseg_torch_link::libtorch_libs().filter(|_| has_loader) else {
        println!(
            "cargo:warning=libtorch's AOTInductor header ({header}) not found: .pt2 models will be refused"
        );
        return;
    };
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("csrc/aoti.cpp")
        .includes(&include)
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag_if_supported("-Wno-unused-parameter")
        .compile("wsiseg_aoti");
    // The loader lives in libtorch_cpu, c10::Error in libc10 (linked after
    // the static shim, which needs them).
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=wsiseg_aoti");
}
