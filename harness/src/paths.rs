//! Where a subcommand's report goes when `--out` is not given.

use std::path::PathBuf;

/// `<target>/harness/<command>/<UTC time>[-<suffix>]` under the build's target directory (git-ignored):
/// `CARGO_TARGET_DIR` when set, else the workspace's `target/`.
pub fn default_out_dir(command: &str, suffix: Option<&str>) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    acip::cli::report_dir(&target, command, now.as_secs(), suffix)
}
