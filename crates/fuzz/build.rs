//! The fuzzer links the manifest parser's crate (wsiseg-infer, hence
//! libtorch): find libtorch at run time as the `wsiseg` binary does.

fn main() {
    wsiseg_torch_link::emit();
}
