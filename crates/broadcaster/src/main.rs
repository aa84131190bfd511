fn main() {
    eprintln!("broadcaster: not built yet (see issues 7 and 8)");
    std::process::exit(2);
}
