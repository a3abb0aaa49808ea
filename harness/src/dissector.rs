//! A Wireshark Lua dissector for ACIP (ACIP-SPEC.md 1-3, 4.5, 6), generated from the `acip` crate's own
//! tables so that the dissector and the codec never disagree: the packet types and their names
//! ([`PacketType::ALL`]), the header layout ([`HEADER`], checked against [`Header::to_bytes`]), the magic,
//! the size limit, the default ports, and the payload layouts ([`layouts`], each checked against the
//! codec's encoder in the tests below).
//!
//! [`lua`] fills the placeholders of a fixed Lua template ([`TEMPLATE`]); the Lua side holds only the
//! generic machinery (CRC-32C, TCP reassembly, walking a layout). Load the result with
//! `wireshark -X lua_script:acip.lua` or `tshark -X lua_script:acip.lua`.

use std::fmt::Write as _;

use acip::cli::{DEFAULT_TCP_PORT, DEFAULT_WS_PORT};
use acip::codec::payloads::{ClientCapabilities, ErrorMessage};
use acip::codec::{HEADER_LEN, MAGIC};
use acip::crypto::session::{MAC_LEN, NONCE_LEN};
use acip::{Dialect, Limits, PacketType};

/// CRC-32C (Castagnoli), reflected (ACIP-SPEC.md 1.2). `acip::crc` delegates to the `crc32c` crate, which
/// names no constant; the tests check a table built from this one against `acip::crc::crc32c`.
const CRC32C_POLY: u32 = 0x82F6_3B78;

/// How the dissector shows a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A big-endian unsigned integer of 1, 2, 4 or 8 bytes, shown in decimal.
    Dec(usize),
    /// The same, shown in hex (magic, flags, checksums).
    Hex(usize),
    /// The header's u16 packet type, named from [`PacketType::ALL`].
    PacketType,
    /// ERROR_MESSAGE's u32 error code, named from [`ERROR_CODES`].
    ErrorCode,
    /// Opaque bytes of a fixed size.
    Bytes(usize),
    /// NUL-padded text of a fixed size.
    Text(usize),
    /// Opaque bytes to the end of the payload.
    BytesToEnd,
    /// Text to the end of the payload.
    TextToEnd,
}

impl Kind {
    /// Bytes on the wire; `None` for the kinds that run to the end of the payload.
    const fn size(self) -> Option<usize> {
        match self {
            Kind::Dec(n) | Kind::Hex(n) | Kind::Bytes(n) | Kind::Text(n) => Some(n),
            Kind::PacketType => Some(2),
            Kind::ErrorCode => Some(4),
            Kind::BytesToEnd | Kind::TextToEnd => None,
        }
    }

    /// The `ProtoField` constructor call for a field `abbrev` labelled `name`.
    fn proto_field(self, abbrev: &str, name: &str) -> String {
        let (a, n) = (lua_str(abbrev), lua_str(name));
        let uint = |bytes: usize, base: &str| format!("ProtoField.uint{}({a}, {n}, base.{base})", bytes * 8);
        match self {
            Kind::Dec(bytes) => uint(bytes, "DEC"),
            Kind::Hex(bytes) => uint(bytes, "HEX"),
            Kind::PacketType => format!("ProtoField.uint16({a}, {n}, base.DEC, TYPE_NAMES)"),
            Kind::ErrorCode => format!("ProtoField.uint32({a}, {n}, base.DEC, ERROR_CODES)"),
            Kind::Bytes(_) | Kind::BytesToEnd => format!("ProtoField.bytes({a}, {n})"),
            Kind::Text(_) => format!("ProtoField.stringz({a}, {n})"),
            Kind::TextToEnd => format!("ProtoField.string({a}, {n})"),
        }
    }
}

/// One field of the header or of a payload layout, in wire order.
#[derive(Debug, Clone, Copy)]
struct Field {
    /// The display-filter name, e.g. `acip.image.width`.
    abbrev: &'static str,
    name: &'static str,
    kind: Kind,
}

const fn f(abbrev: &'static str, name: &'static str, kind: Kind) -> Field {
    Field { abbrev, name, kind }
}

/// The 22-byte header (ACIP-SPEC.md 1.1), in the order of [`Header::to_bytes`](acip::Header::to_bytes).
const HEADER: [Field; 5] = [
    f("acip.magic", "Magic", Kind::Hex(8)),
    f("acip.type", "Type", Kind::PacketType),
    f("acip.length", "Length", Kind::Dec(4)),
    f("acip.crc", "CRC-32C", Kind::Hex(4)),
    f("acip.client_id", "Client ID", Kind::Dec(4)),
];

/// ERROR_MESSAGE codes the codec names (ACIP-SPEC.md 3.12).
const ERROR_CODES: [(u32, &str); 6] = [
    (ErrorMessage::NETWORK, "NETWORK"),
    (ErrorMessage::NETWORK_BIND, "NETWORK_BIND"),
    (ErrorMessage::NETWORK_PROTOCOL, "NETWORK_PROTOCOL"),
    (ErrorMessage::CRYPTO, "CRYPTO"),
    (ErrorMessage::CRYPTO_AUTH, "CRYPTO_AUTH"),
    (ErrorMessage::INVALID_PARAM, "INVALID_PARAM"),
];

const PROTOCOL_VERSION: &[Field] = &[
    f("acip.version.version", "Protocol version", Kind::Dec(2)),
    f("acip.version.revision", "Protocol revision", Kind::Dec(2)),
    f("acip.version.encryption", "Supports encryption (crypto mode)", Kind::Dec(1)),
    f("acip.version.compression", "Compression algorithms", Kind::Dec(1)),
    f("acip.version.compression_threshold", "Compression threshold", Kind::Dec(1)),
    f("acip.version.features", "Feature flags", Kind::Hex(2)),
    f("acip.version.reserved", "Reserved", Kind::Bytes(7)),
];

const ENCRYPTED: &[Field] = &[
    f("acip.encrypted.nonce", "Nonce", Kind::Bytes(NONCE_LEN)),
    f("acip.encrypted.mac", "MAC (Poly1305)", Kind::Bytes(MAC_LEN)),
    f("acip.encrypted.ciphertext", "Ciphertext (the inner packet, XSalsa20)", Kind::BytesToEnd),
];

const ERROR_MESSAGE: &[Field] = &[
    f("acip.error.code", "Error code", Kind::ErrorCode),
    f("acip.error.length", "Message length", Kind::Dec(4)),
    f("acip.error.message", "Message", Kind::TextToEnd),
];

const REMOTE_LOG: &[Field] = &[
    f("acip.log.level", "Log level", Kind::Dec(1)),
    f("acip.log.direction", "Direction", Kind::Dec(1)),
    f("acip.log.flags", "Flags", Kind::Hex(2)),
    f("acip.log.length", "Message length", Kind::Dec(4)),
    f("acip.log.message", "Message", Kind::TextToEnd),
];

const ASCII_FRAME: &[Field] = &[
    f("acip.ascii.width", "Width (characters)", Kind::Dec(4)),
    f("acip.ascii.height", "Height (characters)", Kind::Dec(4)),
    f("acip.ascii.original_size", "Original size", Kind::Dec(4)),
    f("acip.ascii.compressed_size", "Compressed size", Kind::Dec(4)),
    f("acip.ascii.checksum", "Checksum (CRC-32C of the text)", Kind::Hex(4)),
    f("acip.ascii.flags", "Flags", Kind::Hex(4)),
    f("acip.ascii.data", "Frame data", Kind::BytesToEnd),
];

const IMAGE_FRAME: &[Field] = &[
    f("acip.image.width", "Width (pixels)", Kind::Dec(4)),
    f("acip.image.height", "Height (pixels)", Kind::Dec(4)),
    f("acip.image.pixel_format", "Pixel format", Kind::Dec(4)),
    f("acip.image.compressed_size", "Compressed size", Kind::Dec(4)),
    f("acip.image.checksum", "Checksum", Kind::Hex(4)),
    f("acip.image.timestamp", "Timestamp", Kind::Dec(4)),
    f("acip.image.pixels", "Pixels (RGB24)", Kind::BytesToEnd),
];

const IMAGE_FRAME_H265: &[Field] = &[
    f("acip.h265.flags", "Flags", Kind::Hex(1)),
    f("acip.h265.width", "Width (pixels)", Kind::Dec(2)),
    f("acip.h265.height", "Height (pixels)", Kind::Dec(2)),
    f("acip.h265.data", "HEVC bitstream", Kind::BytesToEnd),
];

/// CLIENT_CAPABILITIES as both dialects start it; `head` appends [`CAPS_HEAD_EXTRA`] (ACIP-SPEC.md 3.4).
const CAPS_FEB: &[Field] = &[
    f("acip.caps.capabilities", "Capabilities (TERM_CAP bits)", Kind::Hex(4)),
    f("acip.caps.color_level", "Color level", Kind::Dec(4)),
    f("acip.caps.color_count", "Color count", Kind::Dec(4)),
    f("acip.caps.render_mode", "Render mode", Kind::Dec(4)),
    f("acip.caps.width", "Width (characters)", Kind::Dec(2)),
    f("acip.caps.height", "Height (characters)", Kind::Dec(2)),
    f("acip.caps.term_type", "TERM", Kind::Text(32)),
    f("acip.caps.colorterm", "COLORTERM", Kind::Text(32)),
    f("acip.caps.detection_reliable", "Detection reliable", Kind::Dec(1)),
    f("acip.caps.utf8_support", "UTF-8 support", Kind::Hex(4)),
    f("acip.caps.palette_type", "Palette type", Kind::Dec(4)),
    f("acip.caps.palette_custom", "Custom palette", Kind::Text(64)),
    f("acip.caps.desired_fps", "Desired fps", Kind::Dec(1)),
    f("acip.caps.color_filter", "Color filter", Kind::Dec(1)),
    f("acip.caps.wants_padding", "Wants padding", Kind::Dec(1)),
];

const CAPS_HEAD_EXTRA: &[Field] = &[
    f("acip.caps.codec_video", "Video codecs", Kind::Hex(4)),
    f("acip.caps.codec_audio", "Audio codecs", Kind::Hex(4)),
];

const STREAM_BITS: &[Field] = &[f("acip.streams", "Streams (0x1 video, 0x2 audio)", Kind::Hex(4))];

const SERVER_STATE: &[Field] = &[
    f("acip.state.connected", "Connected clients", Kind::Dec(4)),
    f("acip.state.active", "Active clients", Kind::Dec(4)),
    f("acip.state.reserved", "Reserved", Kind::Bytes(24)),
];

/// How one packet type's payload is laid out, for the payload lengths it applies to.
#[derive(Debug, Clone)]
struct Layout {
    packet_type: PacketType,
    /// Set where the size tells the dialects apart (CLIENT_CAPABILITIES); shown as `acip.dialect`.
    dialect: Option<Dialect>,
    /// Applies to payloads of exactly this length; `None`: to any payload holding the fixed-size fields.
    exact: Option<usize>,
    fields: Vec<Field>,
}

impl Layout {
    fn new(packet_type: PacketType, fields: &[Field]) -> Layout {
        // A layout without a to-the-end field has one size: anything else is not this layout.
        let exact = match fields.last().map(|f| f.kind.size()) {
            Some(Some(_)) => Some(fixed_len(fields)),
            _ => None,
        };
        Layout { packet_type, dialect: None, exact, fields: fields.to_vec() }
    }
}

/// Bytes taken by the fixed-size fields.
fn fixed_len(fields: &[Field]) -> usize {
    fields.iter().filter_map(|f| f.kind.size()).sum()
}

/// Every payload layout the dissector shows (ACIP-SPEC.md section 3; ENCRYPTED from 4.5).
fn layouts() -> Vec<Layout> {
    use PacketType as T;
    let caps = |dialect: Dialect, fields: Vec<Field>| Layout {
        packet_type: T::CLIENT_CAPABILITIES,
        dialect: Some(dialect),
        exact: Some(ClientCapabilities::len_for(dialect)),
        fields,
    };
    vec![
        Layout::new(T::PROTOCOL_VERSION, PROTOCOL_VERSION),
        Layout::new(T::ENCRYPTED, ENCRYPTED),
        Layout::new(T::ERROR_MESSAGE, ERROR_MESSAGE),
        Layout::new(T::REMOTE_LOG, REMOTE_LOG),
        Layout::new(T::ASCII_FRAME, ASCII_FRAME),
        Layout::new(T::IMAGE_FRAME, IMAGE_FRAME),
        Layout::new(T::IMAGE_FRAME_H265, IMAGE_FRAME_H265),
        caps(Dialect::Feb, CAPS_FEB.to_vec()),
        caps(Dialect::Head, [CAPS_FEB, CAPS_HEAD_EXTRA].concat()),
        Layout::new(T::STREAM_START, STREAM_BITS),
        Layout::new(T::STREAM_STOP, STREAM_BITS),
        Layout::new(T::SERVER_STATE, SERVER_STATE),
    ]
}

/// `harness dissector`: writes the Wireshark dissector.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the Lua dissector (the one format there is; load it with `-X lua_script:FILE` or copy it to
    /// Wireshark's personal plugins directory).
    #[arg(long)]
    pub lua: bool,
    /// Write it to this file instead of standard output.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// Runs `harness dissector`.
pub fn run(args: Args) -> crate::Result<std::process::ExitCode> {
    if !args.lua {
        return Err(crate::Error::Usage("say which dissector to write: --lua".into()));
    }
    let script = lua();
    match &args.out {
        Some(path) => std::fs::write(path, &script)
            .map_err(|source| crate::Error::Io { context: format!("writing {}", path.display()), source })?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(script.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|source| crate::Error::Io { context: "writing the dissector".into(), source })?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The complete Lua dissector script. Deterministic: the same `acip` tables give the same bytes.
pub fn lua() -> String {
    let layouts = layouts();
    let offset_of = |abbrev: &str| {
        let i = HEADER.iter().position(|f| f.abbrev == abbrev).unwrap_or(0);
        fixed_len(&HEADER[..i])
    };
    let replacements = [
        ("@@HEADER_LEN@@", HEADER_LEN.to_string()),
        ("@@MAGIC@@", MAGIC.to_be_bytes().iter().map(|b| format!("\\x{b:02x}")).collect()),
        ("@@TYPE_OFF@@", offset_of("acip.type").to_string()),
        ("@@LENGTH_OFF@@", offset_of("acip.length").to_string()),
        ("@@CRC_OFF@@", offset_of("acip.crc").to_string()),
        ("@@MAX_PACKET@@", Limits::default().max_packet.to_string()),
        ("@@CRC_POLY@@", format!("0x{CRC32C_POLY:08X}")),
        ("@@TCP_PORT@@", DEFAULT_TCP_PORT.to_string()),
        ("@@WS_PORT@@", DEFAULT_WS_PORT.to_string()),
        ("@@TYPE_NAMES@@", type_names()),
        ("@@ERROR_CODES@@", error_codes()),
        ("@@HEADER_FIELDS@@", field_list(&HEADER)),
        ("@@FIELDS@@", proto_fields(&layouts)),
        ("@@LAYOUTS@@", lua_layouts(&layouts)),
    ];
    let mut script = TEMPLATE.to_owned();
    for (placeholder, value) in replacements {
        script = script.replace(placeholder, &value);
    }
    script
}

/// A Lua string literal (the texts here are ASCII; quotes and backslashes are escaped anyway).
fn lua_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:03}");
                }
            }
        }
    }
    out.push('"');
    out
}

/// `[number] = "NAME",` for every packet type, in numeric order.
fn type_names() -> String {
    let mut s = String::new();
    for t in PacketType::ALL {
        let _ = writeln!(s, "  [{}] = {},", t.to_u16(), lua_str(t.name()));
    }
    s
}

fn error_codes() -> String {
    ERROR_CODES
        .iter()
        .map(|(code, name)| format!("[{code}] = {}", lua_str(name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `{ "abbrev", size }` entries of a field list (size 0: to the end of the payload).
fn field_list(fields: &[Field]) -> String {
    let entries: Vec<String> = fields
        .iter()
        .map(|f| format!("{{ {}, {} }}", lua_str(f.abbrev), f.kind.size().unwrap_or(0)))
        .collect();
    entries.join(", ")
}

/// One `field("abbrev", ProtoField...)` line per header and payload field, each declared once, in
/// first-use order.
fn proto_fields(layouts: &[Layout]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    let mut s = String::new();
    for field in HEADER.iter().chain(layouts.iter().flat_map(|l| &l.fields)) {
        if seen.contains(&field.abbrev) {
            continue;
        }
        seen.push(field.abbrev);
        let _ = writeln!(
            s,
            "field({}, {})",
            lua_str(field.abbrev),
            field.kind.proto_field(field.abbrev, field.name)
        );
    }
    s
}

/// `[type] = { layout, ... }` entries of the `LAYOUTS` table.
fn lua_layouts(layouts: &[Layout]) -> String {
    let mut s = String::new();
    for t in PacketType::ALL {
        let mine: Vec<&Layout> = layouts.iter().filter(|l| l.packet_type == *t).collect();
        if mine.is_empty() {
            continue;
        }
        let _ = writeln!(s, "  [{}] = {{ -- {}", t.to_u16(), t.name());
        for l in mine {
            let exact = l.exact.map_or("nil".to_owned(), |n| n.to_string());
            let dialect = l.dialect.map_or("nil".to_owned(), |d| lua_str(&d.to_string()));
            let _ = writeln!(
                s,
                "    {{ exact = {exact}, min = {}, dialect = {dialect},\n      fields = {{ {} }} }},",
                fixed_len(&l.fields),
                field_list(&l.fields)
            );
        }
        let _ = writeln!(s, "  }},");
    }
    s
}

/// The Lua side: fixed machinery with `@@NAME@@` placeholders that [`lua`] fills from the `acip` tables.
const TEMPLATE: &str = r#"-- ACIP (ascii-chat) dissector for Wireshark and tshark.
--
-- GENERATED by harness::dissector::lua() from the tables of the `acip` crate (packet types, header layout,
-- limits, payload layouts): regenerate it instead of editing it, so that the dissector and the codec never
-- disagree. ACIP-SPEC.md: header 1.1, CRC-32C 1.2, limits 1.3, packet types 2, payloads 3, encrypted
-- framing 4.5, transports 6.
--
--   wireshark -X lua_script:acip.lua capture.pcap
--   tshark -X lua_script:acip.lua -r capture.pcap -Y acip -T fields -e acip.type -e acip.crc_ok
--
-- TCP: registered on port @@TCP_PORT@@; several packets per segment, and packets reassembled across
-- segments. A bad magic is skipped up to the next magic; two packet headers back to back whose payloads
-- follow (two writers interleaving on one socket) are recovered when both CRCs check.
-- WebSocket: the server port @@WS_PORT@@ is decoded as HTTP so that the Upgrade is followed; then the `acip`
-- subprotocol and, as a heuristic, any message that starts with the magic. One message carries whole
-- packets (the feb dialect); a packet cut by the end of its message is shown as not whole (acip.crc_ok 2).
-- The head dialect's byte stream (one packet split over several messages) is not reassembled here.
-- Lua 5.2 (bit32) and Lua 5.3/5.4 (integer operators) both work.

local acip = Proto("acip", "ACIP (ascii-chat)")

local HEADER_LEN = @@HEADER_LEN@@
local MAGIC = "@@MAGIC@@"
local TYPE_OFF, LENGTH_OFF, CRC_OFF = @@TYPE_OFF@@, @@LENGTH_OFF@@, @@CRC_OFF@@
local MAX_PACKET = @@MAX_PACKET@@
local CRC_POLY = @@CRC_POLY@@
local TCP_PORT, WS_PORT = @@TCP_PORT@@, @@WS_PORT@@

local TYPE_NAMES = {
@@TYPE_NAMES@@}

local ERROR_CODES = { @@ERROR_CODES@@ }

local CRC_STATUS = { [0] = "bad", [1] = "ok", [2] = "not checked: the packet is not whole" }

-- Fields by display-filter name (F), and in declaration order for registration.
local F, FIELD_ORDER = {}, {}
local function field(abbrev, proto_field)
  F[abbrev] = proto_field
  FIELD_ORDER[#FIELD_ORDER + 1] = proto_field
end
@@FIELDS@@field("acip.crc_ok", ProtoField.uint8("acip.crc_ok", "CRC OK", base.DEC, CRC_STATUS))
field("acip.crc_computed", ProtoField.uint32("acip.crc_computed", "CRC-32C computed", base.HEX))
field("acip.payload", ProtoField.bytes("acip.payload", "Payload"))
field("acip.dialect", ProtoField.string("acip.dialect", "Dialect (from the payload size)"))
field("acip.interleaved", ProtoField.uint8("acip.interleaved", "Interleaved with another writer's packet"))
field("acip.skipped", ProtoField.bytes("acip.skipped", "Not ACIP (skipped to the next magic)"))
local HEADER_FIELDS = { @@HEADER_FIELDS@@ }

-- Payload layouts per type number. `exact`: only for payloads of that length; else for any payload of at
-- least `min` bytes. Fields are { name, size }; size 0 runs to the end of the payload.
local LAYOUTS = {
@@LAYOUTS@@}

local E = {
  crc = ProtoExpert.new("acip.crc_bad.expert", "CRC-32C mismatch", expert.group.CHECKSUM, expert.severity.ERROR),
  partial = ProtoExpert.new("acip.partial.expert", "Packet not whole", expert.group.MALFORMED, expert.severity.WARN),
  oversize = ProtoExpert.new("acip.oversize.expert", "Length over the limit", expert.group.MALFORMED,
    expert.severity.ERROR),
  layout = ProtoExpert.new("acip.layout.expert", "Payload size fits no layout of this type",
    expert.group.MALFORMED, expert.severity.WARN),
  skipped = ProtoExpert.new("acip.skipped.expert", "Bytes that are not ACIP", expert.group.PROTOCOL,
    expert.severity.WARN),
  interleaved = ProtoExpert.new("acip.interleaved.expert", "Packets of two writers interleaved",
    expert.group.SEQUENCE, expert.severity.WARN),
}

acip.fields = FIELD_ORDER
acip.experts = { E.crc, E.partial, E.oversize, E.layout, E.skipped, E.interleaved }

-- CRC-32C (reflected, init and final XOR 0xFFFFFFFF) over a Lua string.
local crc32c
if type(bit32) == "table" then
  local band, bxor, rshift = bit32.band, bit32.bxor, bit32.rshift
  local T = {}
  for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
      if band(c, 1) ~= 0 then c = bxor(rshift(c, 1), CRC_POLY) else c = rshift(c, 1) end
    end
    T[i] = c
  end
  crc32c = function(s)
    local byte, c = string.byte, 0xFFFFFFFF
    for i = 1, #s do
      c = bxor(T[band(bxor(c, byte(s, i)), 0xFF)], rshift(c, 8))
    end
    return bxor(c, 0xFFFFFFFF)
  end
else
  -- Lua 5.3+ without bit32: integer operators, which Lua 5.2 cannot parse, hence load().
  crc32c = assert(load([[
    local poly = ...
    local T = {}
    for i = 0, 255 do
      local c = i
      for _ = 1, 8 do
        if c & 1 ~= 0 then c = (c >> 1) ~ poly else c = c >> 1 end
      end
      T[i] = c
    end
    return function(s)
      local byte, c = string.byte, 0xFFFFFFFF
      for i = 1, #s do
        c = T[(c ~ byte(s, i)) & 0xFF] ~ (c >> 8)
      end
      return c ~ 0xFFFFFFFF
    end
  ]], "=acip_crc32c", "t"))(CRC_POLY)
end

-- Integers as text: Lua 5.3+ would print a float from TvbRange:uint() as "160.0".
local function int(n)
  return string.format("%d", n)
end

local function type_label(t)
  return (TYPE_NAMES[t] or "UNKNOWN") .. "(" .. int(t) .. ")"
end

-- The CRC verdict of a whole payload: 1 ok, 0 bad; an empty payload must carry CRC 0.
local function crc_verdict(tvb, offset, len, crc)
  local computed = 0
  if len > 0 then computed = crc32c(tvb:raw(offset, len)) end
  if computed == crc then return 1, computed end
  return 0, computed
end

-- Adds the fields of the layout that fits a payload of `len` bytes, as far as `avail` bytes go.
local function add_payload_fields(tree, tvb, offset, t, len, avail)
  local candidates = LAYOUTS[t]
  if not candidates then return end
  for _, layout in ipairs(candidates) do
    if (layout.exact and len == layout.exact) or (not layout.exact and len >= layout.min) then
      if layout.dialect then tree:add(F["acip.dialect"], layout.dialect):set_generated() end
      local off = 0
      for _, field in ipairs(layout.fields) do
        local size = field[2]
        if size == 0 then size = len - off end
        if off + size > avail then return end
        if size > 0 then tree:add(F[field[1]], tvb(offset + off, size)) end
        off = off + size
      end
      return
    end
  end
  tree:add_proto_expert_info(E.layout, "a " .. int(len) .. "-byte payload fits no layout of " .. type_label(t))
end

-- Shows one packet: its header at `hdr` and `avail` of its payload bytes at `pay`. `verdict` is the CRC
-- verdict (nil: not whole). Returns the Info text.
local function show_packet(tvb, tree, hdr, pay, avail, verdict, computed)
  local t = tvb(hdr + TYPE_OFF, 2):uint()
  local len = tvb(hdr + LENGTH_OFF, 4):uint()
  local whole = verdict ~= nil
  local span = HEADER_LEN + avail
  local item
  if pay == hdr + HEADER_LEN then
    item = tree:add(acip, tvb(hdr, span))
  else
    item = tree:add(acip, tvb(hdr, HEADER_LEN))
  end
  item:append_text(", " .. type_label(t) .. ", " .. int(len) .. " B")
  local off = hdr
  for _, field in ipairs(HEADER_FIELDS) do
    item:add(F[field[1]], tvb(off, field[2]))
    off = off + field[2]
  end
  local status = item:add(F["acip.crc_ok"], verdict or 2)
  status:set_generated()
  if verdict then
    item:add(F["acip.crc_computed"], computed):set_generated()
    if verdict == 0 then
      status:add_proto_expert_info(E.crc, string.format("CRC-32C 0x%08x, computed 0x%08x",
        tvb(hdr + CRC_OFF, 4):uint(), computed))
    end
  else
    item:add_proto_expert_info(E.partial, string.format("%s: %d of %d payload bytes", type_label(t), avail, len))
  end
  if avail > 0 then
    local ptree = item:add(F["acip.payload"], tvb(pay, avail))
    add_payload_fields(ptree, tvb, pay, t, len, avail)
  end
  local info = type_label(t) .. " len=" .. int(len)
  if not whole then info = info .. " [not whole]" elseif verdict == 0 then info = info .. " [bad CRC]" end
  return info
end

-- A header at `hdr` whose payload fails its CRC and starts with another header: two writers' packets
-- interleaved (headers back to back, then the payloads in either order). Returns "whole", the bytes of
-- both packets and their two payload offsets when both CRCs check; "more" and the bytes still missing
-- to tell; nil when it is not that.
local function interleaved(tvb, hdr, total)
  local second = hdr + HEADER_LEN
  if total - second < 8 or tvb:raw(second, 8) ~= MAGIC then return nil end
  if total - second < HEADER_LEN then return "more", HEADER_LEN - (total - second) end
  local len_a = tvb(hdr + LENGTH_OFF, 4):uint()
  local len_b = tvb(second + LENGTH_OFF, 4):uint()
  if len_b > MAX_PACKET then return nil end
  local size = 2 * HEADER_LEN + len_a + len_b
  if total - hdr < size then return "more", size - (total - hdr) end
  local crc_a, crc_b = tvb(hdr + CRC_OFF, 4):uint(), tvb(second + CRC_OFF, 4):uint()
  local first = second + HEADER_LEN
  for _, order in ipairs({ { first, first + len_a }, { first + len_b, first } }) do
    if crc_verdict(tvb, order[1], len_a, crc_a) == 1 and crc_verdict(tvb, order[2], len_b, crc_b) == 1 then
      return "whole", size, order[1], order[2]
    end
  end
  return nil
end

-- How many bytes at the end of `s` could be the start of a magic cut by the end of a segment.
local function magic_tail(s)
  for n = math.min(#s, #MAGIC - 1), 1, -1 do
    if s:sub(-n) == MAGIC:sub(1, n) then return n end
  end
  return 0
end

-- Dissects the packets of `tvb`. Over TCP (`can_desegment`) asks for more bytes when the last packet is
-- not whole; elsewhere shows it as it is. Returns the bytes used, or 0 when nothing here is ACIP.
local function dissect(tvb, pinfo, tree, can_desegment)
  local total = tvb:len()
  local offset = 0
  local infos = {}
  while offset < total do
    local avail = total - offset
    local head = tvb:raw(offset, math.min(avail, 8))
    if head ~= MAGIC:sub(1, #head) then
      -- Not a packet start: skip to the next magic, or over TCP to what may start one in the next segment.
      local rest = tvb:raw(offset)
      local at = string.find(rest, MAGIC, 1, true)
      local skip = at and (at - 1) or (avail - (can_desegment and magic_tail(rest) or 0))
      if offset == 0 and skip == avail then return 0 end
      local item = tree:add(F["acip.skipped"], tvb(offset, skip))
      item:add_proto_expert_info(E.skipped, int(skip) .. " bytes are not ACIP")
      infos[#infos + 1] = "[" .. int(skip) .. " bytes not ACIP]"
      offset = offset + skip
    elseif avail < HEADER_LEN then
      if can_desegment then
        pinfo.desegment_offset = offset
        pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
        break
      end
      local item = tree:add(acip, tvb(offset, avail))
      item:add_proto_expert_info(E.partial, "a header of " .. int(avail) .. " of " .. int(HEADER_LEN) .. " bytes")
      infos[#infos + 1] = "[partial header]"
      offset = total
    else
      local len = tvb(offset + LENGTH_OFF, 4):uint()
      local size = HEADER_LEN + len
      local pay = offset + HEADER_LEN
      if len > MAX_PACKET then
        -- No receiver waits for this (ACIP-SPEC.md 1.3): show the header, then look for the next magic.
        local info = show_packet(tvb, tree, offset, pay, 0, nil)
        tree:add_proto_expert_info(E.oversize, int(len) .. " > " .. int(MAX_PACKET))
        infos[#infos + 1] = info .. " [over the limit]"
        offset = pay
      elseif avail < size then
        if can_desegment then
          pinfo.desegment_offset = offset
          pinfo.desegment_len = size - avail
          break
        end
        infos[#infos + 1] = show_packet(tvb, tree, offset, pay, avail - HEADER_LEN, nil)
        offset = total
      else
        local crc = tvb(offset + CRC_OFF, 4):uint()
        local verdict, computed = crc_verdict(tvb, pay, len, crc)
        local found, used, pay_a, pay_b
        if verdict == 0 then found, used, pay_a, pay_b = interleaved(tvb, offset, total) end
        if found == "more" and can_desegment then
          pinfo.desegment_offset = offset
          pinfo.desegment_len = used
          break
        end
        if found == "whole" then
          local second = offset + HEADER_LEN
          local len_b = tvb(second + LENGTH_OFF, 4):uint()
          local a = show_packet(tvb, tree, offset, pay_a, len, 1, crc)
          local b = show_packet(tvb, tree, second, pay_b, len_b, 1, tvb(second + CRC_OFF, 4):uint())
          local note = tree:add(F["acip.interleaved"], 1)
          note:set_generated()
          note:add_proto_expert_info(E.interleaved, "two headers back to back at offset " .. int(offset) ..
            ", payloads " .. (pay_a < pay_b and "in header order" or "in reversed order"))
          infos[#infos + 1] = a .. " [interleaved]"
          infos[#infos + 1] = b .. " [interleaved]"
          offset = offset + used
        else
          infos[#infos + 1] = show_packet(tvb, tree, offset, pay, len, verdict, computed)
          offset = offset + size
        end
      end
    end
  end
  if #infos > 0 then
    -- Over TCP the packets replace TCP's summary; an earlier call for this frame (the end of a reassembled
    -- packet, then the packets after it) already wrote its own, which is kept.
    local summary = table.concat(infos, ", ")
    if tostring(pinfo.cols.protocol) == "ACIP" then
      pinfo.cols.info:append(", " .. summary)
    elseif can_desegment then
      pinfo.cols.info:set(summary)
    else
      pinfo.cols.info:append(" " .. summary)
    end
    pinfo.cols.protocol = "ACIP"
  end
  return total
end

function acip.dissector(tvb, pinfo, tree)
  return dissect(tvb, pinfo, tree, pinfo.can_desegment > 0)
end

DissectorTable.get("tcp.port"):add(TCP_PORT, acip)

-- The WebSocket port carries HTTP first: decoding it as HTTP lets the WebSocket dissector take over.
-- ("http-over-tcp" is the name of HTTP's TCP handle since Wireshark 3.6; "http" before.)
if not pcall(function() DissectorTable.get("tcp.port"):add(WS_PORT, Dissector.get("http-over-tcp")) end) then
  pcall(function() DissectorTable.get("tcp.port"):add(WS_PORT, Dissector.get("http")) end)
end

-- Wiresharks without the subprotocol table or the WebSocket heuristic list skip these.
pcall(function() DissectorTable.get("ws.protocol"):add("acip", acip) end)
pcall(function()
  acip:register_heuristic("ws", function(tvb, pinfo, tree)
    if tvb:len() < 8 or tvb:raw(0, 8) ~= MAGIC then return false end
    dissect(tvb, pinfo, tree, false)
    return true
  end)
end)
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use acip::codec::payloads::{
        AsciiFrame, ImageFrame, ImageFrameH265, ProtocolVersion, RemoteLog, ServerState, StreamStart,
        StreamStop,
    };
    use acip::Header;

    /// The `acip.type` value table: `number -> name`, as the script writes it.
    fn value_table(script: &str) -> Vec<(u16, String)> {
        let start = script.find("local TYPE_NAMES = {").expect("the type table");
        let end = start + script[start..].find("\n}").expect("its end");
        script[start..end]
            .lines()
            .skip(1)
            .map(|line| {
                let (num, name) = line.trim().trim_end_matches(',').split_once(" = ").expect("an entry");
                let num = num.trim_start_matches('[').trim_end_matches(']').parse().expect("a number");
                (num, name.trim_matches('"').to_owned())
            })
            .collect()
    }

    #[test]
    fn every_packet_type_is_in_the_value_table_with_its_number() {
        let table = value_table(&lua());
        let expected: Vec<(u16, String)> =
            PacketType::ALL.iter().map(|t| (t.to_u16(), t.name().to_owned())).collect();
        assert_eq!(table, expected);
        assert!(table.iter().any(|(n, name)| *n == 3001 && name == "IMAGE_FRAME"));
    }

    #[test]
    fn the_script_is_deterministic_and_complete() {
        let script = lua();
        assert_eq!(script, lua());
        assert!(!script.contains("@@"), "a placeholder was left unfilled");
        for needle in [
            r#"Proto("acip", "ACIP (ascii-chat)")"#,
            r#"DissectorTable.get("tcp.port"):add(TCP_PORT, acip)"#,
            r#"DissectorTable.get("ws.protocol"):add("acip", acip)"#,
            r#"acip:register_heuristic("ws""#,
            "local TCP_PORT, WS_PORT = 27224, 27226",
            r#"local MAGIC = "\x00\x00\x00\x0a\x5c\x11\xc4\xa1""#,
            "local HEADER_LEN = 22",
            "local TYPE_OFF, LENGTH_OFF, CRC_OFF = 8, 10, 14",
            "DESEGMENT_ONE_MORE_SEGMENT",
        ] {
            assert!(script.contains(needle), "missing {needle:?}");
        }
        for field in ["acip.magic", "acip.type", "acip.length", "acip.crc", "acip.client_id", "acip.crc_ok"] {
            assert!(script.contains(&format!("field(\"{field}\", ProtoField.")), "field {field}");
        }
        // Every header and payload field is declared once.
        for l in layouts() {
            for field in HEADER.iter().chain(&l.fields) {
                let decl = format!("field(\"{}\", ProtoField.", field.abbrev);
                assert_eq!(script.matches(&decl).count(), 1, "{}", field.abbrev);
            }
        }
    }

    /// Reads `bytes` with a field list the way the Lua does: (abbrev, value) with numbers big-endian.
    fn read(fields: &[Field], bytes: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        let mut off = 0;
        let mut out = Vec::new();
        for field in fields {
            let size = field.kind.size().unwrap_or(bytes.len() - off);
            out.push((field.abbrev, bytes[off..off + size].to_vec()));
            off += size;
        }
        assert_eq!(off, bytes.len(), "the fields cover the payload exactly");
        out
    }

    fn num(b: &[u8]) -> u64 {
        b.iter().fold(0, |acc, &x| acc << 8 | u64::from(x))
    }

    /// The layout of `t` that applies to `payload`, read field by field into numbers (and raw bytes).
    fn decode_with(t: PacketType, payload: &[u8]) -> Vec<(&'static str, u64, Vec<u8>)> {
        let layout = layouts()
            .into_iter()
            .find(|l| {
                l.packet_type == t
                    && match l.exact {
                        Some(n) => payload.len() == n,
                        None => payload.len() >= fixed_len(&l.fields),
                    }
            })
            .unwrap_or_else(|| panic!("a layout for {t} of {} bytes", payload.len()));
        read(&layout.fields, payload)
            .into_iter()
            .map(|(a, b)| (a, if b.len() <= 8 { num(&b) } else { 0 }, b))
            .collect()
    }

    fn value(fields: &[(&'static str, u64, Vec<u8>)], abbrev: &str) -> u64 {
        fields.iter().find(|(a, ..)| *a == abbrev).unwrap_or_else(|| panic!("field {abbrev}")).1
    }

    fn bytes<'a>(fields: &'a [(&'static str, u64, Vec<u8>)], abbrev: &str) -> &'a [u8] {
        &fields.iter().find(|(a, ..)| *a == abbrev).unwrap_or_else(|| panic!("field {abbrev}")).2
    }

    #[test]
    fn the_header_layout_is_the_codecs() {
        let payload = b"abc";
        let mut header = Header::for_payload(PacketType::IMAGE_FRAME, payload);
        header.client_id = 0x0102_0304;
        let wire = header.to_bytes();
        let fields: Vec<(&str, u64)> = read(&HEADER, &wire).into_iter().map(|(a, b)| (a, num(&b))).collect();
        assert_eq!(
            fields,
            [
                ("acip.magic", MAGIC),
                ("acip.type", 3001),
                ("acip.length", 3),
                ("acip.crc", u64::from(acip::crc::crc32c(payload))),
                ("acip.client_id", 0x0102_0304),
            ]
        );
        assert_eq!(fixed_len(&HEADER), HEADER_LEN);
    }

    #[test]
    fn payload_layouts_read_what_the_codec_writes() {
        use PacketType as T;
        let img = ImageFrame {
            width: 4,
            height: 2,
            pixel_format: 1,
            compressed_size: 5,
            checksum: 0xDEAD_BEEF,
            timestamp: 7,
            pixels: vec![9u8; 24].into(),
        };
        let d = decode_with(T::IMAGE_FRAME, &img.encode());
        assert_eq!(value(&d, "acip.image.width"), 4);
        assert_eq!(value(&d, "acip.image.height"), 2);
        assert_eq!(value(&d, "acip.image.pixel_format"), 1);
        assert_eq!(value(&d, "acip.image.compressed_size"), 5);
        assert_eq!(value(&d, "acip.image.checksum"), 0xDEAD_BEEF);
        assert_eq!(value(&d, "acip.image.timestamp"), 7);
        assert_eq!(bytes(&d, "acip.image.pixels"), &[9u8; 24][..]);
        assert_eq!(fixed_len(IMAGE_FRAME), ImageFrame::HEADER_LEN);

        let ascii = AsciiFrame { flags: AsciiFrame::HAS_COLOR, ..AsciiFrame::new(80, 24, &b"hello"[..]) };
        let d = decode_with(T::ASCII_FRAME, &ascii.encode());
        assert_eq!(value(&d, "acip.ascii.width"), 80);
        assert_eq!(value(&d, "acip.ascii.height"), 24);
        assert_eq!(value(&d, "acip.ascii.original_size"), 5);
        assert_eq!(value(&d, "acip.ascii.compressed_size"), 0);
        assert_eq!(value(&d, "acip.ascii.checksum"), u64::from(ascii.checksum()));
        assert_eq!(value(&d, "acip.ascii.flags"), u64::from(AsciiFrame::HAS_COLOR));
        assert_eq!(bytes(&d, "acip.ascii.data"), b"hello");
        assert_eq!(fixed_len(ASCII_FRAME), AsciiFrame::HEADER_LEN);

        let h265 = ImageFrameH265 { flags: 0x81, width: 640, height: 480, data: vec![1, 2].into() };
        let d = decode_with(T::IMAGE_FRAME_H265, &h265.encode());
        assert_eq!((value(&d, "acip.h265.flags"), value(&d, "acip.h265.width")), (0x81, 640));
        assert_eq!((value(&d, "acip.h265.height"), bytes(&d, "acip.h265.data")), (480, &[1u8, 2][..]));
        assert_eq!(fixed_len(IMAGE_FRAME_H265), ImageFrameH265::HEADER_LEN);

        let err = ErrorMessage::new(ErrorMessage::NETWORK_PROTOCOL, "bad caps");
        let d = decode_with(T::ERROR_MESSAGE, &err.encode());
        assert_eq!(value(&d, "acip.error.code"), 44);
        assert_eq!(value(&d, "acip.error.length"), 8);
        assert_eq!(bytes(&d, "acip.error.message"), b"bad caps");
        assert_eq!(fixed_len(ERROR_MESSAGE), ErrorMessage::HEADER_LEN);

        let log = RemoteLog { flags: RemoteLog::TRUNCATED, ..RemoteLog::new(4, RemoteLog::TO_CLIENT, "x") };
        let d = decode_with(T::REMOTE_LOG, &log.encode());
        assert_eq!((value(&d, "acip.log.level"), value(&d, "acip.log.direction")), (4, 1));
        assert_eq!((value(&d, "acip.log.flags"), value(&d, "acip.log.length")), (1, 1));
        assert_eq!(bytes(&d, "acip.log.message"), b"x");
        assert_eq!(fixed_len(REMOTE_LOG), RemoteLog::HEADER_LEN);

        for dialect in [Dialect::Feb, Dialect::Head] {
            let caps = ClientCapabilities::new(dialect, 120, 40, 60);
            let wire = caps.encode();
            assert_eq!(wire.len(), ClientCapabilities::len_for(dialect));
            let d = decode_with(T::CLIENT_CAPABILITIES, &wire);
            assert_eq!(value(&d, "acip.caps.capabilities"), u64::from(caps.capabilities));
            assert_eq!((value(&d, "acip.caps.width"), value(&d, "acip.caps.height")), (120, 40));
            assert_eq!(&bytes(&d, "acip.caps.term_type")[..6], b"xterm\0");
            assert_eq!(value(&d, "acip.caps.detection_reliable"), u64::from(caps.detection_reliable));
            assert_eq!(value(&d, "acip.caps.utf8_support"), u64::from(caps.utf8_support));
            assert_eq!(value(&d, "acip.caps.palette_type"), u64::from(caps.palette_type));
            assert_eq!(value(&d, "acip.caps.desired_fps"), 60);
            assert_eq!(value(&d, "acip.caps.wants_padding"), u64::from(caps.wants_padding));
            if dialect == Dialect::Head {
                assert_eq!(value(&d, "acip.caps.codec_video"), u64::from(caps.codec_capabilities_video));
                assert_eq!(value(&d, "acip.caps.codec_audio"), u64::from(caps.codec_capabilities_audio));
            }
        }

        let v = ProtocolVersion { feature_flags: 0x0102, ..ProtocolVersion::new(ProtocolVersion::MODE_FULL) };
        let d = decode_with(T::PROTOCOL_VERSION, &v.encode());
        assert_eq!((value(&d, "acip.version.version"), value(&d, "acip.version.encryption")), (1, 3));
        assert_eq!(value(&d, "acip.version.features"), 0x0102);

        let d =
            decode_with(T::STREAM_START, &StreamStart::new(StreamStart::VIDEO | StreamStart::AUDIO).encode());
        assert_eq!(value(&d, "acip.streams"), 3);
        let d = decode_with(T::STREAM_STOP, &StreamStop::new(StreamStop::AUDIO).encode());
        assert_eq!(value(&d, "acip.streams"), 2);

        let d = decode_with(T::SERVER_STATE, &ServerState::new(3, 2).encode());
        assert_eq!((value(&d, "acip.state.connected"), value(&d, "acip.state.active")), (3, 2));

        // ENCRYPTED: nonce, MAC, ciphertext (ACIP-SPEC.md 4.5).
        let mut sealed = vec![1u8; NONCE_LEN];
        sealed.extend([2u8; MAC_LEN]);
        sealed.extend(b"ct");
        let d = decode_with(T::ENCRYPTED, &sealed);
        assert_eq!(bytes(&d, "acip.encrypted.nonce"), &[1u8; NONCE_LEN][..]);
        assert_eq!(bytes(&d, "acip.encrypted.mac"), &[2u8; MAC_LEN][..]);
        assert_eq!(bytes(&d, "acip.encrypted.ciphertext"), b"ct");
        assert_eq!(fixed_len(ENCRYPTED), acip::crypto::session::OVERHEAD);
    }

    #[test]
    fn each_layout_has_its_end_field_last_and_no_gaps() {
        for l in layouts() {
            let ends = l.fields.iter().filter(|f| f.kind.size().is_none()).count();
            assert!(ends <= 1, "{:?}", l.packet_type);
            if ends == 1 {
                assert!(l.fields.last().is_some_and(|f| f.kind.size().is_none()), "{:?}", l.packet_type);
                assert_eq!(l.exact, None);
            } else {
                assert_eq!(l.exact, Some(fixed_len(&l.fields)), "{:?}", l.packet_type);
            }
        }
    }

    /// The table the Lua builds from the polynomial gives the codec's CRC-32C.
    #[test]
    fn the_crc_polynomial_is_the_codecs() {
        let table: Vec<u32> = (0..256u32)
            .map(|i| (0..8).fold(i, |c, _| if c & 1 != 0 { (c >> 1) ^ CRC32C_POLY } else { c >> 1 }))
            .collect();
        let crc = |data: &[u8]| {
            !data.iter().fold(!0u32, |c, &b| table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8))
        };
        for data in [&b"123456789"[..], &[0, 0, 0, 1], &[0xFF; 300]] {
            assert_eq!(crc(data), acip::crc::crc32c(data));
        }
    }
}
