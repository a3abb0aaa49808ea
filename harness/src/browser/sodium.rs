//! libsodium.js for the page's encryption (`harness browser --encrypt`): the npm packages
//! `libsodium-wrappers` and `libsodium` (its WebAssembly build), fetched and checked against their pinned
//! sha512 by `harness/assets/browser/fetch-sodium.sh` into a git-ignored directory. Nothing of it is
//! committed or compiled in: the harness reads the two files at run time and the page server hands them
//! to the page under `/sodium/`.

use std::path::{Path, PathBuf};

/// The environment variable naming the directory that holds `libsodium.js` and `libsodium-wrappers.js`.
pub const ENV: &str = "ACIP_SODIUM_JS";
/// The script that fetches the library (from the workspace root).
pub const FETCH_SCRIPT: &str = "harness/assets/browser/fetch-sodium.sh";
/// The files the page loads, in load order (the wrappers find `libsodium` as a global).
pub const FILES: [&str; 2] = ["libsodium.js", "libsodium-wrappers.js"];

/// Why libsodium.js is not available.
#[derive(Debug, thiserror::Error)]
pub enum SodiumError {
    #[error(
        "{path}: libsodium.js is needed for --encrypt and is not there: run `bash {FETCH_SCRIPT}` (or set \
         {ENV} to a directory holding {} and {})",
        FILES[0],
        FILES[1]
    )]
    Missing { path: PathBuf },
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

impl SodiumError {
    /// The file concerned.
    pub fn path(&self) -> &Path {
        match self {
            SodiumError::Missing { path } | SodiumError::Read { path, .. } => path,
        }
    }
}

/// The library's two files, read into memory.
#[derive(Debug, Clone)]
pub struct Sodium {
    pub dir: PathBuf,
    /// `libsodium.js` (the Emscripten module, WebAssembly inlined).
    pub libsodium: Vec<u8>,
    /// `libsodium-wrappers.js` (the `sodium` API).
    pub wrappers: Vec<u8>,
    /// Contents of the `VERSION` file the fetch script writes, if any.
    pub version: Option<String>,
}

/// Where the library is looked for: `$ACIP_SODIUM_JS`, else the fetch script's default directory.
pub fn dir() -> PathBuf {
    match std::env::var_os(ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => default_dir(),
    }
}

/// The fetch script's default directory, in this crate's source tree.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/browser/vendor/libsodium")
}

impl Sodium {
    /// Reads the library from [`dir`].
    pub fn locate() -> Result<Sodium, SodiumError> {
        Sodium::load(&dir())
    }

    /// Reads the library from `dir`.
    pub fn load(dir: &Path) -> Result<Sodium, SodiumError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => SodiumError::Missing { path },
                _ => SodiumError::Read { path, source },
            })
        };
        let libsodium = read(FILES[0])?;
        let wrappers = read(FILES[1])?;
        let version = std::fs::read_to_string(dir.join("VERSION")).ok().map(|v| v.trim().to_string());
        Ok(Sodium { dir: dir.to_path_buf(), libsodium, wrappers, version })
    }

    /// The body served at `/sodium/NAME`, if NAME is one of [`FILES`].
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        match name {
            n if n == FILES[0] => Some(&self.libsodium),
            n if n == FILES[1] => Some(&self.wrappers),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_names_the_fetch_script_and_the_variable() {
        let e = Sodium::load(Path::new("/nonexistent/acip-sodium")).unwrap_err();
        assert!(matches!(e, SodiumError::Missing { .. }));
        let text = e.to_string();
        assert!(text.contains(FETCH_SCRIPT) && text.contains(ENV), "{text}");
        assert_eq!(e.path(), Path::new("/nonexistent/acip-sodium/libsodium.js"));
    }
}
