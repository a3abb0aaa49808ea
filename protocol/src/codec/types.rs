//! Packet types (ACIP-SPEC.md section 2). Unknown numbers are kept, never lost.

macro_rules! packet_types {
    ($( $(#[$m:meta])* $name:ident = $value:literal, )*) => {
        /// An ACIP packet type (`u16` BE at header offset 8). Numbers this crate does not know are kept in
        /// [`PacketType::Unknown`] so a dissector or a relay loses nothing.
        #[allow(non_camel_case_types)] // the spec's names, so a grep finds both
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(into = "u16", from = "u16")]
        pub enum PacketType {
            $( $(#[$m])* $name, )*
            /// A type number not in section 2.
            Unknown(u16),
        }

        impl PacketType {
            /// Every known type, in numeric order.
            pub const ALL: &'static [PacketType] = &[$(PacketType::$name,)*];

            /// The wire number.
            pub const fn to_u16(self) -> u16 {
                match self {
                    $(PacketType::$name => $value,)*
                    PacketType::Unknown(v) => v,
                }
            }

            /// The type for a wire number; unknown numbers become [`PacketType::Unknown`].
            pub const fn from_u16(v: u16) -> Self {
                match v {
                    $($value => PacketType::$name,)*
                    other => PacketType::Unknown(other),
                }
            }

            /// The spec's name, e.g. `IMAGE_FRAME`; `UNKNOWN` for unknown numbers.
            pub fn name(self) -> &'static str {
                match self {
                    $(PacketType::$name => stringify!($name),)*
                    PacketType::Unknown(_) => "UNKNOWN",
                }
            }
        }
    };
}

packet_types! {
    PROTOCOL_VERSION = 1,
    CRYPTO_CLIENT_HELLO = 1000,
    CRYPTO_CAPABILITIES = 1100,
    CRYPTO_PARAMETERS = 1101,
    CRYPTO_KEY_EXCHANGE_INIT = 1102,
    CRYPTO_KEY_EXCHANGE_RESP = 1103,
    CRYPTO_AUTH_CHALLENGE = 1104,
    CRYPTO_AUTH_RESPONSE = 1105,
    CRYPTO_AUTH_FAILED = 1106,
    CRYPTO_SERVER_AUTH_RESP = 1107,
    CRYPTO_HANDSHAKE_COMPLETE = 1108,
    CRYPTO_NO_ENCRYPTION = 1109,
    ENCRYPTED = 1200,
    CRYPTO_REKEY_REQUEST = 1201,
    CRYPTO_REKEY_RESPONSE = 1202,
    CRYPTO_REKEY_COMPLETE = 1203,
    SIZE_MESSAGE = 2000,
    AUDIO_MESSAGE = 2001,
    TEXT_MESSAGE = 2002,
    ERROR_MESSAGE = 2003,
    REMOTE_LOG = 2004,
    ASCII_FRAME = 3000,
    IMAGE_FRAME = 3001,
    IMAGE_FRAME_H265 = 3002,
    AUDIO_BATCH = 4000,
    AUDIO_OPUS_BATCH = 4001,
    CLIENT_CAPABILITIES = 5000,
    PING = 5001,
    PONG = 5002,
    CLIENT_JOIN = 5003,
    CLIENT_LEAVE = 5004,
    STREAM_START = 5005,
    STREAM_STOP = 5006,
    CLEAR_CONSOLE = 5007,
    SERVER_STATE = 5008,
}

impl PacketType {
    /// Handshake-class types are always sent plain, even after a key exists (section 2, column Enc = P):
    /// 1000, 1100-1109, 1201-1203.
    pub const fn is_handshake(self) -> bool {
        matches!(self.to_u16(), 1000 | 1100..=1109 | 1201..=1203)
    }

    /// ACDS discovery types (6000-6199): out of scope, kept as [`PacketType::Unknown`] but recognisable.
    pub const fn is_acds(self) -> bool {
        matches!(self.to_u16(), 6000..=6199)
    }

    /// Whether this number is one of section 2's types.
    pub const fn is_known(self) -> bool {
        !matches!(self, PacketType::Unknown(_))
    }
}

impl From<u16> for PacketType {
    fn from(v: u16) -> Self {
        PacketType::from_u16(v)
    }
}

impl From<PacketType> for u16 {
    fn from(t: PacketType) -> Self {
        t.to_u16()
    }
}

impl std::fmt::Display for PacketType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name(), self.to_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_unknowns_are_kept() {
        for &t in PacketType::ALL {
            assert_eq!(PacketType::from_u16(t.to_u16()), t);
        }
        for v in 0..=u16::MAX {
            assert_eq!(PacketType::from_u16(v).to_u16(), v);
        }
        assert_eq!(PacketType::from_u16(6190), PacketType::Unknown(6190));
        assert!(PacketType::from_u16(6190).is_acds());
        assert!(PacketType::CRYPTO_REKEY_COMPLETE.is_handshake());
        assert!(!PacketType::ENCRYPTED.is_handshake());
        assert_eq!(PacketType::PING.to_string(), "PING(5001)");
    }
}
