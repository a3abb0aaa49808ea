//! Splitting one message into frames the way the `feb` senders did by hand (ACIP-SPEC.md 6.2 and 10 row 7;
//! RFC 6455 5.4): the first frame carries the message opcode, the rest are CONTINUATION, and only the last
//! has FIN set.

use super::{encode_frame, OpCode, FRAGMENT_SIZE_NATIVE_CLIENT, FRAGMENT_SIZE_SERVER};

/// A fragmentation policy: the message opcode and the payload size of every frame but the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragmenter {
    /// Opcode of the first frame (ACIP sends BINARY).
    pub opcode: OpCode,
    /// Payload bytes per frame; 0 means "never fragment" (HEAD's single `lws_write`).
    pub fragment_size: usize,
}

impl Fragmenter {
    /// The old native client: 4096-byte frames.
    pub const NATIVE_CLIENT: Fragmenter =
        Fragmenter { opcode: OpCode::Binary, fragment_size: FRAGMENT_SIZE_NATIVE_CLIENT };
    /// The old server: 256 KiB frames.
    pub const SERVER: Fragmenter = Fragmenter { opcode: OpCode::Binary, fragment_size: FRAGMENT_SIZE_SERVER };
    /// One frame per message.
    pub const WHOLE: Fragmenter = Fragmenter { opcode: OpCode::Binary, fragment_size: 0 };

    /// Binary messages cut into `fragment_size`-byte frames.
    pub const fn binary(fragment_size: usize) -> Fragmenter {
        Fragmenter { opcode: OpCode::Binary, fragment_size }
    }

    /// The frames of `message`: `(opcode, fin, payload)`, borrowing from `message`.
    pub fn fragments<'a>(&self, message: &'a [u8]) -> Fragments<'a> {
        Fragments { rest: message, opcode: self.opcode, size: self.fragment_size, done: false }
    }

    /// Appends the wire bytes of every frame of `message` to `out`, each masked with `mask` if given (a real
    /// client draws a fresh key per frame; one fixed key keeps test output reproducible).
    pub fn encode(&self, message: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
        for (opcode, fin, payload) in self.fragments(message) {
            encode_frame(opcode, fin, mask, payload, out);
        }
    }
}

/// The frames of `message` cut at `fragment_size` bytes: a first BINARY frame, then CONTINUATION frames,
/// FIN on the last. An empty message is one empty BINARY frame with FIN; `fragment_size` 0 means one frame.
pub fn fragment(message: &[u8], fragment_size: usize) -> Fragments<'_> {
    Fragmenter::binary(fragment_size).fragments(message)
}

/// Iterator returned by [`fragment`] and [`Fragmenter::fragments`].
#[derive(Debug, Clone)]
pub struct Fragments<'a> {
    rest: &'a [u8],
    opcode: OpCode,
    size: usize,
    done: bool,
}

impl<'a> Iterator for Fragments<'a> {
    type Item = (OpCode, bool, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let n = if self.size == 0 { self.rest.len() } else { self.size.min(self.rest.len()) };
        let (chunk, rest) = self.rest.split_at(n);
        let fin = rest.is_empty();
        let opcode = self.opcode;
        self.opcode = OpCode::Continuation;
        self.rest = rest;
        self.done = fin;
        Some((opcode, fin, chunk))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match (self.done, self.size) {
            (true, _) => 0,
            (false, 0) => 1,
            (false, s) => self.rest.len().div_ceil(s).max(1),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Fragments<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_frame_of_230446_bytes_is_57_native_client_fragments() {
        let message = vec![0u8; 230_446];
        let frames: Vec<_> = fragment(&message, FRAGMENT_SIZE_NATIVE_CLIENT).collect();
        assert_eq!(frames.len(), 57);
        assert_eq!(fragment(&message, FRAGMENT_SIZE_NATIVE_CLIENT).len(), 57);
        assert_eq!((frames[0].0, frames[0].1), (OpCode::Binary, false));
        assert!(frames[1..56].iter().all(|f| f.0 == OpCode::Continuation && !f.1 && f.2.len() == 4096));
        assert_eq!((frames[56].0, frames[56].1, frames[56].2.len()), (OpCode::Continuation, true, 1070));
    }

    #[test]
    fn empty_and_exact_multiple_messages() {
        assert_eq!(fragment(&[], 4).collect::<Vec<_>>(), [(OpCode::Binary, true, &[][..])]);
        let m = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let f: Vec<_> = fragment(&m, 4).collect();
        assert_eq!(f, [(OpCode::Binary, false, &m[..4]), (OpCode::Continuation, true, &m[4..])]);
        assert_eq!(fragment(&m, 0).collect::<Vec<_>>(), [(OpCode::Binary, true, &m[..])]);
    }
}
