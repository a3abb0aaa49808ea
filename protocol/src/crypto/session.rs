//! Encrypted framing (ACIP-SPEC.md 4.5): after the handshake every non-handshake packet travels as
//!
//! ```text
//! outer:  [magic][type=1200][len=L][crc=CRC32C(ct)][0]  ct[L]
//! ct:     nonce[24] ‖ MAC[16] ‖ XSalsa20(inner)            (L = |inner| + 40)
//! inner:  [magic][orig type][len=N][crc=CRC32C(payload)][0]  payload[N]
//! ```
//!
//! One key serves both directions (4.1). The nonce is this sender's 16-byte random session id followed
//! by an 8-byte counter starting at 1: little-endian in `feb`, big-endian in `head` (section 10 row 2).
//! Receivers take the nonce from the packet and, like the real ones, check no replay or order.
//!
//! The cipher is reached only through [`SecretBox`], the backend seam (see [`super::secretbox`]).

use super::secretbox::{Backend, SecretBox};
use super::CryptoError;
use crate::codec::{Dialect, Packet, PacketType, HEADER_LEN};
use crate::crc::crc32c;

/// Nonce bytes at the start of the ciphertext.
pub const NONCE_LEN: usize = super::secretbox::NONCE_LEN;
/// Poly1305 tag bytes after the nonce.
pub const MAC_LEN: usize = super::secretbox::MAC_LEN;
/// Bytes an encrypted packet's payload adds to its inner packet.
pub const OVERHEAD: usize = NONCE_LEN + MAC_LEN;
/// CRYPTO_MAX_PLAINTEXT_SIZE: inner header + payload (ACIP-SPEC.md 1.3).
pub const MAX_PLAINTEXT: usize = 1024 * 1024;

/// What [`Session::handle_rekey`] did with a rekey packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RekeyOutcome {
    /// Ignored, as ACIP-SPEC.md 4.8 advises: the real rekey always fails (REKEY_COMPLETE is sent as a
    /// plaintext `00`) and both sides keep the old key, so the safest answer is none. The key is unchanged.
    Ignored,
}

/// A traffic key and this side's nonce state. Encrypts outgoing packets (`&mut`: the counter advances)
/// and decrypts incoming ones (`&self`: no replay state, as in the real code).
pub struct Session {
    dialect: Dialect,
    cipher: SecretBox,
    session_id: [u8; 16],
    /// The counter of the next packet sent (starts at 1).
    next_counter: u64,
    max_plaintext: usize,
}

impl std::fmt::Debug for Session {
    // No key material in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("dialect", &self.dialect)
            .field("backend", &self.cipher.backend())
            .field("session_id", &self.session_id)
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session over `key` whose outgoing nonces start with `session_id`, on [`Backend::DEFAULT`].
    pub fn new(dialect: Dialect, key: [u8; 32], session_id: [u8; 16]) -> Self {
        Session::with_backend(Backend::DEFAULT, dialect, key, session_id)
    }

    /// As [`Session::new`] on a chosen cipher backend (benches and cross-checks: every backend puts the
    /// same bytes on the wire).
    pub fn with_backend(backend: Backend, dialect: Dialect, key: [u8; 32], session_id: [u8; 16]) -> Self {
        Session {
            dialect,
            cipher: SecretBox::with_backend(backend, &key),
            session_id,
            next_counter: 1,
            max_plaintext: MAX_PLAINTEXT,
        }
    }

    /// The dialect (decides the counter byte order).
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The cipher backend sealing and opening this session's packets.
    pub fn backend(&self) -> Backend {
        self.cipher.backend()
    }

    /// The counter the next [`Session::encrypt`] will use.
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    /// Whether a packet of this type is wrapped once a key exists: everything except the handshake
    /// class (1000, 1100-1109, 1201-1203) and ENCRYPTED itself (section 2, column Enc).
    pub fn wants_encryption(packet_type: PacketType) -> bool {
        !packet_type.is_handshake() && packet_type != PacketType::ENCRYPTED
    }

    /// The nonce for `counter` in this dialect.
    pub fn nonce(&self, counter: u64) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[..16].copy_from_slice(&self.session_id);
        n[16..].copy_from_slice(&match self.dialect {
            Dialect::Feb => counter.to_le_bytes(),
            Dialect::Head => counter.to_be_bytes(),
        });
        n
    }

    /// The checks every seal makes before any work (handshake-class types stay plain; an inner packet of
    /// `inner_len` bytes within the limit), then the nonce of the next counter, which it takes.
    fn take_nonce(
        &mut self,
        packet_type: PacketType,
        inner_len: usize,
    ) -> Result<[u8; NONCE_LEN], CryptoError> {
        if !Self::wants_encryption(packet_type) {
            return Err(CryptoError::MustStayPlain(packet_type));
        }
        if inner_len > self.max_plaintext {
            return Err(CryptoError::PlaintextTooLarge { size: inner_len, limit: self.max_plaintext });
        }
        let counter = self.next_counter;
        self.next_counter = counter.checked_add(1).ok_or(CryptoError::CounterExhausted)?;
        Ok(self.nonce(counter))
    }

    /// Wraps `packet` in an ENCRYPTED (1200) packet. Refuses, before doing any work, an inner packet
    /// (22 + payload) over 1 MiB, and handshake-class packets, which always stay plain.
    pub fn encrypt(&mut self, packet: &Packet) -> Result<Packet, CryptoError> {
        let inner_len = HEADER_LEN + packet.payload.len();
        let nonce = self.take_nonce(packet.packet_type, inner_len)?;
        let mut out = Vec::with_capacity(OVERHEAD + inner_len);
        out.extend_from_slice(&nonce);
        // MAC ‖ ciphertext of inner header ‖ payload, the payload copied once (into `out`).
        self.cipher.seal_into(&nonce, &[&packet.header().to_bytes(), &packet.payload], &mut out);
        Ok(Packet::new(PacketType::ENCRYPTED, out))
    }

    /// Where the inner packet starts in the buffer [`Session::encrypt_in_place`] seals: after the outer
    /// header, the nonce and the MAC.
    pub const SEAL_PREFIX: usize = HEADER_LEN + OVERHEAD;

    /// Seals a packet in place into the wire bytes of its ENCRYPTED packet, with no copy: `wire` is
    /// [`Session::SEAL_PREFIX`] bytes of room (any content) followed by the inner packet, header and
    /// payload, already encoded. Fills in the outer header, nonce and MAC and encrypts the inner packet
    /// where it lies; the result is byte for byte `self.encrypt(&inner)?.encode()` (see the proptest),
    /// and the same checks apply, before any work.
    pub fn encrypt_in_place(&mut self, wire: &mut [u8]) -> Result<(), CryptoError> {
        let inner = wire
            .get(Self::SEAL_PREFIX..)
            .filter(|i| i.len() >= HEADER_LEN)
            .ok_or(CryptoError::InnerTooShort { len: wire.len().saturating_sub(Self::SEAL_PREFIX) })?;
        let packet_type = PacketType::from_u16(u16::from_be_bytes([inner[8], inner[9]]));
        let nonce = self.take_nonce(packet_type, inner.len())?;
        let (head, body) = wire.split_at_mut(Self::SEAL_PREFIX);
        let mac = self.cipher.seal_in_place_detached(&nonce, body);
        head[HEADER_LEN..HEADER_LEN + NONCE_LEN].copy_from_slice(&nonce);
        head[HEADER_LEN + NONCE_LEN..].copy_from_slice(&mac);
        let ct = &wire[HEADER_LEN..];
        let outer = crate::codec::Header {
            packet_type: PacketType::ENCRYPTED,
            length: ct.len() as u32,
            crc32: crc32c(ct),
            client_id: 0,
        };
        wire[..HEADER_LEN].copy_from_slice(&outer.to_bytes());
        Ok(())
    }

    /// Unwraps an ENCRYPTED packet (whose outer CRC the codec already checked). Checks, each with its own
    /// error: MAC, plaintext at least a header, inner length == plaintext - 22, inner CRC. The inner magic
    /// is not checked, as in the real receiver (4.5).
    pub fn decrypt(&self, packet: &Packet) -> Result<Packet, CryptoError> {
        open(&self.cipher, packet).map(|(p, _)| p)
    }

    /// [`Session::decrypt`] with the inner header's CRC-32C, verified against the inner payload: a
    /// receiver can derive other checksums of the payload from it without another pass.
    pub fn decrypt_with_crc(&self, packet: &Packet) -> Result<(Packet, u32), CryptoError> {
        open(&self.cipher, packet)
    }

    /// The receive half of this key, for a task that only decrypts while another one owns this session
    /// and encrypts (the counter stays with the session: there is one sender).
    pub fn opener(&self) -> Opener {
        Opener { cipher: self.cipher.clone() }
    }

    /// Handles a handshake-class packet that arrives after the handshake. REKEY_REQUEST, _RESPONSE and
    /// _COMPLETE are ignored and the old key is kept (4.8); any other handshake type is an error.
    pub fn handle_rekey(&mut self, packet: &Packet) -> Result<RekeyOutcome, CryptoError> {
        match packet.packet_type {
            PacketType::CRYPTO_REKEY_REQUEST
            | PacketType::CRYPTO_REKEY_RESPONSE
            | PacketType::CRYPTO_REKEY_COMPLETE => Ok(RekeyOutcome::Ignored),
            other => Err(CryptoError::UnexpectedHandshakePacket(other)),
        }
    }
}

/// The decrypting half of a [`Session`] (see [`Session::opener`]): no counter, nothing to advance.
#[derive(Clone)]
pub struct Opener {
    cipher: SecretBox,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener").finish_non_exhaustive()
    }
}

impl Opener {
    /// As [`Session::decrypt`].
    pub fn decrypt(&self, packet: &Packet) -> Result<Packet, CryptoError> {
        open(&self.cipher, packet).map(|(p, _)| p)
    }

    /// As [`Session::decrypt_with_crc`].
    pub fn decrypt_with_crc(&self, packet: &Packet) -> Result<(Packet, u32), CryptoError> {
        open(&self.cipher, packet)
    }
}

fn open(cipher: &SecretBox, packet: &Packet) -> Result<(Packet, u32), CryptoError> {
    if packet.packet_type != PacketType::ENCRYPTED {
        return Err(CryptoError::NotEncrypted(packet.packet_type));
    }
    let ct = &packet.payload;
    if ct.len() < OVERHEAD {
        return Err(CryptoError::CiphertextTooShort { len: ct.len() });
    }
    let (nonce, sealed) = ct.split_at(NONCE_LEN);
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("NONCE_LEN bytes");
    let plain = cipher.open(nonce, sealed).map_err(|_| CryptoError::BadMac)?;
    if plain.len() < HEADER_LEN {
        return Err(CryptoError::InnerTooShort { len: plain.len() });
    }
    let be32 = |o: usize| u32::from_be_bytes([plain[o], plain[o + 1], plain[o + 2], plain[o + 3]]);
    let packet_type = PacketType::from_u16(u16::from_be_bytes([plain[8], plain[9]]));
    let declared = be32(10);
    let expected_crc = be32(14);
    let actual_len = plain.len() - HEADER_LEN;
    if declared as usize != actual_len {
        return Err(CryptoError::InnerLengthMismatch { declared, actual: actual_len });
    }
    let payload = &plain[HEADER_LEN..];
    // An empty payload carries CRC 0 (1.1), which is also what crc32c of nothing would have to match.
    let actual_crc = if payload.is_empty() { 0 } else { crc32c(payload) };
    if actual_crc != expected_crc {
        return Err(CryptoError::InnerCrcMismatch {
            packet_type,
            expected: expected_crc,
            actual: actual_crc,
        });
    }
    let mut bytes = bytes::Bytes::from(plain);
    let payload = bytes.split_off(HEADER_LEN);
    Ok((Packet { packet_type, payload }, expected_crc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sealed_in_place(s: &mut Session, inner: &Packet) -> Result<Vec<u8>, CryptoError> {
        let mut wire = vec![0xAA; Session::SEAL_PREFIX];
        inner.encode_into(&mut wire);
        s.encrypt_in_place(&mut wire).map(|()| wire)
    }

    #[test]
    fn in_place_refuses_what_encrypt_refuses() {
        let mut s = Session::new(Dialect::Head, [7; 32], [1; 16]);
        let hs = Packet::new(PacketType::CRYPTO_KEY_EXCHANGE_INIT, vec![0; 32]);
        assert_eq!(
            sealed_in_place(&mut s, &hs).unwrap_err(),
            CryptoError::MustStayPlain(PacketType::CRYPTO_KEY_EXCHANGE_INIT)
        );
        let big = Packet::new(PacketType::IMAGE_FRAME, vec![0; MAX_PLAINTEXT]);
        assert!(matches!(sealed_in_place(&mut s, &big), Err(CryptoError::PlaintextTooLarge { .. })));
        assert!(matches!(
            s.encrypt_in_place(&mut [0; Session::SEAL_PREFIX + 3]),
            Err(CryptoError::InnerTooShort { len: 3 })
        ));
        // Nothing was refused after the counter moved.
        assert_eq!(s.next_counter(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Sealing in place puts on the wire exactly what `encrypt` + `encode` does, and it opens.
        #[test]
        fn proptest_in_place_matches_encrypt(
            head: bool, key: [u8; 32], id: [u8; 16], payloads in prop::collection::vec(
                prop::collection::vec(any::<u8>(), 0..2000), 1..4),
        ) {
            let dialect = if head { Dialect::Head } else { Dialect::Feb };
            let (mut a, mut b) = (Session::new(dialect, key, id), Session::new(dialect, key, id));
            for p in payloads {
                let inner = Packet::new(PacketType::IMAGE_FRAME, p);
                let want = a.encrypt(&inner).unwrap().encode();
                let got = sealed_in_place(&mut b, &inner).unwrap();
                prop_assert_eq!(&got, &want);
                let (outer, _) = Packet::decode(&bytes::Bytes::from(got), &crate::Limits::default()).unwrap();
                prop_assert_eq!(b.decrypt(&outer).unwrap(), inner.clone());
                prop_assert_eq!(b.opener().decrypt_with_crc(&outer).unwrap(), (inner.clone(), inner.header().crc32));
            }
        }
    }
}
