//! CLOSE frames and TEXT payloads, checked once for every peer (RFC 6455 5.5.1, 7.1.5, 7.4, 8.1).
//!
//! A CLOSE payload is empty, or a 2-byte status code followed by a UTF-8 reason. Anything else (one byte, a
//! code that must not be sent, a reason that is not UTF-8) fails the connection with 1002. A TEXT message
//! must be UTF-8; a fragmented one is failed (1007) at the first fragment that makes it invalid, not at its
//! end, so [`Utf8Validator`] checks fragment by fragment and keeps at most 3 bytes of an unfinished character.

use super::MAX_CONTROL_PAYLOAD;

/// Close codes with a meaning of their own (RFC 6455 7.4.1 and the IANA registry).
pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Never on the wire: "the CLOSE frame had no status code".
    pub const NO_STATUS: u16 = 1005;
    /// Never on the wire: "the connection ended without a CLOSE frame".
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Whether a peer may send `code` in a CLOSE frame: 1000-1003 and 1007-1014 (RFC 6455 7.4.1 and the
/// registered 1012-1014), or 3000-4999 (libraries, frameworks, applications: 7.4.2). 0-999, 1004-1006 (1005
/// and 1006 only describe what happened locally), 1015 (TLS, local only), 1016-2999 (unassigned or reserved
/// for extensions) and 5000 and up are not valid on the wire.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A CLOSE frame as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// `None` when the payload was empty (reported as 1005 by whoever needs a number).
    pub code: Option<u16>,
    pub reason: String,
}

impl CloseFrame {
    /// The code, or 1005 ("no status code") for an empty CLOSE.
    pub fn code_or_no_status(&self) -> u16 {
        self.code.unwrap_or(code::NO_STATUS)
    }
}

/// Why a CLOSE payload is invalid. Each one fails the connection with 1002.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// A 1-byte payload: a status code is two bytes (RFC 6455 5.5.1).
    #[error("CLOSE frame with a 1-byte payload: a status code takes 2 bytes")]
    OneByte,
    /// A code that must not be sent (RFC 6455 7.4).
    #[error(
        "CLOSE frame with status code {0}, which must not be sent (valid: 1000-1003, 1007-1014, 3000-4999)"
    )]
    InvalidCode(u16),
    /// The reason is not UTF-8 (RFC 6455 5.5.1).
    #[error("CLOSE frame reason is not valid UTF-8 (invalid byte at offset {at} of the reason)")]
    ReasonNotUtf8 { at: usize },
}

/// Parses and validates a CLOSE payload (already unmasked).
pub fn parse_close(payload: &[u8]) -> Result<CloseFrame, CloseError> {
    match payload {
        [] => Ok(CloseFrame { code: None, reason: String::new() }),
        [_] => Err(CloseError::OneByte),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(CloseError::InvalidCode(code));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|e| CloseError::ReasonNotUtf8 { at: e.valid_up_to() })?;
            Ok(CloseFrame { code: Some(code), reason: reason.to_string() })
        }
    }
}

/// What a peer that only reports a CLOSE it received (without failing the connection) reads from it: the
/// code (1005 when absent) and the reason, invalid UTF-8 replaced. [`parse_close`] says whether it was valid.
pub fn read_close_lossy(payload: &[u8]) -> (Option<u16>, String) {
    let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
    (code, String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned())
}

/// The payload of a CLOSE frame we send: the code, then as much of `reason` as fits in a control frame
/// (125 bytes in all), cut at a character boundary so it stays UTF-8.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = Vec::with_capacity(2 + end);
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(&reason.as_bytes()[..end]);
    p
}

/// A TEXT message that is not UTF-8 (RFC 6455 8.1: fail with 1007).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TEXT message is not valid UTF-8 (invalid at byte {at} of the message)")]
pub struct NotUtf8 {
    /// Offset in the whole message of the first byte that cannot be part of valid UTF-8.
    pub at: u64,
}

/// Checks a TEXT message fragment by fragment: an invalid byte is reported in the fragment that carries it.
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    /// The first bytes of a character the previous fragment ended inside (at most 3).
    pending: Vec<u8>,
    /// Bytes of the message checked so far, including `pending`.
    seen: u64,
}

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next fragment; `fin` says it is the last one.
    pub fn push(&mut self, fragment: &[u8], fin: bool) -> Result<(), NotUtf8> {
        let start = self.seen - self.pending.len() as u64;
        self.seen += fragment.len() as u64;
        // Only the unfinished character needs joining; the rest is checked in place.
        let (joined, rest) = if self.pending.is_empty() {
            (None, fragment)
        } else {
            let width = match self.pending[0] {
                0xf0..=0xf4 => 4,
                0xe0..=0xef => 3,
                _ => 2,
            };
            let take = fragment.len().min(width - self.pending.len());
            let mut head = std::mem::take(&mut self.pending);
            head.extend_from_slice(&fragment[..take]);
            (Some(head), &fragment[take..])
        };
        let mut offset = start;
        if let Some(head) = joined {
            match std::str::from_utf8(&head) {
                Ok(_) => offset = start + head.len() as u64,
                Err(e) if e.error_len().is_some() => {
                    return Err(NotUtf8 { at: start + e.valid_up_to() as u64 })
                }
                Err(_) => {
                    // The fragment ended before the character did: keep it for the next one.
                    self.pending = head;
                    return self.finish_if(fin, start);
                }
            }
        }
        match std::str::from_utf8(rest) {
            Ok(_) => {}
            Err(e) if e.error_len().is_some() => return Err(NotUtf8 { at: offset + e.valid_up_to() as u64 }),
            Err(e) => self.pending = rest[e.valid_up_to()..].to_vec(),
        }
        self.finish_if(fin, offset + (rest.len() - self.pending.len()) as u64)
    }

    fn finish_if(&mut self, fin: bool, at: u64) -> Result<(), NotUtf8> {
        if fin && !self.pending.is_empty() {
            return Err(NotUtf8 { at });
        }
        if fin {
            self.seen = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_rfc6455_7_4() {
        for bad in [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!is_valid_close_code(bad), "{bad}");
            assert_eq!(parse_close(&bad.to_be_bytes()), Err(CloseError::InvalidCode(bad)));
        }
        for good in
            [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
        {
            assert!(is_valid_close_code(good), "{good}");
            assert_eq!(parse_close(&good.to_be_bytes()).unwrap().code, Some(good));
        }
    }

    #[test]
    fn close_payload_shapes() {
        assert_eq!(parse_close(&[]), Ok(CloseFrame { code: None, reason: String::new() }));
        assert_eq!(parse_close(&[]).unwrap().code_or_no_status(), 1005);
        assert_eq!(parse_close(&[0x03]), Err(CloseError::OneByte));
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice("ok \u{e9}".as_bytes());
        assert_eq!(parse_close(&p), Ok(CloseFrame { code: Some(1000), reason: "ok \u{e9}".into() }));
        let mut bad = 1000u16.to_be_bytes().to_vec();
        bad.extend_from_slice(&[
            b'a', 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
        ]);
        assert_eq!(parse_close(&bad), Err(CloseError::ReasonNotUtf8 { at: 12 }));
        assert_eq!(read_close_lossy(&bad).0, Some(1000));
    }

    #[test]
    fn close_payload_is_cut_at_a_character_boundary() {
        let long = "\u{e9}".repeat(100);
        let p = close_payload(1002, &long);
        assert!(p.len() <= MAX_CONTROL_PAYLOAD);
        assert_eq!(p.len(), 2 + 122);
        assert!(parse_close(&p).is_ok());
        assert_eq!(close_payload(1000, ""), vec![0x03, 0xe8]);
    }

    fn check(fragments: &[&[u8]]) -> Result<(), (usize, NotUtf8)> {
        let mut v = Utf8Validator::new();
        for (i, f) in fragments.iter().enumerate() {
            v.push(f, i + 1 == fragments.len()).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    #[test]
    fn utf8_fails_at_the_fragment_that_breaks_it() {
        // Autobahn 6.4.1-style: valid start, an invalid code point in the 2nd fragment, more after it.
        let a: &[u8] = "\u{3ba}\u{1f79}\u{3c3}\u{3bc}\u{3b5}".as_bytes();
        let b: &[u8] = &[0xf4, 0x90, 0x80, 0x80];
        let c: &[u8] = b"edited";
        assert_eq!(check(&[a, b, c]), Err((1, NotUtf8 { at: a.len() as u64 })));
        // A character split across fragments is fine.
        let euro = "\u{20ac}".as_bytes();
        assert_eq!(check(&[&euro[..1], &euro[1..2], &euro[2..]]), Ok(()));
        assert_eq!(check(&[b"ab", &euro[..2], &euro[2..], b"cd"]), Ok(()));
        let emoji = "\u{1f600}".as_bytes();
        let mut tail = euro[2..].to_vec();
        tail.extend_from_slice(emoji);
        assert_eq!(check(&[&euro[..2], &tail[..2], &tail[2..]]), Ok(()));
        // A split character whose continuation is wrong fails in the fragment carrying the wrong byte.
        assert_eq!(check(&[&euro[..2], b"x", b"y"]), Err((1, NotUtf8 { at: 0 })));
        // The message ends inside a character.
        assert_eq!(check(&[b"ok", &euro[..2]]), Err((1, NotUtf8 { at: 2 })));
        // Surrogates (ED A0 80) are not UTF-8, and the 2nd byte already says so.
        assert_eq!(check(&[b"x", &[0xed], &[0xa0, 0x80]]), Err((2, NotUtf8 { at: 1 })));
        assert_eq!(check(&[b"", b""]), Ok(()));
    }

    #[test]
    fn a_validator_is_reusable_after_a_message() {
        let mut v = Utf8Validator::new();
        v.push("h\u{e9}".as_bytes(), true).unwrap();
        assert_eq!(v.push(&[0xff], true), Err(NotUtf8 { at: 0 }));
    }

    /// The property of the model below, for any validator: splitting `data` at `cuts` and checking it
    /// fragment by fragment gives the verdict (and the offset) of checking it whole.
    fn agrees_with_from_utf8(
        data: &[u8],
        cuts: Vec<usize>,
        check: impl Fn(&[&[u8]]) -> Result<(), (usize, NotUtf8)>,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
        cuts.sort_unstable();
        let mut parts = Vec::new();
        let mut last = 0;
        for c in cuts {
            parts.push(&data[last..c]);
            last = c;
        }
        parts.push(&data[last..]);
        let whole = std::str::from_utf8(data);
        let got = check(&parts);
        proptest::prop_assert_eq!(got.is_ok(), whole.is_ok());
        if let (Err((_, e)), Err(w)) = (got, whole) {
            proptest::prop_assert_eq!(e.at, w.valid_up_to() as u64);
        }
        Ok(())
    }

    fn strategy() -> impl proptest::strategy::Strategy<Value = (Vec<u8>, Vec<usize>)> {
        use proptest::prelude::*;
        // Mostly valid text with multi-byte characters, sometimes a stray byte: splits land inside characters.
        let text =
            proptest::collection::vec(any::<char>(), 0..12).prop_map(|cs| cs.into_iter().collect::<String>());
        let bytes = (text, proptest::option::of(any::<u8>()), any::<usize>()).prop_map(|(t, stray, at)| {
            let mut b = t.into_bytes();
            if let Some(x) = stray {
                let at = at % (b.len() + 1);
                b.insert(at, x);
            }
            b
        });
        (bytes, proptest::collection::vec(0usize..48, 0..6))
    }

    proptest::proptest! {
        #[test]
        fn any_chunking_agrees_with_from_utf8((data, cuts) in strategy()) {
            agrees_with_from_utf8(&data, cuts, check)?;
        }
    }

    /// The broken variant: each fragment checked on its own (a character split across fragments is then
    /// "invalid"). The model must catch it.
    #[test]
    fn the_model_catches_a_per_fragment_check() {
        let broken = |parts: &[&[u8]]| -> Result<(), (usize, NotUtf8)> {
            let mut at = 0u64;
            for (i, p) in parts.iter().enumerate() {
                if let Err(e) = std::str::from_utf8(p) {
                    return Err((i, NotUtf8 { at: at + e.valid_up_to() as u64 }));
                }
                at += p.len() as u64;
            }
            Ok(())
        };
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let result = runner.run(&strategy(), |(data, cuts)| agrees_with_from_utf8(&data, cuts, broken));
        assert!(
            result.is_err(),
            "the chunking model did not catch a validator that ignores split characters"
        );
    }
}
