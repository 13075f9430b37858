fn main() {
    wsiseg_torch_link::emit();
}
