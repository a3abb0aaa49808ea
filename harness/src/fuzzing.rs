//! Fuzz logic for harness targets (STYLE.md rule 18): compiled and linted in every build, wrapped by
//! three-line targets in `fuzz/fuzz_targets/`.

use crate::replay::{dissect, DissectConfig};

/// `pcap` target: any bytes as a capture file. Reading, TCP reassembly and dissection must not panic, and
/// memory stays bounded by the named limits of [`DissectConfig`] (decoder buffers, out-of-order bytes per
/// direction, flows, anomalies per flow). Both renderings are exercised too.
pub fn pcap(data: &[u8]) {
    let config = DissectConfig { timeline: true, ..DissectConfig::default() };
    if let Ok(d) = dissect("fuzz.pcap", data, &config) {
        let text = d.render();
        assert!(text.starts_with("fuzz.pcap"));
        let json = serde_json::to_string(&d).expect("a dissection always serialises");
        assert!(json.starts_with('{'));
        for flow in &d.flows {
            // Whole packets are counted once, and hold no more bytes than the TCP stream delivered.
            for dir in [&flow.client_to_server, &flow.server_to_client] {
                let by_type: u64 = dir.by_type.values().map(|t| t.count).sum();
                assert_eq!(by_type, dir.packets);
                assert!(dir.packet_bytes <= dir.tcp.bytes);
            }
        }
    }
}
