//! Binary entry point of `reference-server`.
fn main() {
    eprintln!("reference-server: not built yet (issue 4)");
    std::process::exit(2);
}
