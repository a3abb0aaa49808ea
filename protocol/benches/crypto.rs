//! Criterion benchmark of packet encryption (ACIP-SPEC.md 4.5) for one 640x480 RGB24 IMAGE_FRAME
//! (921,624-byte payload, 3.7), every XSalsa20-Poly1305 backend side by side in one run, each group beside
//! a memcpy of the same bytes so the ratio to the machine's limit shows. Throughput is in decimal GB/s of
//! payload. The key derivation does not matter here (one session, both dialects encrypt the same way;
//! only the nonce counter's byte order differs).
//!
//! * `raw_921624`: each library called directly, buffer to buffer into preallocated memory (in place for
//!   RustCrypto, whose API has no other form; its `open` includes restoring the ciphertext, one memcpy):
//!   the libraries' own speed, which the seam below should stay close to.
//! * `secretbox_921624`: the backend seam alone ([`SecretBox`]): `seal/<backend>` encrypts the payload
//!   in place, `open/<backend>` verifies and decrypts it into a new buffer.
//! * `session_921624`: [`Session::encrypt`] / [`Session::decrypt`] of the whole packet on each backend
//!   (adds the inner header, its CRC-32C, the output buffer and, on decrypt, the inner checks).
//! * `encrypt_image_frame_921624`: the default backend, encrypt + decrypt round trip.
//!
//! Backends present are those compiled in; libsodium needs its feature:
//!
//! `cargo bench -p acip --features libsodium --bench crypto -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use acip::codec::{Dialect, Packet, PacketType};
use acip::crypto::{Backend, SecretBox, Session};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
const KEY: [u8; 32] = [0x42; 32];
const NONCE: [u8; 24] = [7; 24];

fn image_frame() -> Packet {
    let pixels = (WIDTH * HEIGHT * 3) as usize;
    let mut payload = Vec::with_capacity(24 + pixels);
    for v in [WIDTH, HEIGHT, 1, 0, 0, 0] {
        payload.extend_from_slice(&v.to_be_bytes());
    }
    payload.extend((0..pixels).map(|i| (i * 7 % 251) as u8));
    Packet::new(PacketType::IMAGE_FRAME, payload)
}

fn raw(c: &mut Criterion) {
    let frame = image_frame();
    let plain = frame.payload.to_vec();
    let n = plain.len();
    let mut group = c.benchmark_group("raw_921624");
    group.throughput(Throughput::BytesDecimal(n as u64));
    group.bench_function("memcpy", |b| {
        let mut dst = vec![0u8; n];
        b.iter(|| dst.copy_from_slice(black_box(&plain)))
    });
    #[cfg(feature = "dryoc")]
    {
        use dryoc::classic::crypto_secretbox::{crypto_secretbox_detached, crypto_secretbox_open_detached};
        let mut ct = vec![0u8; n];
        let mut mac = [0u8; 16];
        group.bench_function("seal/dryoc", |b| {
            b.iter(|| crypto_secretbox_detached(&mut ct, &mut mac, black_box(&plain), &NONCE, &KEY).unwrap())
        });
        let mut out = vec![0u8; n];
        group.bench_function("open/dryoc", |b| {
            b.iter(|| crypto_secretbox_open_detached(&mut out, black_box(&ct), &mac, &NONCE, &KEY).unwrap())
        });
    }
    #[cfg(feature = "libsodium")]
    {
        let mut sealed = vec![0u8; 16 + n];
        group.bench_function("seal/libsodium", |b| {
            b.iter(|| sodoken::secretbox::xsalsa_easy(&mut sealed, &NONCE, black_box(&plain), &KEY).unwrap())
        });
        let mut out = vec![0u8; n];
        group.bench_function("open/libsodium", |b| {
            b.iter(|| {
                sodoken::secretbox::xsalsa_open_easy(&mut out, black_box(&sealed), &NONCE, &KEY).unwrap()
            })
        });
    }
    {
        use crypto_secretbox::aead::AeadInPlace;
        use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
        let cipher = XSalsa20Poly1305::new(&KEY.into());
        let mut buf = plain.clone();
        group.bench_function("seal/rustcrypto", |b| {
            b.iter(|| cipher.encrypt_in_place_detached(&NONCE.into(), b"", black_box(&mut buf)).unwrap())
        });
        let mut ct = plain.clone();
        let tag = cipher.encrypt_in_place_detached(&NONCE.into(), b"", &mut ct).unwrap();
        group.bench_function("open/rustcrypto", |b| {
            b.iter(|| {
                buf.copy_from_slice(&ct);
                cipher.decrypt_in_place_detached(&NONCE.into(), b"", black_box(&mut buf), &tag).unwrap()
            })
        });
    }
    group.finish();
}

fn secretbox(c: &mut Criterion) {
    let frame = image_frame();
    assert_eq!(frame.payload.len(), 921_624);
    let mut group = c.benchmark_group("secretbox_921624");
    group.throughput(Throughput::BytesDecimal(frame.payload.len() as u64));
    group.bench_function("memcpy", |b| b.iter(|| black_box(frame.payload.to_vec())));
    for &backend in Backend::ALL {
        let sb = SecretBox::with_backend(backend, &KEY);
        let mut buf = frame.payload.to_vec();
        group.bench_function(BenchmarkId::new("seal", backend), |b| {
            b.iter(|| black_box(sb.seal_in_place_detached(&NONCE, black_box(&mut buf))))
        });
        let mut ct = frame.payload.to_vec();
        let mac = sb.seal_in_place_detached(&NONCE, &mut ct);
        group.bench_function(BenchmarkId::new("open", backend), |b| {
            b.iter(|| black_box(sb.open_detached(&NONCE, &mac, black_box(&ct)).unwrap()))
        });
    }
    group.finish();
}

fn session(c: &mut Criterion) {
    let frame = image_frame();
    let mut group = c.benchmark_group("session_921624");
    group.throughput(Throughput::BytesDecimal(frame.payload.len() as u64));
    group.bench_function("memcpy", |b| b.iter(|| black_box(frame.payload.to_vec())));
    // Both directions also checksum the payload once (the inner header's CRC-32C): its share.
    group.bench_function("crc32c", |b| b.iter(|| black_box(acip::crc::crc32c(black_box(&frame.payload)))));
    for &backend in Backend::ALL {
        let mut sender = Session::with_backend(backend, Dialect::Head, KEY, [1; 16]);
        let receiver = Session::with_backend(backend, Dialect::Head, KEY, [2; 16]);
        let wrapped = sender.encrypt(&frame).unwrap();
        group.bench_function(BenchmarkId::new("encrypt", backend), |b| {
            b.iter(|| black_box(sender.encrypt(black_box(&frame)).unwrap()))
        });
        group.bench_function(BenchmarkId::new("decrypt", backend), |b| {
            b.iter(|| black_box(receiver.decrypt(black_box(&wrapped)).unwrap()))
        });
    }
    group.finish();
}

fn round_trip(c: &mut Criterion) {
    let frame = image_frame();
    let mut sender = Session::new(Dialect::Head, KEY, [1; 16]);
    let receiver = Session::new(Dialect::Head, KEY, [2; 16]);
    let mut group = c.benchmark_group("encrypt_image_frame_921624");
    group.throughput(Throughput::BytesDecimal(frame.payload.len() as u64));
    group.bench_function("encrypt_decrypt", |b| {
        b.iter(|| {
            let w = sender.encrypt(black_box(&frame)).unwrap();
            black_box(receiver.decrypt(&w).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, raw, secretbox, session, round_trip);
criterion_main!(benches);
