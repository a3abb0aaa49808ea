//! The process's resident memory over time, from `/proc/self/status` (`VmRSS`). On systems without
//! /proc the samples are absent and the report says so.

use crate::report::env::kib_field;

/// Resident set size of this process in bytes, if the OS tells.
pub fn rss_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| kib_field(&s, "VmRSS:"))
}

/// Peak resident set size (`VmHWM`) of this process in bytes, if the OS tells.
pub fn peak_rss_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| kib_field(&s, "VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = rss_bytes().expect("VmRSS on Linux");
            assert!(rss > 1024 * 1024, "{rss}");
            assert!(peak_rss_bytes().unwrap() >= rss);
        }
    }
}
