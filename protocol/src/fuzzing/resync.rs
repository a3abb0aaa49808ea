//! Fuzz logic for the `resync` target: [`ResyncDecoder`](crate::resync::ResyncDecoder), the decoder that
//! never gives up, fed arbitrary bytes in arbitrary chunks (and, from one input bit, a gap). Properties: it
//! never panics; it never holds more than [`max_held`]; the items tile the stream exactly (each starts where
//! the previous one ended, the undecided tail is what is still held); every packet it returns re-encodes
//! to the bytes it came from (so its CRC checks); and how the stream was cut into reads never changes the
//! items.
//!
//! Input layout: the first byte picks the chunk sizes ([`super::stream::chunk_sizes`]), the rest is the
//! byte stream.

use crate::codec::{Limits, HEADER_LEN};
use crate::resync::{max_held, Item, Located, ResyncDecoder};

use super::stream::chunk_sizes;

/// Small packets, so that the fuzzer reaches the limits with small inputs.
pub fn limits() -> Limits {
    Limits { max_packet: 4 * 1024, ..Limits::default() }
}

/// Decodes `stream` in chunks of the given sizes, then finishes; checks the invariants on the way.
pub fn decode_chunked(stream: &[u8], chunks: impl IntoIterator<Item = usize>, limits: &Limits) -> Vec<Item> {
    let mut d = ResyncDecoder::new(*limits);
    let mut items = Vec::new();
    let mut sizes = chunks.into_iter();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        d.handle_bytes(chunk);
        items.extend(std::iter::from_fn(|| d.poll()));
        assert!(d.buffered() <= max_held(limits), "{} bytes held, bound {}", d.buffered(), max_held(limits));
    }
    d.finish();
    items.extend(std::iter::from_fn(|| d.poll()));
    // The items tile the stream: [0, consumed) exactly, the rest is still held.
    let mut at = 0u64;
    for item in &items {
        let (offset, len) = match item {
            Item::Packet(l) => {
                check_packet(stream, l);
                (l.offset, l.packet.wire_len() as u64)
            }
            Item::Skipped { offset, len, .. } => (*offset, *len),
            Item::Interleaved { offset, len, packets, .. } => {
                let payloads: u64 = packets.iter().map(|l| l.packet.payload.len() as u64).sum();
                assert_eq!(*len, packets.len() as u64 * HEADER_LEN as u64 + payloads, "region length");
                (*offset, *len)
            }
        };
        assert_eq!(offset, at, "items must tile the stream: {items:?}");
        assert!(len > 0, "an empty item");
        at = offset + len;
    }
    assert_eq!(at, d.consumed());
    assert_eq!(d.consumed() + d.buffered() as u64, stream.len() as u64, "bytes lost or invented");
    items
}

/// A returned packet is exactly the bytes at its offset.
fn check_packet(stream: &[u8], l: &Located) {
    let wire = l.packet.encode();
    let at = l.offset as usize;
    let mut expected = wire.clone();
    // The client ID is not part of `Packet`: take it from the header as found.
    expected[18..22].copy_from_slice(&l.client_id.to_be_bytes());
    assert_eq!(stream.get(at..at + wire.len()), Some(&expected[..]), "packet at {at} is not its bytes");
}

pub fn run(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else { return };
    let limits = limits();
    let whole = decode_chunked(stream, [], &limits);
    let split = decode_chunked(stream, chunk_sizes(seed), &limits);
    assert_eq!(whole, split, "chunking changed the items");
}

/// Seeds: clean packets, then each kind of damage (garbage, a flipped payload byte, an impossible length,
/// two interleaved writers, a cut packet), under two chunkings.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    use crate::codec::{Packet, PacketType};
    let ping = Packet::empty(PacketType::PING).encode();
    let frame = Packet::new(PacketType::IMAGE_FRAME, vec![7u8; 300]).encode();
    let mut flipped = frame.clone();
    flipped[HEADER_LEN + 5] ^= 1;
    let mut impossible = Packet::empty(PacketType::IMAGE_FRAME).header().to_bytes().to_vec();
    impossible[10..14].copy_from_slice(&u32::MAX.to_be_bytes());
    let (a, b) = (
        Packet::new(PacketType::ENCRYPTED, vec![1u8; 60]).encode(),
        Packet::new(PacketType::ENCRYPTED, vec![2u8; 30]).encode(),
    );
    let mut interleaved = [&a[..HEADER_LEN], &b[..HEADER_LEN], &b[HEADER_LEN..], &a[HEADER_LEN..]].concat();
    interleaved.extend_from_slice(&ping);
    let streams: Vec<(&str, Vec<u8>)> = vec![
        ("clean", [&ping[..], &frame, &ping].concat()),
        ("garbage", [&b"junk!"[..], &ping, &b"more junk"[..], &frame].concat()),
        ("flipped", [&ping[..], &flipped, &ping].concat()),
        ("impossible_length", [&impossible[..], &ping].concat()),
        ("interleaved", interleaved),
        ("cut", [&frame[..100], &ping[..]].concat()),
    ];
    let mut seeds = Vec::new();
    for (name, s) in streams {
        for chunking in [0x00u8, 0x8A] {
            seeds.push((format!("{name}_{chunking:02x}.bin"), [&[chunking][..], &s].concat()));
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fuzzing::{check_seed_dir, replay_seed_dir};

    const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/seeds/resync");

    #[test]
    fn seeds_are_current() {
        check_seed_dir(SEEDS, &seeds());
    }

    #[test]
    fn replay_seeds() {
        replay_seed_dir(SEEDS, seeds().len(), run);
    }

    proptest! {
        #[test]
        fn run_never_panics(data in prop::collection::vec(any::<u8>(), 0..1024)) {
            run(&data);
        }

        /// Seeds with a few bytes overwritten: the damage paths with any chunking.
        #[test]
        fn damaged_seeds_hold_every_property(
            pick in 0usize..12,
            damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            seed in any::<u8>(),
        ) {
            let mut data = seeds()[pick].1.clone();
            data[0] = seed;
            for (at, byte) in damage {
                let i = 1 + at.index(data.len() - 1);
                data[i] = byte;
            }
            run(&data);
        }
    }
}
