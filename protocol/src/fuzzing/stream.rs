//! Fuzz logic for the `stream` target: [`StreamDecoder`](crate::stream::StreamDecoder) (ACIP-SPEC.md 6.1,
//! 6.2) fed arbitrary bytes in arbitrary chunks. Properties: it never panics; after draining, it holds less
//! than one header plus `max_packet`; chunking never changes the outcome (the same packets, then the same
//! kind of error or none); and packets built from the input come out unchanged whatever the split.
//!
//! Input layout: the first byte picks the chunk sizes (see [`chunk_sizes`]), the rest is the byte stream.
//! The same input is also read as a list of packets (part 2 of [`run`]).

use std::mem::discriminant;

use arbitrary::Unstructured;

use crate::codec::{CodecError, Limits, Packet, PacketType, HEADER_LEN};
use crate::stream::StreamDecoder;

/// The real limits with a 64 KiB packet cap, so that the fuzzer reaches the limit with small inputs.
pub fn limits() -> Limits {
    Limits { max_packet: 64 * 1024, ..Limits::default() }
}

/// Chunk sizes from one byte: the top two bits choose the largest chunk (1, 7, 64 or 4096 bytes), the rest
/// seeds a xorshift generator. Deterministic, so a failing input replays exactly.
pub fn chunk_sizes(seed: u8) -> impl Iterator<Item = usize> {
    let max = [1u32, 7, 64, 4096][usize::from(seed >> 6)];
    let mut state = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % max + 1) as usize
    })
}

/// Feeds `stream` to a fresh decoder in chunks of the given sizes (when they run out, the rest in one
/// chunk), draining after each chunk, and checks the decoder's invariants on the way. Returns the packets
/// and the error that ended the stream, if any.
pub fn decode_chunked(
    stream: &[u8],
    chunks: impl IntoIterator<Item = usize>,
    limits: &Limits,
) -> (Vec<Packet>, Option<CodecError>) {
    let mut decoder = StreamDecoder::new(*limits);
    let (mut packets, mut error) = (Vec::new(), None);
    let mut sizes = chunks.into_iter();
    let mut rest = stream;
    while !rest.is_empty() && error.is_none() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        decoder.handle_bytes(chunk);
        while let Some(next) = decoder.poll_packet() {
            match next {
                Ok(p) => packets.push(p),
                Err(e) => {
                    assert_eq!(decoder.poll_packet(), Some(Err(e.clone())), "the error is not sticky");
                    error = Some(e);
                    break;
                }
            }
        }
        let bound = HEADER_LEN + limits.max_packet as usize;
        assert!(decoder.buffered() < bound, "{} bytes buffered, bound {bound}", decoder.buffered());
    }
    let used: usize = packets.iter().map(Packet::wire_len).sum();
    assert_eq!(decoder.consumed(), used as u64);
    if error.is_none() {
        assert_eq!(decoder.buffered(), stream.len() - used, "bytes lost or invented");
    }
    (packets, error)
}

pub fn run(data: &[u8]) {
    let limits = limits();
    // 1. Any bytes: the chosen chunking gives the same outcome as a single chunk.
    if let Some((&seed, stream)) = data.split_first() {
        let (whole, whole_err) = decode_chunked(stream, [], &limits);
        let (split, split_err) = decode_chunked(stream, chunk_sizes(seed), &limits);
        assert_eq!(whole, split, "chunking changed the packets");
        // The kind must match; a BadMagic seen early holds fewer bytes of the magic, so values may differ.
        assert_eq!(whole_err.as_ref().map(discriminant), split_err.as_ref().map(discriminant));
    }
    // 2. Packets built from the bytes, encoded back to back and split: exactly those packets come out.
    let mut u = Unstructured::new(data);
    let mut packets = Vec::new();
    for _ in 0..u.int_in_range(0..=8u8).unwrap_or(0) {
        let packet_type = PacketType::from_u16(u.arbitrary().unwrap_or(0));
        let len = u.int_in_range(0..=600usize).unwrap_or(0).min(u.len());
        let payload = u.bytes(len).unwrap_or_default().to_vec();
        packets.push(Packet::new(packet_type, payload));
    }
    let wire: Vec<u8> = packets.iter().flat_map(Packet::encode).collect();
    let seed = u.arbitrary().unwrap_or(0);
    let (got, error) = decode_chunked(&wire, chunk_sizes(seed), &limits);
    assert_eq!(error, None);
    assert_eq!(got, packets);
}

/// The seed files of this target: every example packet back to back under each chunking class, one
/// example per file with byte-by-byte chunking, and two streams that must fail (bad magic, oversized).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let examples = super::packet::examples();
    let all: Vec<u8> = examples.iter().flat_map(|(_, p)| p.to_packet().encode()).collect();
    let mut seeds: Vec<(String, Vec<u8>)> = [0x00u8, 0x45, 0x8A, 0xCF]
        .into_iter()
        .map(|seed| (format!("all_examples_chunks_{seed:02x}.bin"), [&[seed][..], &all].concat()))
        .collect();
    for (name, p) in &examples {
        seeds.push((format!("{name}_bytewise.bin"), [&[0u8][..], &p.to_packet().encode()].concat()));
    }
    let mut too_large = Packet::empty(PacketType::IMAGE_FRAME).header();
    too_large.length = limits().max_packet + 1;
    seeds.push(("error_too_large.bin".into(), [&[0x45u8][..], &too_large.to_bytes()].concat()));
    seeds.push(("error_bad_magic.bin".into(), b"\x45GET / HTTP/1.1\r\n\r\n".to_vec()));
    seeds
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fuzzing::packet::examples;
    use crate::fuzzing::{check_seed_dir, replay_seed_dir};

    const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/seeds/stream");

    #[test]
    fn seeds_are_current() {
        check_seed_dir(SEEDS, &seeds());
    }

    #[test]
    fn replay_seeds() {
        replay_seed_dir(SEEDS, seeds().len(), run);
    }

    #[test]
    fn the_error_seeds_fail_as_intended() {
        for (name, kind) in [("error_too_large.bin", "PacketTooLarge"), ("error_bad_magic.bin", "BadMagic")] {
            let data = &seeds().into_iter().find(|(n, _)| n == name).unwrap().1;
            let (_, error) = decode_chunked(&data[1..], chunk_sizes(data[0]), &limits());
            assert!(format!("{error:?}").starts_with(&format!("Some({kind}")), "{name}: {error:?}");
        }
    }

    fn valid_stream() -> impl Strategy<Value = Vec<u8>> {
        let n = examples().len();
        prop::collection::vec(0..n, 0..12).prop_map(|picks| {
            let ex = examples();
            picks.into_iter().flat_map(|i| ex[i].1.to_packet().encode()).collect()
        })
    }

    proptest! {
        /// Any byte string in any chunks: packets or a typed error, never a panic, and the same outcome as
        /// one chunk. The bytes are a valid stream with up to three bytes overwritten, so that decoding gets
        /// past the magic; plain random bytes are covered by `run` and the fuzz target.
        #[test]
        fn any_bytes_in_any_chunks_decode_like_one_chunk(
            stream in valid_stream(),
            damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            tail in prop::collection::vec(any::<u8>(), 0..64),
            chunks in prop::collection::vec(1usize..300, 0..64),
        ) {
            let mut stream = stream;
            for (at, byte) in damage {
                if !stream.is_empty() {
                    let i = at.index(stream.len());
                    stream[i] = byte;
                }
            }
            stream.extend_from_slice(&tail);
            let (whole, whole_err) = decode_chunked(&stream, [], &limits());
            let (split, split_err) = decode_chunked(&stream, chunks, &limits());
            prop_assert_eq!(whole, split);
            prop_assert_eq!(whole_err.as_ref().map(discriminant), split_err.as_ref().map(discriminant));
        }

        /// A valid stream split anywhere decodes to exactly the packets it was made of.
        #[test]
        fn valid_stream_split_anywhere_decodes_identically(
            picks in prop::collection::vec(0..examples().len(), 0..12),
            chunks in prop::collection::vec(1usize..200, 0..200),
        ) {
            let ex = examples();
            let packets: Vec<Packet> = picks.iter().map(|&i| ex[i].1.to_packet()).collect();
            let wire: Vec<u8> = packets.iter().flat_map(Packet::encode).collect();
            let (got, error) = decode_chunked(&wire, chunks, &crate::codec::Limits::default());
            prop_assert_eq!(error, None);
            prop_assert_eq!(got, packets);
        }

        #[test]
        fn run_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
            run(&data);
        }
    }
}
