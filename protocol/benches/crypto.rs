//! Criterion benchmark of packet encryption (ACIP-SPEC.md 4.5) for one 640x480 RGB24 IMAGE_FRAME
//! (921,624-byte payload, 3.7): encrypt, decrypt, and both, beside a memcpy of the same bytes so the ratio
//! to the machine's limit shows. The key derivation does not matter here (one session, both dialects
//! encrypt the same way; only the nonce counter's byte order differs).
//!
//! `cargo bench -p acip --bench crypto -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use acip::codec::{Dialect, Packet, PacketType};
use acip::crypto::Session;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

fn image_frame() -> Packet {
    let pixels = (WIDTH * HEIGHT * 3) as usize;
    let mut payload = Vec::with_capacity(24 + pixels);
    for v in [WIDTH, HEIGHT, 1, 0, 0, 0] {
        payload.extend_from_slice(&v.to_be_bytes());
    }
    payload.extend((0..pixels).map(|i| (i * 7 % 251) as u8));
    Packet::new(PacketType::IMAGE_FRAME, payload)
}

fn bench(c: &mut Criterion) {
    let frame = image_frame();
    assert_eq!(frame.payload.len(), 921_624);
    let mut sender = Session::new(Dialect::Head, [0x42; 32], [1; 16]);
    let receiver = Session::new(Dialect::Head, [0x42; 32], [2; 16]);
    let wrapped = sender.encrypt(&frame).unwrap();

    let mut group = c.benchmark_group("encrypt_image_frame_921624");
    group.throughput(Throughput::Bytes(frame.payload.len() as u64));

    group.bench_function("memcpy", |b| b.iter(|| black_box(frame.payload.to_vec())));
    group.bench_function("encrypt", |b| b.iter(|| black_box(sender.encrypt(black_box(&frame)).unwrap())));
    group.bench_function("decrypt", |b| b.iter(|| black_box(receiver.decrypt(black_box(&wrapped)).unwrap())));
    group.bench_function("encrypt_decrypt", |b| {
        b.iter(|| {
            let w = sender.encrypt(black_box(&frame)).unwrap();
            black_box(receiver.decrypt(&w).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
