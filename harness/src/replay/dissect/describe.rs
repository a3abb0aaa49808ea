//! Descriptions for the report: anomaly kinds of codec errors, fragment-gap buckets, assembly statistics
//! and one-line payload summaries for the timeline.

use super::*;

pub(super) fn codec_kind(e: &CodecError) -> AnomalyKind {
    match e {
        CodecError::CrcMismatch { .. } | CodecError::NonZeroCrcForEmpty { .. } => AnomalyKind::CrcMismatch,
        CodecError::BadMagic { .. } => AnomalyKind::BadMagic,
        CodecError::PacketTooLarge { .. } | CodecError::LengthSentinel { .. } => AnomalyKind::Oversize,
        CodecError::UnknownType(_) => AnomalyKind::UnknownType,
        CodecError::Truncated { .. } => AnomalyKind::TruncatedStream,
        _ => AnomalyKind::InvalidPayload,
    }
}

const GAP_BUCKETS: [(Duration, &str); 6] = [
    (Duration::from_micros(100), "a <0.1ms"),
    (Duration::from_millis(1), "b 0.1-1ms"),
    (Duration::from_millis(5), "c 1-5ms"),
    (Duration::from_millis(20), "d 5-20ms"),
    (Duration::from_millis(100), "e 20-100ms"),
    (Duration::from_secs(1), "f 100ms-1s"),
];

pub(super) fn gap_histogram(gaps: &[Duration], _threshold: Duration) -> BTreeMap<String, u64> {
    let mut h = BTreeMap::new();
    for g in gaps {
        let label = GAP_BUCKETS.iter().find(|(limit, _)| g < limit).map(|(_, l)| *l).unwrap_or("g >=1s");
        *h.entry(label.to_string()).or_default() += 1;
    }
    h
}

pub(super) fn assembly(times: &mut [Duration]) -> Option<AssemblyStats> {
    if times.is_empty() {
        return None;
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Some(AssemblyStats {
        multi_fragment: times.len() as u64,
        min_ms: ms(times[0]),
        median_ms: ms(times[times.len() / 2]),
        max_ms: ms(times[times.len() - 1]),
    })
}

/// A short description of a decoded payload for the timeline.
pub(super) fn describe(p: &Payload) -> String {
    match p {
        Payload::ProtocolVersion(v) => format!(
            "version {}.{} encryption mode {}",
            v.protocol_version, v.protocol_revision, v.supports_encryption
        ),
        Payload::CryptoCapabilities(c) => format!(
            "kex {:#x} auth {:#x} cipher {:#x}",
            c.supported_kex, c.supported_auth, c.supported_cipher
        ),
        Payload::CryptoParameters(c) => format!(
            "kex {} auth {} cipher {} verification {}",
            c.selected_kex, c.selected_auth, c.selected_cipher, c.verification_enabled
        ),
        Payload::AuthFailed(a) => format!("reason {:#04x}", a.reason),
        Payload::ErrorMessage(e) => format!("code {} {:?}", e.error_code, e.message),
        Payload::RemoteLog(r) => format!("level {} {:?}", r.log_level, r.message),
        Payload::AsciiFrame(a) => {
            format!("{}x{} text {} B flags {:#x}", a.width, a.height, a.text.len(), a.flags)
        }
        Payload::ImageFrame(i) => {
            format!("{}x{} format {} pixels {} B", i.width, i.height, i.pixel_format, i.pixels.len())
        }
        Payload::ImageFrameH265(i) => format!("{}x{} HEVC {} B", i.width, i.height, i.data.len()),
        Payload::AudioBatch(a) => format!("{} samples {} Hz", a.samples.len(), a.sample_rate),
        Payload::AudioOpusBatch(a) => format!("{} Opus frames", a.frames.len()),
        Payload::ClientCapabilities(c) => {
            format!(
                "{}x{} color level {} fps {} ({})",
                c.width, c.height, c.color_level, c.desired_fps, c.dialect
            )
        }
        Payload::ClientJoin(j) => format!("capabilities {:#x}", j.capabilities),
        Payload::ClientLeave(l) => format!("{:?}", l.reason),
        Payload::StreamStart(s) => format!("streams {:#x}", s.streams),
        Payload::StreamStop(s) => format!("streams {:#x}", s.streams),
        Payload::ServerState(s) => {
            format!("{} connected, {} active", s.connected_client_count, s.active_client_count)
        }
        Payload::Raw(p) | Payload::Unknown(p) => format!("{} B", p.payload.len()),
        _ => String::new(),
    }
}
