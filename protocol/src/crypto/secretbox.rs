//! The one seam between ACIP packet encryption and an XSalsa20-Poly1305 implementation (NaCl
//! `crypto_secretbox`, ACIP-SPEC.md 4.5). [`Session`](super::Session) and [`Opener`](super::Opener) seal
//! and open through [`SecretBox`] only; which implementation does the work is a [`Backend`].
//!
//! | backend | crate | built when |
//! | --- | --- | --- |
//! | `Backend::Dryoc` | `dryoc` (pure Rust; AVX2 / AVX-512 kernels picked at run time, portable fallback) | feature `dryoc` (default) |
//! | `Backend::Libsodium` | `sodoken` (safe wrapper over libsodium, built from its bundled source) | feature `libsodium` |
//! | `Backend::RustCrypto` | `crypto_secretbox` (portable Salsa20) | always |
//!
//! [`Backend::DEFAULT`] is the first of these that is built: the fastest one measured by
//! `benches/crypto.rs`. All of them produce the same bytes for the same key, nonce and plaintext (libsodium's
//! `MAC ‖ ciphertext` layout), which the tests below check against each other and the known answers of
//! `kat_tests.rs` check against libsodium itself, so the choice never shows on the wire.

/// Key bytes.
pub const KEY_LEN: usize = 32;
/// Nonce bytes.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag bytes, in front of the ciphertext.
pub const MAC_LEN: usize = 16;

/// An XSalsa20-Poly1305 implementation. Variants exist only for backends compiled in (cargo features).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `dryoc`: pure-Rust kernels with run-time CPU feature detection (AVX-512, AVX2, portable).
    #[cfg(feature = "dryoc")]
    Dryoc,
    /// libsodium through the safe `sodoken` wrapper.
    #[cfg(feature = "libsodium")]
    Libsodium,
    /// RustCrypto `crypto_secretbox` (portable Salsa20 and Poly1305).
    RustCrypto,
}

impl Backend {
    /// The backend [`SecretBox::new`] uses: the fastest one built (see the module table).
    #[cfg(feature = "dryoc")]
    pub const DEFAULT: Backend = Backend::Dryoc;
    /// The backend [`SecretBox::new`] uses: the fastest one built (see the module table).
    #[cfg(all(feature = "libsodium", not(feature = "dryoc")))]
    pub const DEFAULT: Backend = Backend::Libsodium;
    /// The backend [`SecretBox::new`] uses: the fastest one built (see the module table).
    #[cfg(not(any(feature = "dryoc", feature = "libsodium")))]
    pub const DEFAULT: Backend = Backend::RustCrypto;

    /// Every backend built into this binary, the default first.
    pub const ALL: &'static [Backend] = &[
        #[cfg(feature = "dryoc")]
        Backend::Dryoc,
        #[cfg(feature = "libsodium")]
        Backend::Libsodium,
        Backend::RustCrypto,
    ];

    /// Short lower-case name (`dryoc`, `libsodium`, `rustcrypto`), as in bench and report labels.
    pub const fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "dryoc")]
            Backend::Dryoc => "dryoc",
            #[cfg(feature = "libsodium")]
            Backend::Libsodium => "libsodium",
            Backend::RustCrypto => "rustcrypto",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    /// A name from [`Backend::name`], among the backends built.
    fn from_str(s: &str) -> Result<Backend, String> {
        Backend::ALL.iter().copied().find(|b| b.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
            format!("{s:?}: expected one of {}", names.join(", "))
        })
    }
}

/// A key bound to a backend. Seals `plaintext` into `MAC ‖ ciphertext` and opens it back.
#[derive(Clone)]
pub struct SecretBox {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    #[cfg(feature = "dryoc")]
    Dryoc([u8; KEY_LEN]),
    #[cfg(feature = "libsodium")]
    Libsodium([u8; KEY_LEN]),
    RustCrypto(crypto_secretbox::XSalsa20Poly1305),
}

impl std::fmt::Debug for SecretBox {
    // No key material in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox").field("backend", &self.backend()).finish_non_exhaustive()
    }
}

/// The MAC did not verify (another key, or the bytes were changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadMac;

impl SecretBox {
    /// `key` on [`Backend::DEFAULT`].
    pub fn new(key: &[u8; KEY_LEN]) -> SecretBox {
        SecretBox::with_backend(Backend::DEFAULT, key)
    }

    /// `key` on a chosen backend (benches and cross-checks; production code uses [`SecretBox::new`]).
    pub fn with_backend(backend: Backend, key: &[u8; KEY_LEN]) -> SecretBox {
        let inner = match backend {
            #[cfg(feature = "dryoc")]
            Backend::Dryoc => Inner::Dryoc(*key),
            #[cfg(feature = "libsodium")]
            Backend::Libsodium => Inner::Libsodium(*key),
            Backend::RustCrypto => {
                use crypto_secretbox::KeyInit;
                Inner::RustCrypto(crypto_secretbox::XSalsa20Poly1305::new(key.into()))
            }
        };
        SecretBox { inner }
    }

    /// The backend doing the work.
    pub fn backend(&self) -> Backend {
        match self.inner {
            #[cfg(feature = "dryoc")]
            Inner::Dryoc(_) => Backend::Dryoc,
            #[cfg(feature = "libsodium")]
            Inner::Libsodium(_) => Backend::Libsodium,
            Inner::RustCrypto(_) => Backend::RustCrypto,
        }
    }

    /// Appends `MAC ‖ XSalsa20(plaintext)` to `out`, where the plaintext is `parts` concatenated (so a
    /// header and a payload need not be joined first). The plaintext is copied once, into `out`, and
    /// encrypted there, except on libsodium, whose safe API only encrypts buffer to buffer.
    pub fn seal_into(&self, nonce: &[u8; NONCE_LEN], parts: &[&[u8]], out: &mut Vec<u8>) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        out.reserve(MAC_LEN + len);
        let start = out.len();
        match &self.inner {
            #[cfg(feature = "libsodium")]
            Inner::Libsodium(key) => {
                let plain = parts.concat();
                out.resize(start + MAC_LEN + len, 0);
                sodoken::secretbox::xsalsa_easy(&mut out[start..], nonce, &plain, key)
                    .expect("output sized to MAC + plaintext");
            }
            _ => {
                out.extend_from_slice(&[0u8; MAC_LEN]);
                for p in parts {
                    out.extend_from_slice(p);
                }
                let (mac, body) = out[start..].split_at_mut(MAC_LEN);
                let mac: &mut [u8; MAC_LEN] = mac.try_into().expect("MAC_LEN bytes");
                *mac = self.seal_in_place_detached(nonce, body);
            }
        }
    }

    /// Encrypts `buf` in place and returns its MAC. On libsodium this goes through one temporary copy.
    pub fn seal_in_place_detached(&self, nonce: &[u8; NONCE_LEN], buf: &mut [u8]) -> [u8; MAC_LEN] {
        match &self.inner {
            #[cfg(feature = "dryoc")]
            Inner::Dryoc(key) => {
                let mut mac = [0u8; MAC_LEN];
                dryoc::classic::crypto_box::crypto_box_detached_afternm_inplace(buf, &mut mac, nonce, key);
                mac
            }
            #[cfg(feature = "libsodium")]
            Inner::Libsodium(key) => {
                let mut sealed = vec![0u8; MAC_LEN + buf.len()];
                sodoken::secretbox::xsalsa_easy(&mut sealed, nonce, buf, key)
                    .expect("output sized to MAC + plaintext");
                buf.copy_from_slice(&sealed[MAC_LEN..]);
                sealed[..MAC_LEN].try_into().expect("MAC_LEN bytes")
            }
            Inner::RustCrypto(cipher) => {
                use crypto_secretbox::aead::AeadInPlace;
                let tag = cipher
                    .encrypt_in_place_detached(nonce.into(), b"", buf)
                    .expect("XSalsa20 takes any message below 2^70 bytes");
                tag.into()
            }
        }
    }

    /// Checks `mac` over `ciphertext` and, only if it verifies, returns the plaintext in a new buffer.
    pub fn open_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        mac: &[u8; MAC_LEN],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, BadMac> {
        match &self.inner {
            #[cfg(feature = "dryoc")]
            Inner::Dryoc(key) => {
                // Buffer to buffer into zeroed memory: faster than copying the ciphertext and opening
                // it in place (the MAC pass then reads the input while it is still being fetched once).
                let mut plain = vec![0u8; ciphertext.len()];
                dryoc::classic::crypto_secretbox::crypto_secretbox_open_detached(
                    &mut plain, ciphertext, mac, nonce, key,
                )
                .map_err(|_| BadMac)?;
                Ok(plain)
            }
            #[cfg(feature = "libsodium")]
            Inner::Libsodium(key) => {
                let mut sealed = Vec::with_capacity(MAC_LEN + ciphertext.len());
                sealed.extend_from_slice(mac);
                sealed.extend_from_slice(ciphertext);
                let mut plain = vec![0u8; ciphertext.len()];
                sodoken::secretbox::xsalsa_open_easy(&mut plain, &sealed, nonce, key).map_err(|_| BadMac)?;
                Ok(plain)
            }
            Inner::RustCrypto(cipher) => {
                use crypto_secretbox::aead::AeadInPlace;
                let mut plain = ciphertext.to_vec();
                cipher
                    .decrypt_in_place_detached(nonce.into(), b"", &mut plain, mac.into())
                    .map_err(|_| BadMac)?;
                Ok(plain)
            }
        }
    }

    /// Opens `MAC ‖ ciphertext` (libsodium's `crypto_secretbox_open_easy` layout).
    pub fn open(&self, nonce: &[u8; NONCE_LEN], sealed: &[u8]) -> Result<Vec<u8>, BadMac> {
        if sealed.len() < MAC_LEN {
            return Err(BadMac);
        }
        let (mac, ciphertext) = sealed.split_at(MAC_LEN);
        let mac: &[u8; MAC_LEN] = mac.try_into().expect("MAC_LEN bytes");
        #[cfg(feature = "libsodium")]
        if let Inner::Libsodium(key) = &self.inner {
            // The easy API takes the sealed layout as it is: no copy of the ciphertext.
            let mut plain = vec![0u8; ciphertext.len()];
            return sodoken::secretbox::xsalsa_open_easy(&mut plain, sealed, nonce, key)
                .map(|()| plain)
                .map_err(|_| BadMac);
        }
        self.open_detached(nonce, mac, ciphertext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Dialect, Packet, PacketType};
    use crate::crypto::Session;

    const KEY: [u8; KEY_LEN] = [0x5A; KEY_LEN];
    const NONCE: [u8; NONCE_LEN] = [0xC3; NONCE_LEN];

    fn message(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 253) as u8).collect()
    }

    // Around the 64-byte Salsa20 block, the 32 bytes of the first block that key Poly1305, the 16-byte
    // Poly1305 block, the vector kernels' lane sets (4, 8, 16 blocks), and a full IMAGE_FRAME.
    const LENGTHS: &[usize] =
        &[0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 256, 257, 511, 1023, 1025, 4099];

    #[test]
    fn default_backend_comes_first_and_names_round_trip() {
        assert_eq!(Backend::ALL[0], Backend::DEFAULT);
        assert_eq!(SecretBox::new(&KEY).backend(), Backend::DEFAULT);
        for &b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>(), Ok(b));
            assert_eq!(SecretBox::with_backend(b, &KEY).backend(), b);
        }
        assert!("chacha".parse::<Backend>().unwrap_err().contains("rustcrypto"));
    }

    #[test]
    fn every_backend_seals_the_same_bytes_and_opens_every_other() {
        for len in LENGTHS.iter().copied().chain([921_646, 1024 * 1024]) {
            let plain = message(len);
            let sealed: Vec<(Backend, Vec<u8>)> = Backend::ALL
                .iter()
                .map(|&b| {
                    let mut out = Vec::new();
                    SecretBox::with_backend(b, &KEY).seal_into(&NONCE, &[&plain], &mut out);
                    (b, out)
                })
                .collect();
            let (first, reference) = &sealed[0];
            assert_eq!(reference.len(), MAC_LEN + len);
            for (b, out) in &sealed {
                assert!(out == reference, "{b} and {first} disagree at length {len}");
            }
            for &opener in Backend::ALL {
                let sb = SecretBox::with_backend(opener, &KEY);
                assert!(sb.open(&NONCE, reference).unwrap() == plain, "{opener} opening, length {len}");
            }
        }
    }

    #[test]
    fn in_place_and_split_sealing_match_the_sealed_layout() {
        for &b in Backend::ALL {
            let sb = SecretBox::with_backend(b, &KEY);
            for &len in LENGTHS {
                let plain = message(len);
                let mut whole = Vec::new();
                sb.seal_into(&NONCE, &[&plain], &mut whole);
                // Split anywhere (a header and a payload), appended after bytes already in `out`.
                let cut = len / 3;
                let mut split = b"prefix".to_vec();
                sb.seal_into(&NONCE, &[&plain[..cut], &plain[cut..]], &mut split);
                assert_eq!(&split[..6], b"prefix");
                assert_eq!(split[6..], whole[..], "{b} length {len}");
                let mut buf = plain.clone();
                let mac = sb.seal_in_place_detached(&NONCE, &mut buf);
                assert_eq!(mac[..], whole[..MAC_LEN], "{b} length {len}");
                assert_eq!(buf[..], whole[MAC_LEN..], "{b} length {len}");
                assert_eq!(sb.open_detached(&NONCE, &mac, &buf).unwrap(), plain, "{b} length {len}");
            }
        }
    }

    #[test]
    fn every_backend_refuses_a_changed_byte_a_wrong_key_and_a_short_box() {
        let plain = message(300);
        let mut sealed = Vec::new();
        SecretBox::with_backend(Backend::RustCrypto, &KEY).seal_into(&NONCE, &[&plain], &mut sealed);
        for &b in Backend::ALL {
            let sb = SecretBox::with_backend(b, &KEY);
            for i in [0, 15, 16, 17, sealed.len() - 1] {
                let mut bad = sealed.clone();
                bad[i] ^= 0x01;
                assert_eq!(sb.open(&NONCE, &bad), Err(BadMac), "{b} byte {i}");
            }
            let mut other_nonce = NONCE;
            other_nonce[23] ^= 1;
            assert_eq!(sb.open(&other_nonce, &sealed), Err(BadMac), "{b}");
            assert_eq!(SecretBox::with_backend(b, &[1; KEY_LEN]).open(&NONCE, &sealed), Err(BadMac), "{b}");
            for short in [0, 1, MAC_LEN - 1] {
                assert_eq!(sb.open(&NONCE, &sealed[..short]), Err(BadMac), "{b} {short} bytes");
            }
            // A MAC alone is the valid box of the empty message, nothing less.
            let mut empty = Vec::new();
            sb.seal_into(&NONCE, &[], &mut empty);
            assert_eq!(sb.open(&NONCE, &empty), Ok(Vec::new()), "{b}");
        }
    }

    #[test]
    fn sessions_on_every_backend_put_the_same_packet_on_the_wire() {
        let frame = Packet::new(PacketType::IMAGE_FRAME, message(921_624));
        for dialect in [Dialect::Feb, Dialect::Head] {
            let wires: Vec<Packet> = Backend::ALL
                .iter()
                .map(|&b| {
                    let mut s = Session::with_backend(b, dialect, KEY, [9; 16]);
                    assert_eq!(s.backend(), b);
                    s.encrypt(&frame).unwrap()
                })
                .collect();
            for (b, w) in Backend::ALL.iter().zip(&wires) {
                assert!(w == &wires[0], "{dialect}: {b} differs from {}", Backend::ALL[0]);
                for &opener in Backend::ALL {
                    let s = Session::with_backend(opener, dialect, KEY, [3; 16]);
                    assert!(s.decrypt(w).unwrap() == frame, "{dialect}: {opener} opening {b}");
                    assert!(s.opener().decrypt(w).unwrap() == frame, "{dialect}: {opener} opener, {b}");
                }
            }
        }
    }
}
