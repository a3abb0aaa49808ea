//! Media payloads: IMAGE_FRAME (ACIP-SPEC.md 3.7), IMAGE_FRAME_H265 (3.8), ASCII_FRAME (3.9), AUDIO_BATCH
//! (3.10), AUDIO_OPUS_BATCH (3.11). Bulk data stays a `Bytes` slice of the received packet (`decode_bytes`).

use std::io::Read;

use bytes::{Buf, BufMut, Bytes};

use super::payload_boilerplate;
use crate::codec::validate::check_size;
use crate::codec::{CodecError, Packet, PacketType, SizeRule};
use crate::crc::crc32c;

fn range(
    packet_type: PacketType,
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), CodecError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(CodecError::OutOfRange { packet_type, field, value, min, max })
    }
}

fn mismatch(packet_type: PacketType, field: &'static str, declared: u64, actual: usize) -> CodecError {
    CodecError::FieldMismatch { packet_type, field, declared, actual: actual as u64 }
}

/// IMAGE_FRAME (3.7): a 24-byte header and RGB24 pixels, client to server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageFrame {
    /// Pixels, 1..=8192.
    pub width: u32,
    /// Pixels, 1..=8192.
    pub height: u32,
    /// 1 = RGB24 (what every sender uses); the server accepts 1..=4.
    pub pixel_format: u32,
    /// Sent 0; ignored by the server (there is no decompression path).
    pub compressed_size: u32,
    /// Sent 0; not checked.
    pub checksum: u32,
    /// Sent 0.
    pub timestamp: u32,
    /// Row-major RGB triplets; at most `width * height * 3` bytes are accepted.
    pub pixels: Bytes,
}

impl ImageFrame {
    pub const HEADER_LEN: usize = 24;
    pub const MAX_DIMENSION: u32 = 8192;
    pub const RGB24: u32 = 1;
    pub const MAX_PIXEL_FORMAT: u32 = 4;

    /// An RGB24 frame as the C client sends it (the other header words 0).
    pub fn rgb24(width: u32, height: u32, pixels: impl Into<Bytes>) -> Self {
        ImageFrame {
            width,
            height,
            pixel_format: Self::RGB24,
            compressed_size: 0,
            checksum: 0,
            timestamp: 0,
            pixels: pixels.into(),
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(Self::HEADER_LEN + self.pixels.len());
        for w in
            [self.width, self.height, self.pixel_format, self.compressed_size, self.checksum, self.timestamp]
        {
            out.put_u32(w);
        }
        out.put_slice(&self.pixels);
    }

    /// Decodes a copy of `payload`; prefer [`ImageFrame::decode_bytes`], which does not copy the pixels.
    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        Self::decode_bytes(&Bytes::copy_from_slice(payload))
    }

    /// Decodes with the server's checks (dimensions, pixel format, pixels within `width * height * 3`).
    /// `pixels` is a slice of `payload`: no copy.
    pub fn decode_bytes(payload: &Bytes) -> Result<Self, CodecError> {
        let t = Self::PACKET_TYPE;
        check_size(t, payload.len(), SizeRule::AtLeast(Self::HEADER_LEN))?;
        let mut r = &payload[..Self::HEADER_LEN];
        let (width, height, pixel_format) = (r.get_u32(), r.get_u32(), r.get_u32());
        range(t, "width", width.into(), 1, Self::MAX_DIMENSION.into())?;
        range(t, "height", height.into(), 1, Self::MAX_DIMENSION.into())?;
        range(t, "pixel_format", pixel_format.into(), 1, Self::MAX_PIXEL_FORMAT.into())?;
        let max = Self::HEADER_LEN + width as usize * height as usize * 3;
        check_size(t, payload.len(), SizeRule::Between(Self::HEADER_LEN, max))?;
        Ok(ImageFrame {
            width,
            height,
            pixel_format,
            compressed_size: r.get_u32(),
            checksum: r.get_u32(),
            timestamp: r.get_u32(),
            pixels: payload.slice(Self::HEADER_LEN..),
        })
    }
}
payload_boilerplate!(ImageFrame, PacketType::IMAGE_FRAME);

/// IMAGE_FRAME_H265 (3.8, HEAD only): `[flags u8][width u16][height u16][HEVC bitstream]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageFrameH265 {
    pub flags: u8,
    /// Pixels, 1..=8192.
    pub width: u16,
    /// Pixels, 1..=8192.
    pub height: u16,
    pub data: Bytes,
}

impl ImageFrameH265 {
    pub const HEADER_LEN: usize = 5;

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(Self::HEADER_LEN + self.data.len());
        out.put_u8(self.flags);
        out.put_u16(self.width);
        out.put_u16(self.height);
        out.put_slice(&self.data);
    }

    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        Self::decode_bytes(&Bytes::copy_from_slice(payload))
    }

    /// Decodes without copying the bitstream.
    pub fn decode_bytes(payload: &Bytes) -> Result<Self, CodecError> {
        let t = Self::PACKET_TYPE;
        check_size(t, payload.len(), SizeRule::AtLeast(Self::HEADER_LEN))?;
        let mut r = &payload[..Self::HEADER_LEN];
        let (flags, width, height) = (r.get_u8(), r.get_u16(), r.get_u16());
        range(t, "width", width.into(), 1, ImageFrame::MAX_DIMENSION.into())?;
        range(t, "height", height.into(), 1, ImageFrame::MAX_DIMENSION.into())?;
        Ok(ImageFrameH265 { flags, width, height, data: payload.slice(Self::HEADER_LEN..) })
    }
}
payload_boilerplate!(ImageFrameH265, PacketType::IMAGE_FRAME_H265);

/// ASCII_FRAME (3.9): a 24-byte header and the frame text (UTF-8 with ANSI escapes), server to client.
///
/// `checksum` (CRC-32C of the uncompressed text) and the size fields are derived on encode and verified on
/// decode. A compressed frame keeps its zstd bytes in `compressed`, so it re-encodes byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsciiFrame {
    /// Characters, 1..=16384.
    pub width: u32,
    /// Characters, 1..=16384.
    pub height: u32,
    /// [`AsciiFrame::HAS_COLOR`], [`AsciiFrame::IS_COMPRESSED`], ... as on the wire. IS_COMPRESSED
    /// without a compressed body (compressed_size 0) means plain text, as for the C receiver.
    pub flags: u32,
    /// The uncompressed text.
    pub text: Bytes,
    /// The zstd frame sent for `text`, when the frame is compressed.
    pub compressed: Option<Bytes>,
}

impl AsciiFrame {
    pub const HEADER_LEN: usize = 24;
    pub const MAX_DIMENSION: u32 = 16384;
    /// The receiver's cap on `original_size`.
    pub const MAX_ORIGINAL_SIZE: usize = 256 * 1024 * 1024;
    pub const HAS_COLOR: u32 = 0x01;
    pub const IS_COMPRESSED: u32 = 0x02;
    pub const RLE: u32 = 0x04;
    pub const STRETCHED: u32 = 0x08;

    /// An uncompressed frame with flags 0, as both C servers send.
    pub fn new(width: u32, height: u32, text: impl Into<Bytes>) -> Self {
        AsciiFrame { width, height, flags: 0, text: text.into(), compressed: None }
    }

    /// The same frame compressed with zstd at `level` (1..=9 in the C server), IS_COMPRESSED set.
    pub fn with_zstd(mut self, level: i32) -> Self {
        // Compressing an in-memory buffer fails only on allocation failure; zstd clamps the level.
        let z = zstd::bulk::compress(&self.text, level).expect("zstd compression of an in-memory buffer");
        self.compressed = Some(z.into());
        self.flags |= Self::IS_COMPRESSED;
        self
    }

    /// CRC-32C of the uncompressed text: the `checksum` field.
    pub fn checksum(&self) -> u32 {
        crc32c(&self.text)
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let body = self.compressed.as_ref().unwrap_or(&self.text);
        out.reserve(Self::HEADER_LEN + body.len());
        out.put_u32(self.width);
        out.put_u32(self.height);
        out.put_u32(self.text.len() as u32);
        out.put_u32(self.compressed.as_ref().map_or(0, |c| c.len() as u32));
        out.put_u32(self.checksum());
        let compressed_bit = if self.compressed.is_some() { Self::IS_COMPRESSED } else { 0 };
        out.put_u32(self.flags | compressed_bit);
        out.put_slice(body);
    }

    /// Decodes a copy of `payload` with the receiver's 256 MiB text cap.
    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        Self::decode_with_limit(&Bytes::copy_from_slice(payload), Self::MAX_ORIGINAL_SIZE)
    }

    /// Decodes with the receiver's checks, accepting at most `max_text` bytes of text (and never more than
    /// 256 MiB). Plain text is a slice of `payload`; compressed text is inflated into a buffer that grows
    /// with the actual output and stops at the declared `original_size`, with zstd's window capped to it.
    pub fn decode_with_limit(payload: &Bytes, max_text: usize) -> Result<Self, CodecError> {
        let t = Self::PACKET_TYPE;
        check_size(t, payload.len(), SizeRule::AtLeast(Self::HEADER_LEN))?;
        let mut r = &payload[..Self::HEADER_LEN];
        let (width, height) = (r.get_u32(), r.get_u32());
        let (original_size, compressed_size, checksum, flags) =
            (r.get_u32(), r.get_u32(), r.get_u32(), r.get_u32());
        range(t, "width", width.into(), 1, Self::MAX_DIMENSION.into())?;
        range(t, "height", height.into(), 1, Self::MAX_DIMENSION.into())?;
        let cap = max_text.min(Self::MAX_ORIGINAL_SIZE) as u64;
        range(t, "original_size", original_size.into(), 0, cap)?;
        let body = payload.slice(Self::HEADER_LEN..);
        let (text, compressed) = if flags & Self::IS_COMPRESSED != 0 && compressed_size > 0 {
            if body.len() != compressed_size as usize {
                return Err(mismatch(t, "compressed_size", compressed_size.into(), body.len()));
            }
            let text = inflate(&body, original_size as usize)?;
            if text.len() != original_size as usize {
                return Err(mismatch(t, "original_size", original_size.into(), text.len()));
            }
            (Bytes::from(text), Some(body))
        } else {
            if compressed_size != 0 {
                // Without IS_COMPRESSED the C receiver ignores the field; rejected here so that decoding
                // stays lossless.
                return Err(mismatch(t, "compressed_size", compressed_size.into(), 0));
            }
            if body.len() != original_size as usize {
                return Err(mismatch(t, "original_size", original_size.into(), body.len()));
            }
            (body, None)
        };
        let actual = crc32c(&text);
        if actual != checksum {
            return Err(CodecError::ChecksumMismatch { packet_type: t, expected: checksum, actual });
        }
        Ok(AsciiFrame { width, height, flags, text, compressed })
    }
}
payload_boilerplate!(AsciiFrame, PacketType::ASCII_FRAME);

/// Inflates one zstd frame, producing at most `expected + 1` bytes (one more than declared, so that an
/// overlong frame is detected without inflating it further).
fn inflate(data: &[u8], expected: usize) -> Result<Vec<u8>, CodecError> {
    let err = |e: std::io::Error| CodecError::Decompress {
        packet_type: PacketType::ASCII_FRAME,
        reason: e.to_string(),
    };
    let mut dec = zstd::stream::read::Decoder::with_buffer(data).map_err(err)?.single_frame();
    // zstd's smallest window is 1 KiB (log 10); a sender that knows the size needs no window larger than the
    // text, so this bounds the decoder's own allocation too (its default allows 128 MiB).
    let window_log = (usize::BITS - expected.max(1).leading_zeros()).clamp(10, 31);
    dec.window_log_max(window_log).map_err(err)?;
    let mut out = Vec::with_capacity(expected.min(1 << 20));
    dec.take(expected as u64 + 1).read_to_end(&mut out).map_err(err)?;
    Ok(out)
}

/// AUDIO_BATCH (3.10), in the layout the receivers follow: a 16-byte header and i32 BE samples.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AudioBatch {
    pub batch_count: u32,
    /// 8000, 16000, 24000, 32000, 44100, 48000, 96000 or 192000.
    pub sample_rate: u32,
    /// 1..=8.
    pub channels: u32,
    /// Each `round(f * 2147483647)` of a float sample in -1.0..=1.0. `total_samples` is their count.
    pub samples: Vec<i32>,
}

impl AudioBatch {
    pub const HEADER_LEN: usize = 16;
    pub const SAMPLE_RATES: [u32; 8] = [8000, 16000, 24000, 32000, 44100, 48000, 96000, 192000];
    pub const MAX_CHANNELS: u32 = 8;

    /// A batch from float samples (clamped to -1.0..=1.0).
    pub fn from_f32(batch_count: u32, sample_rate: u32, channels: u32, samples: &[f32]) -> Self {
        let samples =
            samples.iter().map(|f| (f.clamp(-1.0, 1.0) as f64 * 2_147_483_647.0).round() as i32).collect();
        AudioBatch { batch_count, sample_rate, channels, samples }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(Self::HEADER_LEN + 4 * self.samples.len());
        out.put_u32(self.batch_count);
        out.put_u32(self.samples.len() as u32);
        out.put_u32(self.sample_rate);
        out.put_u32(self.channels);
        for &s in &self.samples {
            out.put_i32(s);
        }
    }

    /// Decodes with the client's checks (rate, channels, exact length 16 + 4 * total_samples).
    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        let t = Self::PACKET_TYPE;
        check_size(t, payload.len(), SizeRule::AtLeast(Self::HEADER_LEN))?;
        let mut r = payload;
        let (batch_count, total_samples, sample_rate, channels) =
            (r.get_u32(), r.get_u32(), r.get_u32(), r.get_u32());
        if !Self::SAMPLE_RATES.contains(&sample_rate) {
            return Err(CodecError::Unsupported {
                packet_type: t,
                field: "sample_rate",
                value: sample_rate.into(),
            });
        }
        range(t, "channels", channels.into(), 1, Self::MAX_CHANNELS.into())?;
        let declared = 4 * u64::from(total_samples);
        if declared != r.len() as u64 {
            return Err(mismatch(t, "4 x total_samples", declared, r.len()));
        }
        let samples = r.chunks_exact(4).map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(AudioBatch { batch_count, sample_rate, channels, samples })
    }
}
payload_boilerplate!(AudioBatch, PacketType::AUDIO_BATCH);

/// AUDIO_OPUS_BATCH (3.11): a 16-byte header, one u16 BE size per frame, then the Opus frames.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AudioOpusBatch {
    /// 48000 from real senders.
    pub sample_rate: u32,
    /// 20 from real senders.
    pub frame_duration_ms: u32,
    pub reserved: u32,
    /// 1..=1000 Opus frames (mono, 48 kHz), each at most 65535 bytes.
    pub frames: Vec<Bytes>,
}

impl AudioOpusBatch {
    pub const HEADER_LEN: usize = 16;
    pub const MAX_FRAMES: u32 = 1000;
    pub const MAX_SAMPLES_PER_FRAME: u64 = 4096;

    /// 48 kHz, 20 ms frames, as the C sender.
    pub fn new(frames: Vec<Bytes>) -> Self {
        AudioOpusBatch { sample_rate: 48_000, frame_duration_ms: 20, reserved: 0, frames }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let data: usize = self.frames.iter().map(Bytes::len).sum();
        out.reserve(Self::HEADER_LEN + 2 * self.frames.len() + data);
        out.put_u32(self.sample_rate);
        out.put_u32(self.frame_duration_ms);
        out.put_u32(self.frames.len() as u32);
        out.put_u32(self.reserved);
        for f in &self.frames {
            out.put_u16(f.len() as u16);
        }
        for f in &self.frames {
            out.put_slice(f);
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        Self::decode_bytes(&Bytes::copy_from_slice(payload))
    }

    /// Decodes with the server's checks; each frame is a slice of `payload`.
    pub fn decode_bytes(payload: &Bytes) -> Result<Self, CodecError> {
        let t = Self::PACKET_TYPE;
        check_size(t, payload.len(), SizeRule::AtLeast(Self::HEADER_LEN))?;
        let mut r = &payload[..];
        let (sample_rate, frame_duration_ms, frame_count, reserved) =
            (r.get_u32(), r.get_u32(), r.get_u32(), r.get_u32());
        range(t, "frame_count", frame_count.into(), 1, Self::MAX_FRAMES.into())?;
        let per_frame = u64::from(sample_rate) * u64::from(frame_duration_ms) / 1000;
        range(t, "samples per frame", per_frame, 1, Self::MAX_SAMPLES_PER_FRAME)?;
        let sizes_end = Self::HEADER_LEN + 2 * frame_count as usize;
        check_size(t, payload.len(), SizeRule::AtLeast(sizes_end))?;
        let sizes: Vec<usize> = r[..2 * frame_count as usize]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]).into())
            .collect();
        let total: usize = sizes.iter().sum();
        if total != payload.len() - sizes_end {
            return Err(mismatch(t, "sum of frame sizes", total as u64, payload.len() - sizes_end));
        }
        let mut at = sizes_end;
        let frames = sizes
            .into_iter()
            .map(|n| {
                at += n;
                payload.slice(at - n..at)
            })
            .collect();
        Ok(AudioOpusBatch { sample_rate, frame_duration_ms, reserved, frames })
    }
}
payload_boilerplate!(AudioOpusBatch, PacketType::AUDIO_OPUS_BATCH);
