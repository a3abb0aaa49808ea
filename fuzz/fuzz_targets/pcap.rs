#![no_main]
// Any bytes as a pcap/pcapng capture: no panic, bounded memory (see harness::fuzzing::pcap).
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::fuzzing::pcap(data));
