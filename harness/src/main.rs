//! `harness`: setup plus one `match` over the subcommand.
fn main() {
    eprintln!("harness: no subcommands yet");
    std::process::exit(2);
}
