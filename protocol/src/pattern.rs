//! The moving RGB24 test pattern the reference client sends as IMAGE_FRAME pixels (ACIP-SPEC.md 3.7), with
//! an end-to-end header in its first bytes so a receiver can detect loss, reordering, duplication and
//! corruption of frames without trusting any layer in between.
//!
//! Layout of the first [`PATTERN_HEADER_LEN`] bytes of the pixel buffer (11 pixels), all big-endian:
//!
//! ```text
//! off size field
//!   0    4 magic "ACPT"
//!   4    2 width (pixels)
//!   6    2 height (pixels)
//!   8    8 seq            sequence number, chosen by the sender (0, 1, 2, ... per connection)
//!  16    8 send_time_us   the *intended* send time, UNIX microseconds, passed in by the caller
//!  24    4 tag            the sender's tag (e.g. a client index in a soak run)
//!  28    4 checksum       CRC-32C over bytes 0..28 followed by bytes 32..end (the whole frame but itself)
//! ```
//!
//! Coverage: the checksum covers **every byte of the frame** except the checksum field itself. A whole-frame
//! CRC-32C was chosen over a sampled stride because the `crc32c` crate runs on the CPU's CRC instruction
//! (SSE4.2 / ARMv8): about 50-100 µs for a 921,600-byte 640x480 frame, comparable to writing the pixels in
//! the first place, so dozens of clients at 30 fps cost a few percent of one core (see the
//! `render_and_inspect_a_vga_frame_quickly` test, which prints the figure).
//!
//! The picture: vertical bars of eight luminance levels that move right by [`BAR_STEP`] pixels per frame,
//! plus a bright horizontal band that moves down, so an ASCII rendering of it changes every frame.
//! Rendering copies one template row, so it costs about one `memcpy` of the frame.
//!
//! Two ways to render: [`render`] / [`render_into`] draw the frame and then run the checksum over it (the
//! straightforward reference), while a [`PatternRenderer`] appends the rows to a buffer and gets every CRC
//! from the CRCs of the two kinds of row (bars and band) with [`ZerosOp`], so a sender's only pass over
//! the pixels is writing them. It also returns the CRC-32C of the packet payload around the pixels, so the
//! packet header needs no pass either. On the receiving side, [`PatternChecker`] checks the frame checksum
//! of a payload whose packet CRC the codec already verified, again without a second pass. Tests compare
//! both with the straightforward computation.
//!
//! Sans-IO: no clock is read; the send time is an argument.

use crate::crc::{crc32c, crc32c_append, ZerosOp};

/// Bytes of the embedded header (the first 10⅔ pixels).
pub const PATTERN_HEADER_LEN: usize = 32;
/// The magic at offset 0.
pub const PATTERN_MAGIC: [u8; 4] = *b"ACPT";
/// Offset of the checksum field.
const CHECKSUM_OFFSET: usize = 28;
/// Pixels the bars move per frame.
pub const BAR_STEP: usize = 4;
/// The smallest frame that holds the header: 11 pixels (33 bytes).
pub const MIN_PIXELS: usize = PATTERN_HEADER_LEN.div_ceil(3);

/// What [`inspect`] found in a frame that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PatternInfo {
    pub width: u16,
    pub height: u16,
    pub seq: u64,
    /// Intended send time, UNIX microseconds (what the sender passed to [`render`]).
    pub send_time_us: u64,
    pub tag: u32,
}

/// Why a frame is not an intact test pattern.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("frame of {width}x{height} pixels cannot hold the {PATTERN_HEADER_LEN}-byte pattern header")]
    FrameTooSmall { width: u16, height: u16 },
    #[error("{len} bytes is too short for the {PATTERN_HEADER_LEN}-byte pattern header")]
    TooShort { len: usize },
    #[error("bad pattern magic {found:02X?}")]
    BadMagic { found: [u8; 4] },
    #[error("header says {width}x{height} ({} bytes) but the frame has {len} bytes", *width as usize * *height as usize * 3)]
    SizeMismatch { width: u16, height: u16, len: usize },
    #[error("pattern checksum mismatch: header says 0x{expected:08X}, frame gives 0x{actual:08X}")]
    ChecksumMismatch { expected: u32, actual: u32 },
}

/// Renders frame `seq` of the pattern into `out` (cleared first, then `width * height * 3` bytes of RGB24).
/// `out` keeps its capacity between calls, so a sender reusing one buffer allocates once.
pub fn render(
    width: u16,
    height: u16,
    seq: u64,
    send_time_us: u64,
    tag: u32,
    out: &mut Vec<u8>,
) -> Result<(), PatternError> {
    if (width as usize * height as usize) < MIN_PIXELS {
        return Err(PatternError::FrameTooSmall { width, height });
    }
    out.clear();
    out.resize(width as usize * height as usize * 3, 0);
    render_into(width, height, seq, send_time_us, tag, out)
}

/// Renders frame `seq` into `out`, which must be exactly `width * height * 3` bytes: lets a sender draw
/// straight into a packet buffer after its headers, with no copy.
pub fn render_into(
    width: u16,
    height: u16,
    seq: u64,
    send_time_us: u64,
    tag: u32,
    out: &mut [u8],
) -> Result<(), PatternError> {
    let (w, h) = (width as usize, height as usize);
    if w * h < MIN_PIXELS {
        return Err(PatternError::FrameTooSmall { width, height });
    }
    if out.len() != w * h * 3 {
        return Err(PatternError::SizeMismatch { width, height, len: out.len() });
    }
    let row_len = w * 3;

    // Row 0 is the template, copied to every row.
    template_row(w, seq, &mut out[..row_len]);
    let (template, rest) = out.split_at_mut(row_len);
    for row in rest.chunks_exact_mut(row_len) {
        row.copy_from_slice(template);
    }

    // A bright band, an eighth of the height, moving down one row per frame.
    let band = (h / 8).max(1);
    let top = (seq % h as u64) as usize;
    for i in 0..band {
        let y = (top + i) % h;
        out[y * row_len..(y + 1) * row_len].fill(0xF0);
    }

    write_header(out, width, height, seq, send_time_us, tag);
    Ok(())
}

fn write_header(out: &mut [u8], width: u16, height: u16, seq: u64, send_time_us: u64, tag: u32) {
    write_fields(out, width, height, seq, send_time_us, tag);
    let sum = checksum(out);
    out[CHECKSUM_OFFSET..PATTERN_HEADER_LEN].copy_from_slice(&sum.to_be_bytes());
}

/// The header fields before the checksum.
fn write_fields(out: &mut [u8], width: u16, height: u16, seq: u64, send_time_us: u64, tag: u32) {
    out[0..4].copy_from_slice(&PATTERN_MAGIC);
    out[4..6].copy_from_slice(&width.to_be_bytes());
    out[6..8].copy_from_slice(&height.to_be_bytes());
    out[8..16].copy_from_slice(&seq.to_be_bytes());
    out[16..24].copy_from_slice(&send_time_us.to_be_bytes());
    out[24..28].copy_from_slice(&tag.to_be_bytes());
}

/// CRC-32C over the whole frame except the checksum field.
fn checksum(frame: &[u8]) -> u32 {
    crc32c_append(crc32c(&frame[..CHECKSUM_OFFSET]), &frame[PATTERN_HEADER_LEN..])
}

/// Checks a frame's magic, size and checksum and returns its header.
pub fn inspect(pixels: &[u8]) -> Result<PatternInfo, PatternError> {
    let (info, expected) = check_fields(pixels)?;
    let actual = checksum(pixels);
    if expected != actual {
        return Err(PatternError::ChecksumMismatch { expected, actual });
    }
    Ok(info)
}

/// Magic and size checks; the header fields and the checksum the frame carries.
fn check_fields(pixels: &[u8]) -> Result<(PatternInfo, u32), PatternError> {
    if pixels.len() < PATTERN_HEADER_LEN {
        return Err(PatternError::TooShort { len: pixels.len() });
    }
    let magic: [u8; 4] = pixels[0..4].try_into().expect("4 bytes");
    if magic != PATTERN_MAGIC {
        return Err(PatternError::BadMagic { found: magic });
    }
    let be16 = |o: usize| u16::from_be_bytes([pixels[o], pixels[o + 1]]);
    let be32 = |o: usize| u32::from_be_bytes(pixels[o..o + 4].try_into().expect("4 bytes"));
    let be64 = |o: usize| u64::from_be_bytes(pixels[o..o + 8].try_into().expect("8 bytes"));
    let (width, height) = (be16(4), be16(6));
    if width as usize * height as usize * 3 != pixels.len() {
        return Err(PatternError::SizeMismatch { width, height, len: pixels.len() });
    }
    let info = PatternInfo { width, height, seq: be64(8), send_time_us: be64(16), tag: be32(24) };
    Ok((info, be32(CHECKSUM_OFFSET)))
}

/// The template row of frame `seq`: vertical bars, eight across the frame (at least 1 pixel each), moving
/// right by [`BAR_STEP`] pixels per frame.
fn template_row(w: usize, seq: u64, row: &mut [u8]) {
    let bar_width = (w / 8).max(1);
    let shift = (seq as usize).wrapping_mul(BAR_STEP) % w;
    for (x, px) in row.chunks_exact_mut(3).enumerate() {
        let bar = ((x + w - shift) % w) / bar_width % 8;
        // Luminance 0..=245 in eight steps, tinted so colour renderers have something to show.
        let l = (bar * 35) as u8;
        px.copy_from_slice(&[l, l.saturating_add(10), l / 2 + 60]);
    }
}

/// Renders the pattern of one frame size with no pass over the pixels but the one that writes them.
///
/// The frame is `h` rows, each either the bar template of this `seq` or the band row (all 0xF0); the
/// embedded header replaces the first 32 bytes. The CRC of everything after the header is built row by
/// row from the two rows' CRCs (`crc(A ‖ row) = Z_row(crc(A)) ^ crc(row)`), and the header's CRC is put in
/// front of it with `Z_rest`. Output is byte for byte what [`render_into`] draws (see the proptest).
#[derive(Debug, Clone)]
pub struct PatternRenderer {
    width: u16,
    height: u16,
    /// The band row and its CRC.
    band: Vec<u8>,
    band_crc: u32,
    /// Scratch for the bar row of the frame being drawn.
    bars: Vec<u8>,
    /// `Z` for one row, and for everything after the header. `None` for frames whose rows are shorter
    /// than the header, which are drawn the straightforward way.
    ops: Option<(ZerosOp, ZerosOp)>,
}

impl PatternRenderer {
    /// A renderer for `width x height` frames.
    pub fn new(width: u16, height: u16) -> Result<PatternRenderer, PatternError> {
        let (w, h) = (width as usize, height as usize);
        if w * h < MIN_PIXELS {
            return Err(PatternError::FrameTooSmall { width, height });
        }
        let row_len = w * 3;
        let band = vec![0xF0; row_len];
        let ops = (row_len >= PATTERN_HEADER_LEN)
            .then(|| (ZerosOp::new(row_len), ZerosOp::new(row_len * h - PATTERN_HEADER_LEN)));
        Ok(PatternRenderer { width, height, band_crc: crc32c(&band), band, bars: vec![0; row_len], ops })
    }

    /// Width and height in pixels.
    pub fn size(&self) -> (u16, u16) {
        (self.width, self.height)
    }

    /// Bytes of one frame (`width * height * 3`).
    pub fn frame_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// Appends frame `seq` to `out` and returns `crc32c(prefix ‖ frame)`, where `prefix_crc` is the CRC-32C
    /// of the bytes the caller put in front of the frame in its packet payload (the IMAGE_FRAME header),
    /// or 0 for none. `out` is only appended to: nothing is zeroed first.
    pub fn render_append<B>(
        &mut self,
        seq: u64,
        send_time_us: u64,
        tag: u32,
        prefix_crc: u32,
        out: &mut B,
    ) -> u32
    where
        B: bytes::BufMut + AsMut<[u8]>,
    {
        let (width, height) = (self.width, self.height);
        let Some((row_op, rest_op)) = &self.ops else {
            // Rows shorter than the header: tiny frames, drawn and summed the straightforward way.
            let mut frame = Vec::new();
            render(width, height, seq, send_time_us, tag, &mut frame).expect("size checked in new");
            out.put_slice(&frame);
            return crc32c_append(prefix_crc, &frame);
        };
        let h = height as usize;
        template_row(width as usize, seq, &mut self.bars);
        let bars_crc = crc32c(&self.bars);
        let band_rows = (h / 8).max(1);
        let top = (seq % h as u64) as usize;
        let in_band = |y: usize| (y + h - top) % h < band_rows;

        let start = out.as_mut().len();
        let mut header = [0u8; PATTERN_HEADER_LEN];
        write_fields(&mut header, width, height, seq, send_time_us, tag);
        out.put_slice(&header);
        let first = if in_band(0) { &self.band } else { &self.bars };
        out.put_slice(&first[PATTERN_HEADER_LEN..]);
        let mut rest_crc = crc32c(&first[PATTERN_HEADER_LEN..]);
        for y in 1..h {
            let (row, row_crc) =
                if in_band(y) { (&self.band, self.band_crc) } else { (&self.bars, bars_crc) };
            out.put_slice(row);
            rest_crc = row_op.combine(rest_crc, row_crc);
        }
        let sum = rest_op.combine(crc32c(&header[..CHECKSUM_OFFSET]), rest_crc);
        header[CHECKSUM_OFFSET..].copy_from_slice(&sum.to_be_bytes());
        out.as_mut()[start + CHECKSUM_OFFSET..start + PATTERN_HEADER_LEN].copy_from_slice(&sum.to_be_bytes());
        rest_op.combine(crc32c_append(prefix_crc, &header), rest_crc)
    }
}

/// Checks test-pattern frames inside payloads whose CRC-32C is already known and verified (the packet CRC
/// a codec checked against the bytes): the frame checksum is derived from it, with no second pass. For a
/// payload `P = prefix ‖ H ‖ R` (H the 32-byte pattern header), `crc(P) = Z_R(crc(prefix ‖ H)) ^ crc(R)`
/// and the frame checksum is `Z_R(crc(H[..28])) ^ crc(R)`, so the checksum is
/// `crc(P) ^ Z_R(crc(prefix ‖ H) ^ crc(H[..28]))`. Keeps the `Z_R` of the last frame size.
#[derive(Debug, Clone, Default)]
pub struct PatternChecker {
    rest_op: Option<ZerosOp>,
}

impl PatternChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// As [`inspect`] for the frame at `payload[pixels_at..]`, given `payload_crc == crc32c(payload)`,
    /// which the caller must have verified against these bytes. Same errors, same values.
    pub fn inspect_verified(
        &mut self,
        payload: &[u8],
        pixels_at: usize,
        payload_crc: u32,
    ) -> Result<PatternInfo, PatternError> {
        let pixels = payload.get(pixels_at..).unwrap_or_default();
        let (info, expected) = check_fields(pixels)?;
        let rest = pixels.len() - PATTERN_HEADER_LEN;
        let op = match &mut self.rest_op {
            Some(op) if op.len() == rest => op,
            slot => slot.insert(ZerosOp::new(rest)),
        };
        let head = crc32c(&payload[..pixels_at + PATTERN_HEADER_LEN]) ^ crc32c(&pixels[..CHECKSUM_OFFSET]);
        let actual = payload_crc ^ op.apply(head);
        if expected != actual {
            return Err(PatternError::ChecksumMismatch { expected, actual });
        }
        Ok(info)
    }
}

/// How many sequence numbers behind the highest one [`SequenceTracker`] remembers individually.
pub const TRACKER_WINDOW: u64 = 128;

/// Counts received, lost, reordered and duplicate frames from their sequence numbers.
///
/// `lost` is the number of sequence numbers skipped over and not (yet) seen: a frame that arrives late
/// within [`TRACKER_WINDOW`] of the highest one moves from `lost` to `reordered`. A frame older than the
/// window cannot be told apart from a duplicate and is counted in `stale` only.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SequenceTracker {
    pub received: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicate: u64,
    pub stale: u64,
    /// Highest sequence number seen.
    pub highest: Option<u64>,
    /// Set when counting starts at a known first number (gaps before the first frame count as lost).
    #[serde(skip)]
    expect_first: Option<u64>,
    /// Bit i set: `highest - i` was seen.
    #[serde(skip)]
    seen: u128,
}

/// What [`SequenceTracker::handle_seq`] decided about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    InOrder,
    /// Newer than every frame so far, with this many numbers skipped.
    Gap(u64),
    Reordered,
    Duplicate,
    Stale,
}

impl SequenceTracker {
    /// A tracker that takes the first number it sees as the start.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker that expects `first` first: numbers skipped before the first frame count as lost.
    pub fn expecting(first: u64) -> Self {
        SequenceTracker { expect_first: Some(first), ..Self::default() }
    }

    /// Records one received sequence number.
    pub fn handle_seq(&mut self, seq: u64) -> SeqVerdict {
        let Some(highest) = self.highest else {
            let skipped = self.expect_first.map_or(0, |f| seq.saturating_sub(f));
            self.highest = Some(seq);
            self.seen = 1;
            self.received += 1;
            self.lost += skipped;
            return if skipped == 0 { SeqVerdict::InOrder } else { SeqVerdict::Gap(skipped) };
        };
        if seq > highest {
            let skipped = seq - highest - 1;
            let shift = seq - highest;
            self.seen = if shift >= 128 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = Some(seq);
            self.received += 1;
            self.lost += skipped;
            return if skipped == 0 { SeqVerdict::InOrder } else { SeqVerdict::Gap(skipped) };
        }
        let behind = highest - seq;
        if behind >= TRACKER_WINDOW {
            self.stale += 1;
            return SeqVerdict::Stale;
        }
        let bit = 1u128 << behind;
        if self.seen & bit != 0 {
            self.duplicate += 1;
            return SeqVerdict::Duplicate;
        }
        self.seen |= bit;
        self.received += 1;
        self.reordered += 1;
        self.lost = self.lost.saturating_sub(1);
        SeqVerdict::Reordered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(w: u16, h: u16, seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        render(w, h, seq, 1_700_000_000_000_000 + seq, 7, &mut out).unwrap();
        out
    }

    #[test]
    fn round_trip_carries_every_field() {
        let mut out = Vec::new();
        render(320, 240, 42, 1_234_567, 0xDEAD_BEEF, &mut out).unwrap();
        assert_eq!(out.len(), 230_400);
        assert_eq!(
            inspect(&out).unwrap(),
            PatternInfo { width: 320, height: 240, seq: 42, send_time_us: 1_234_567, tag: 0xDEAD_BEEF }
        );
    }

    #[test]
    fn consecutive_frames_differ_outside_the_header() {
        let (a, b) = (frame(64, 48, 1), frame(64, 48, 2));
        let differing = a[PATTERN_HEADER_LEN..].iter().zip(&b[PATTERN_HEADER_LEN..]).filter(|(x, y)| x != y);
        // Bars move and the band moves: a good share of the picture changes, not just a pixel or two.
        assert!(differing.count() > a.len() / 10);
    }

    #[test]
    fn bad_inputs_get_typed_errors() {
        assert_eq!(
            render(3, 3, 0, 0, 0, &mut Vec::new()),
            Err(PatternError::FrameTooSmall { width: 3, height: 3 })
        );
        assert!(render(11, 1, 0, 0, 0, &mut Vec::new()).is_ok());
        assert_eq!(inspect(&[0; 10]), Err(PatternError::TooShort { len: 10 }));
        assert_eq!(inspect(&[0; 64]), Err(PatternError::BadMagic { found: [0; 4] }));
        let f = frame(16, 16, 3);
        assert_eq!(
            inspect(&f[..f.len() - 3]),
            Err(PatternError::SizeMismatch { width: 16, height: 16, len: 765 })
        );
        let mut g = f.clone();
        g[500] ^= 0x80;
        assert!(matches!(inspect(&g), Err(PatternError::ChecksumMismatch { .. })));
    }

    #[test]
    fn render_reuses_the_buffer() {
        let mut out = Vec::new();
        render(64, 64, 0, 0, 0, &mut out).unwrap();
        let cap = out.capacity();
        render(64, 64, 1, 0, 0, &mut out).unwrap();
        assert_eq!((out.len(), out.capacity()), (64 * 64 * 3, cap));
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test may read the clock; the library never does
    fn render_and_inspect_a_vga_frame_quickly() {
        // Not a benchmark (debug builds are slow); a guard that the cost stays about one pass over the frame.
        let mut out = Vec::new();
        let n = 20u32;
        let start = std::time::Instant::now();
        for seq in 0..n as u64 {
            render(640, 480, seq, seq, 1, &mut out).unwrap();
            inspect(&out).unwrap();
        }
        let per = start.elapsed() / n;
        eprintln!("640x480 render + inspect: {per:?} per frame");
        assert!(per < std::time::Duration::from_millis(50), "{per:?}");
    }

    #[test]
    fn tracker_counts_gaps_reorders_and_duplicates() {
        let mut t = SequenceTracker::expecting(0);
        let verdicts: Vec<_> = [0, 1, 3, 2, 2, 6, 4, 200, 5].iter().map(|&s| t.handle_seq(s)).collect();
        use SeqVerdict::*;
        assert_eq!(
            verdicts,
            [InOrder, InOrder, Gap(1), Reordered, Duplicate, Gap(2), Reordered, Gap(193), Stale]
        );
        assert_eq!((t.received, t.lost, t.reordered, t.duplicate, t.stale), (7, 194, 2, 1, 1));
        assert_eq!(t.highest, Some(200));

        let mut late_start = SequenceTracker::expecting(0);
        assert_eq!(late_start.handle_seq(3), Gap(3));
        let mut any_start = SequenceTracker::new();
        assert_eq!(any_start.handle_seq(3), InOrder);
        assert_eq!(any_start.handle_seq(u64::MAX), Gap(u64::MAX - 4));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn proptest_render_inspect_round_trip(
            w in 1u16..80, h in 1u16..60, seq: u64, t: u64, tag: u32,
        ) {
            let mut out = Vec::new();
            match render(w, h, seq, t, tag, &mut out) {
                Err(e) => prop_assert!((w as usize * h as usize) < MIN_PIXELS, "{e}"),
                Ok(()) => prop_assert_eq!(
                    inspect(&out).unwrap(),
                    PatternInfo { width: w, height: h, seq, send_time_us: t, tag }
                ),
            }
        }

        #[test]
        fn proptest_any_flipped_byte_is_detected(
            w in 4u16..64, h in 3u16..48, seq: u64, pos in any::<prop::sample::Index>(), flip in 1u8..=255,
        ) {
            let mut out = Vec::new();
            render(w, h, seq, 99, 5, &mut out).unwrap();
            let i = pos.index(out.len());
            out[i] ^= flip;
            prop_assert!(inspect(&out).is_err());
        }

        /// The lean renderer draws the same bytes as the reference and returns the CRC a pass would give.
        #[test]
        fn proptest_renderer_matches_render(
            w in 1u16..80, h in 1u16..60, seqs in prop::collection::vec(any::<u64>(), 1..4), t: u64, tag: u32,
            prefix in prop::collection::vec(any::<u8>(), 0..30),
        ) {
            let Ok(mut r) = PatternRenderer::new(w, h) else {
                prop_assert!((w as usize * h as usize) < MIN_PIXELS);
                return Ok(());
            };
            let mut out = bytes::BytesMut::new();
            for seq in seqs {
                out.clear();
                out.extend_from_slice(&prefix);
                let crc = r.render_append(seq, t, tag, crc32c(&prefix), &mut out);
                let mut want = Vec::new();
                render(w, h, seq, t, tag, &mut want).unwrap();
                prop_assert_eq!(&out[prefix.len()..], &want[..]);
                prop_assert_eq!(crc, crc32c(&out));
                prop_assert_eq!(r.frame_len(), want.len());
            }
        }

        #[test]
        fn proptest_tracker_matches_a_set_model(seqs in prop::collection::vec(0u64..100, 0..200)) {
            // Model: with a window larger than the range, every number is judged exactly.
            let mut t = SequenceTracker::expecting(0);
            let mut seen = std::collections::BTreeSet::new();
            for &s in &seqs {
                t.handle_seq(s);
                seen.insert(s);
            }
            let dups = seqs.len() - seen.len();
            prop_assert_eq!(t.received as usize, seen.len());
            prop_assert_eq!(t.duplicate as usize, dups);
            let highest = seen.iter().next_back().copied();
            prop_assert_eq!(t.highest, highest);
            let missing = highest.map_or(0, |h| h + 1 - seen.len() as u64);
            prop_assert_eq!(t.lost, missing);
        }
    }

    /// A pattern check as the receiver calls it: payload, where the pixels start, the verified payload CRC.
    type Check = Box<dyn FnMut(&[u8], usize, u32) -> Result<PatternInfo, PatternError>>;

    /// The property of the derived check: whatever `check(payload, pixels_at, crc32c(payload))` gives is
    /// what `inspect` gives, for frames intact or with any byte changed, two frames of different sizes in
    /// turn through the same `check` (so an operator cached for one size must not serve the other).
    fn checker_property(make: impl Fn() -> Check) -> Result<(), String> {
        use proptest::test_runner::{Config, TestRunner};
        let config = Config { cases: 64, failure_persistence: None, ..Config::default() };
        let frame = (4u16..64, 3u16..48, any::<u64>(), any::<prop::sample::Index>(), any::<u8>());
        let strategy = (prop::collection::vec(any::<u8>(), 0..30), frame.clone(), frame);
        TestRunner::new(config)
            .run(&strategy, |(prefix, first, second)| {
                let mut check = make();
                for (w, h, seq, pos, flip) in [first, second] {
                    let mut payload = prefix.clone();
                    let mut frame = Vec::new();
                    render(w, h, seq, 99, 5, &mut frame).unwrap();
                    payload.extend_from_slice(&frame);
                    let i = prefix.len() + pos.index(frame.len());
                    payload[i] ^= flip;
                    let got = check(&payload, prefix.len(), crc32c(&payload));
                    prop_assert_eq!(&got, &inspect(&payload[prefix.len()..]));
                    // The cached operator serves the next frame of the same size.
                    prop_assert_eq!(check(&payload, prefix.len(), crc32c(&payload)), got);
                }
                Ok(())
            })
            .map_err(|e| e.to_string())
    }

    /// The derived check gives what `inspect` gives (the payload CRC being the one of the bytes as they are,
    /// as a codec would have verified it).
    #[test]
    fn proptest_checker_matches_inspect() {
        checker_property(|| {
            let mut c = PatternChecker::new();
            Box::new(move |p, at, crc| c.inspect_verified(p, at, crc))
        })
        .unwrap();
    }

    /// A deliberately broken checker, which keeps the operator of the first frame's size for every later
    /// frame, is caught.
    #[test]
    fn the_checker_property_catches_a_stale_cached_operator() {
        let broken = || -> Check {
            let mut cached: Option<ZerosOp> = None;
            Box::new(move |payload, at, crc| {
                let pixels = &payload[at..];
                let (info, expected) = check_fields(pixels)?;
                let op = cached.get_or_insert_with(|| ZerosOp::new(pixels.len() - PATTERN_HEADER_LEN));
                let head = crc32c(&payload[..at + PATTERN_HEADER_LEN]) ^ crc32c(&pixels[..CHECKSUM_OFFSET]);
                let actual = crc ^ op.apply(head);
                if expected != actual {
                    return Err(PatternError::ChecksumMismatch { expected, actual });
                }
                Ok(info)
            })
        };
        assert!(checker_property(broken).is_err(), "a checker with a stale operator passed");
    }
}
