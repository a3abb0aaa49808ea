//! Known-answer tests pinning libsodium compatibility (ACIP-SPEC.md 4.1, 4.5). The answers in
//! `fixtures/libsodium_kat.json` were computed by `fixtures/gen_kat.py` with libsodium (through PyNaCl)
//! and CPython's hmac, independently of the Rust crates used here.

use ed25519_dalek::{Signer, SigningKey};
use serde_json::Value;
use x25519_dalek::{PublicKey, StaticSecret};

use super::primitives::{box_beforenm, hmac_sha256, password_key, x25519, PASSWORD_SALT};
use super::secretbox::{Backend, SecretBox};
use super::session::Session;
use crate::codec::{Dialect, Limits, Packet, PacketType};

const KAT: &str = include_str!("fixtures/libsodium_kat.json");

fn kat() -> Value {
    serde_json::from_str(KAT).expect("fixture is JSON")
}

fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
}

fn hex32(v: &Value) -> [u8; 32] {
    hex(v).try_into().expect("32 bytes")
}

#[test]
fn kat_x25519_scalarmult_and_box_beforenm() {
    let k = &kat()["x25519"];
    let sk_a = StaticSecret::from(hex32(&k["sk_a"]));
    let sk_b = StaticSecret::from(hex32(&k["sk_b"]));
    assert_eq!(PublicKey::from(&sk_a).to_bytes(), hex32(&k["pk_a"]));
    assert_eq!(PublicKey::from(&sk_b).to_bytes(), hex32(&k["pk_b"]));
    let pk_b = hex32(&k["pk_b"]);
    assert_eq!(x25519(&sk_a, &pk_b).unwrap(), hex32(&k["crypto_scalarmult"]));
    assert_eq!(box_beforenm(&sk_a, &pk_b).unwrap(), hex32(&k["crypto_box_beforenm"]));
    // And the dialects pick the right one (section 10 row 1).
    let feb = super::primitives::session_key(Dialect::Feb, &sk_a, &pk_b).unwrap();
    let head = super::primitives::session_key(Dialect::Head, &sk_a, &pk_b).unwrap();
    assert_eq!(feb, hex32(&k["crypto_box_beforenm"]));
    assert_eq!(head, hex32(&k["crypto_scalarmult"]));
}

#[test]
fn kat_low_order_peer_key_is_refused_like_libsodium() {
    let sk = StaticSecret::from([7u8; 32]);
    assert_eq!(x25519(&sk, &[0u8; 32]), None);
    assert_eq!(
        super::primitives::session_key(Dialect::Feb, &sk, &[0u8; 32]),
        Err(super::HandshakeError::LowOrderKey)
    );
}

#[test]
fn kat_secretbox_easy() {
    use crypto_secretbox::aead::Aead;
    use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
    let k = &kat()["secretbox"];
    let cipher = XSalsa20Poly1305::new(hex32(&k["key"]).as_slice().into());
    let nonce = hex(&k["nonce"]);
    let ct = cipher.encrypt(nonce.as_slice().into(), hex(&k["message"]).as_slice()).unwrap();
    // The crate appends the tag; libsodium's easy layout puts it first.
    let expected = hex(&k["mac_and_ciphertext"]);
    let (tag, body) = ct.split_at(ct.len() - 16);
    assert_eq!(body_with_tag_first(tag, body), expected);
}

fn body_with_tag_first(tag: &[u8], body: &[u8]) -> Vec<u8> {
    [tag, body].concat()
}

#[test]
fn kat_secretbox_easy_on_every_backend() {
    let k = &kat()["secretbox"];
    let expected = hex(&k["mac_and_ciphertext"]);
    let nonce: [u8; 24] = hex(&k["nonce"]).try_into().unwrap();
    let message = hex(&k["message"]);
    for &backend in Backend::ALL {
        let sb = SecretBox::with_backend(backend, &hex32(&k["key"]));
        let mut sealed = Vec::new();
        sb.seal_into(&nonce, &[&message], &mut sealed);
        assert_eq!(sealed, expected, "{backend}");
        assert_eq!(sb.open(&nonce, &expected).unwrap(), message, "{backend}");
    }
}

#[test]
fn kat_argon2id_with_project_salt() {
    let k = &kat()["argon2id"];
    assert_eq!(hex(&k["salt32"]), PASSWORD_SALT);
    assert_eq!(k["opslimit"], super::primitives::ARGON2_OPSLIMIT);
    assert_eq!(k["memlimit"], u64::from(super::primitives::ARGON2_MEMLIMIT_KIB) * 1024);
    assert_eq!(password_key(k["password"].as_str().unwrap()), hex32(&k["key"]));
}

#[test]
fn kat_hmac_sha256() {
    let k = &kat()["hmac_sha256"];
    assert_eq!(hmac_sha256(&hex32(&k["key"]), &hex(&k["a"]), &hex(&k["b"])), hex32(&k["mac"]));
    assert!(super::primitives::hmac_sha256_verify(
        &hex32(&k["key"]),
        &hex(&k["a"]),
        &hex(&k["b"]),
        &hex32(&k["mac"])
    ));
}

#[test]
fn kat_ed25519_detached_signature() {
    let k = &kat()["ed25519"];
    let sk = SigningKey::from_bytes(&hex32(&k["seed"]));
    assert_eq!(sk.verifying_key().to_bytes(), hex32(&k["public"]));
    assert_eq!(sk.sign(&hex(&k["message"])).to_bytes().to_vec(), hex(&k["signature"]));
}

#[test]
fn kat_whole_encrypted_packet_in_both_dialects() {
    let k = &kat()["encrypted_packet"];
    let inner = bytes::Bytes::from(hex(&k["inner"]));
    let inner = Packet::decode_exact(inner, &Limits::default()).unwrap();
    assert_eq!(inner.packet_type, PacketType::STREAM_START);
    let session_id: [u8; 16] = hex(&k["session_id"]).try_into().unwrap();
    for (dialect, &backend) in
        [Dialect::Feb, Dialect::Head].into_iter().flat_map(|d| Backend::ALL.iter().map(move |b| (d, b)))
    {
        let mut s = Session::with_backend(backend, dialect, hex32(&k["key"]), session_id);
        let name = dialect.to_string();
        assert_eq!(s.nonce(1).to_vec(), hex(&k[&name]["nonce"]));
        let wire = s.encrypt(&inner).unwrap().encode();
        assert_eq!(wire, hex(&k[&name]["packet"]), "{dialect} on {backend}");
        let outer = Packet::decode_exact(wire.into(), &Limits::default()).unwrap();
        assert_eq!(s.decrypt(&outer).unwrap(), inner, "{dialect} on {backend}");
    }
}
