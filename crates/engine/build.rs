//! Links libtorch (see crates/torch-link).
fn main() {
    wsiseg_torch_link::emit();
}
