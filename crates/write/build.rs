//! Run-time library paths (see crates/torch-link): its tests link OpenSlide.
fn main() {
    wsiseg_torch_link::emit();
}
