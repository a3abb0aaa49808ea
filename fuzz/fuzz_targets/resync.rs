#![no_main]
// The logic and its properties live in `acip::fuzzing::resync` (linted, replayed by `cargo test`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| acip::fuzzing::resync::run(data));
