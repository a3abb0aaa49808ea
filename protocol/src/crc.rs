//! CRC-32C (Castagnoli), the checksum of every ACIP payload and of ASCII_FRAME text (ACIP-SPEC.md 1.2).
//! Not IEEE CRC-32. The `crc32c` crate uses SSE4.2 / ARMv8 CRC instructions where present.
//!
//! [`ZerosOp`] is the CRC's linearity made usable: `crc(A ‖ B) = Z_|B|(crc(A)) ^ crc(B)`, where `Z_n` is a
//! fixed 32x32 bit matrix for each length `n`. It lets a sender that knows the CRC of repeated pieces (the
//! rows of the test pattern) get the CRC of the whole without another pass over its bytes, and a
//! receiver that verified a packet's CRC derive the CRC of a part of it.

/// CRC-32C of `data` (reflected polynomial 0x82F63B78, init and final XOR 0xFFFFFFFF).
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Continues a CRC-32C over more bytes, so a payload in pieces needs no copy.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// `crc(A ‖ B)` from `crc(A)`, `crc(B)` and `|B|` (O(log |B|) matrix work; use [`ZerosOp`] to repeat one
/// length cheaply).
pub fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    crc32c::crc32c_combine(crc_a, crc_b, len_b)
}

/// The linear map `Z_n` of one length `n`: `crc(A ‖ B) == op.apply(crc(A)) ^ crc(B)` for every `A` and
/// every `B` of `n` bytes. Applying it costs four table lookups; building it about a dozen 32x32 matrix
/// products, so build it once per length.
#[derive(Clone)]
pub struct ZerosOp {
    len: usize,
    /// `tables[k][b]`: the image of byte `b` in bit positions `8k..8k+8`.
    tables: Box<[[u32; 256]; 4]>,
}

impl std::fmt::Debug for ZerosOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZerosOp").field("len", &self.len).finish_non_exhaustive()
    }
}

/// A 32x32 GF(2) matrix as 32 columns: column `i` is the image of bit `i`.
type Gf2 = [u32; 32];

fn gf2_times(m: &Gf2, mut v: u32) -> u32 {
    let mut sum = 0;
    let mut i = 0;
    while v != 0 {
        if v & 1 != 0 {
            sum ^= m[i];
        }
        v >>= 1;
        i += 1;
    }
    sum
}

/// `a ∘ b` (apply `b` first).
fn gf2_mul(a: &Gf2, b: &Gf2) -> Gf2 {
    std::array::from_fn(|i| gf2_times(a, b[i]))
}

impl ZerosOp {
    /// The operator for `len` bytes.
    pub fn new(len: usize) -> ZerosOp {
        // One zero bit through the reflected register: shift right, XOR the polynomial if bit 0 was set.
        let mut bit: Gf2 = [0; 32];
        bit[0] = 0x82F6_3B78;
        for (i, col) in bit.iter_mut().enumerate().skip(1) {
            *col = 1 << (i - 1);
        }
        let two = gf2_mul(&bit, &bit);
        let four = gf2_mul(&two, &two);
        let mut base = gf2_mul(&four, &four); // one zero byte
        let mut acc: Gf2 = std::array::from_fn(|i| 1 << i);
        let mut n = len;
        while n != 0 {
            if n & 1 != 0 {
                acc = gf2_mul(&base, &acc);
            }
            n >>= 1;
            if n != 0 {
                base = gf2_mul(&base, &base);
            }
        }
        let mut tables = Box::new([[0u32; 256]; 4]);
        for (k, table) in tables.iter_mut().enumerate() {
            for b in 1..256usize {
                // Every byte is its lowest set bit plus a smaller byte already filled in.
                let low = b.trailing_zeros() as usize;
                table[b] = table[b & (b - 1)] ^ acc[8 * k + low];
            }
        }
        ZerosOp { len, tables }
    }

    /// The length this operator stands for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it stands for zero bytes (the identity).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `Z_n(crc)`: `crc(A ‖ B) == op.apply(crc(A)) ^ crc(B)` for `|B| == n`.
    pub fn apply(&self, crc: u32) -> u32 {
        let t = &self.tables;
        t[0][(crc & 0xFF) as usize]
            ^ t[1][(crc >> 8 & 0xFF) as usize]
            ^ t[2][(crc >> 16 & 0xFF) as usize]
            ^ t[3][(crc >> 24) as usize]
    }

    /// `crc(A ‖ B)` from `crc(A)` and `crc(B)`, `|B|` being this operator's length.
    pub fn combine(&self, crc_a: u32, crc_b: u32) -> u32 {
        self.apply(crc_a) ^ crc_b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_answers() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0, 0, 0, 1]), 0xBA0C_C8C4);
        assert_eq!(crc32c_append(crc32c(b"1234"), b"56789"), 0xE306_9283);
        assert_eq!(crc32c_combine(crc32c(b"1234"), crc32c(b"56789"), 5), 0xE306_9283);
        assert_eq!(ZerosOp::new(5).combine(crc32c(b"1234"), crc32c(b"56789")), 0xE306_9283);
        assert_eq!(ZerosOp::new(0).apply(0x1234_5678), 0x1234_5678);
    }

    /// The property of [`ZerosOp`]: for any `A` and `B`, the operator `make(|B|)` combines `crc(A)` and
    /// `crc(B)` into the CRC of a straight pass over `A ‖ B`. Run on the real operator and on broken ones.
    fn zeros_op_property(make: impl Fn(usize) -> ZerosOp) -> Result<(), String> {
        use proptest::test_runner::{Config, TestRunner};
        let config = Config { cases: 64, failure_persistence: None, ..Config::default() };
        let strategy =
            (prop::collection::vec(any::<u8>(), 0..64), prop::collection::vec(any::<u8>(), 0..3000));
        TestRunner::new(config)
            .run(&strategy, |(a, b)| {
                let mut ab = a.clone();
                ab.extend_from_slice(&b);
                prop_assert_eq!(make(b.len()).combine(crc32c(&a), crc32c(&b)), crc32c(&ab));
                prop_assert_eq!(crc32c_combine(crc32c(&a), crc32c(&b), b.len()), crc32c(&ab));
                Ok(())
            })
            .map_err(|e| e.to_string())
    }

    /// The operator agrees with a straight pass over the concatenation.
    #[test]
    fn proptest_zeros_op_matches_a_pass() {
        zeros_op_property(ZerosOp::new).unwrap();
    }

    /// Deliberately broken operators (one byte too many; one table lookup dropped) are caught.
    #[test]
    fn the_zeros_op_property_catches_broken_operators() {
        assert!(zeros_op_property(|n| ZerosOp::new(n + 1)).is_err(), "an off-by-one length passed");
        let drop_top_byte = |n| {
            let mut op = ZerosOp::new(n);
            op.tables[3] = [0; 256];
            op
        };
        assert!(zeros_op_property(drop_top_byte).is_err(), "a missing table passed");
    }
}
