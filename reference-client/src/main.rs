//! Binary entry point of `reference-client`.
fn main() {
    eprintln!("reference-client: not built yet (issue 4)");
    std::process::exit(2);
}
