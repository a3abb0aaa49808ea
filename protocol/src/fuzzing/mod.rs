//! Fuzz logic as library code (STYLE.md rule 18): each target in `fuzz/` is a thin wrapper over one
//! function here, so the logic is compiled, linted and replayed over `corpus/` by plain `cargo test`.

pub mod handshake;
pub mod packet;
pub mod reassembly;
pub mod resync;
pub mod stream;

use arbitrary::Unstructured;

/// Splits fuzz input into a configuration byte and the operations `parse_op` reads after it; a truncated
/// last operation is dropped (so every input means something).
pub fn parse_ops<Op>(
    data: &[u8],
    mut parse_op: impl FnMut(&mut Unstructured<'_>) -> arbitrary::Result<Op>,
) -> (u8, Vec<Op>) {
    let mut u = Unstructured::new(data);
    let cfg = u.arbitrary::<u8>().unwrap_or(0);
    let mut ops = Vec::new();
    while !u.is_empty() {
        match parse_op(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    (cfg, ops)
}

/// A big-endian `u16` from fuzz input.
pub(crate) fn u16_of(u: &mut Unstructured<'_>) -> arbitrary::Result<u16> {
    Ok(u16::from_be_bytes(u.arbitrary()?))
}

/// Reads every file of a seed directory, sorted by name.
pub fn seed_files(dir: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            (p.display().to_string(), std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        })
        .collect();
    files.sort();
    files
}

/// Checks that `dir` holds exactly the generated `seeds` (each `name` with its bytes). With
/// `ACIP_REGEN_SEEDS=1` it writes them instead, so seeds are regenerated from code, never edited by hand.
pub fn check_seed_dir<N: AsRef<str>>(dir: &str, seeds: &[(N, Vec<u8>)]) {
    if std::env::var_os("ACIP_REGEN_SEEDS").is_some() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        for (name, data) in seeds {
            let name = name.as_ref();
            std::fs::write(format!("{dir}/{name}"), data).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"));
        }
    }
    for (name, data) in seeds {
        let name = name.as_ref();
        let on_disk = std::fs::read(format!("{dir}/{name}")).unwrap_or_else(|e| {
            panic!("{dir}/{name}: {e} (regenerate with ACIP_REGEN_SEEDS=1 cargo test -p acip seeds)")
        });
        assert!(
            on_disk == *data,
            "{dir}/{name} is stale (regenerate with ACIP_REGEN_SEEDS=1 cargo test -p acip seeds)"
        );
    }
}

/// Replays every file of a seed directory through `run` and checks there are at least `min` of them
/// (generated seeds plus any minimized finding added by hand).
pub fn replay_seed_dir(dir: &str, min: usize, run: impl Fn(&[u8])) {
    let files = seed_files(dir);
    assert!(files.len() >= min, "seeds missing in {dir}");
    for (path, data) in files {
        eprintln!("{path}");
        run(&data);
    }
}
