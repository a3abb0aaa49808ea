// ACIP over the browser's own WebSocket (ACIP-SPEC.md 1, 3, 4, 6.2), for `harness browser`.
//
// The page sends CLIENT_CAPABILITIES, STREAM_START, IMAGE_FRAMEs of the harness's moving test pattern
// (protocol/src/pattern.rs, byte for byte) and a PING every second, and renders the ASCII_FRAMEs it
// receives into <pre id="ascii">. With `encrypt`, it first answers the server's WebSocket handshake (4.4)
// and then sends every packet as an ENCRYPTED packet (4.5), with libsodium.js (npm libsodium-wrappers,
// served by the harness under /sodium/, loaded on demand). Everything the harness needs comes back as the
// value of the promise returned by Acip.run(options). Tests compare Acip.encodeSample() with the Rust
// codec and Acip.cryptoSample() with acip::crypto.
(function (global) {
  "use strict";

  // ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), slicing by 8 -------------------------
  const POLY = 0x82f63b78;
  const T = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    T[n] = c;
  }
  for (let t = 1; t < 8; t++) {
    for (let n = 0; n < 256; n++) {
      const prev = T[(t - 1) * 256 + n];
      T[t * 256 + n] = (prev >>> 8) ^ T[prev & 0xff];
    }
  }

  // Continues a finished CRC-32C `crc` over bytes[start, end) (crc 0 starts a new one).
  function crc32cAppend(crc, bytes, start, end) {
    let c = ~crc;
    let i = start;
    for (; i + 8 <= end; i += 8) {
      const a = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
      c =
        T[1792 + (a & 0xff)] ^
        T[1536 + ((a >>> 8) & 0xff)] ^
        T[1280 + ((a >>> 16) & 0xff)] ^
        T[1024 + (a >>> 24)] ^
        T[768 + bytes[i + 4]] ^
        T[512 + bytes[i + 5]] ^
        T[256 + bytes[i + 6]] ^
        T[bytes[i + 7]];
    }
    for (; i < end; i++) c = T[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return ~c >>> 0;
  }

  function crc32c(bytes, start, end) {
    return crc32cAppend(0, bytes, start === undefined ? 0 : start, end === undefined ? bytes.length : end);
  }

  // ---- Packets (ACIP-SPEC.md 1.1, 2) ------------------------------------------------------------------
  const HEADER_LEN = 22;
  const MAGIC = [0x00, 0x00, 0x00, 0x0a, 0x5c, 0x11, 0xc4, 0xa1];
  const TYPE = {
    ERROR_MESSAGE: 2003,
    REMOTE_LOG: 2004,
    ASCII_FRAME: 3000,
    IMAGE_FRAME: 3001,
    CLIENT_CAPABILITIES: 5000,
    PING: 5001,
    PONG: 5002,
    STREAM_START: 5005,
    CLEAR_CONSOLE: 5007,
    SERVER_STATE: 5008,
    CRYPTO_PARAMETERS: 1101,
    CRYPTO_KEY_EXCHANGE_INIT: 1102,
    CRYPTO_KEY_EXCHANGE_RESP: 1103,
    CRYPTO_AUTH_CHALLENGE: 1104,
    CRYPTO_AUTH_FAILED: 1106,
    CRYPTO_HANDSHAKE_COMPLETE: 1108,
    ENCRYPTED: 1200,
    CRYPTO_REKEY_REQUEST: 1201,
    CRYPTO_REKEY_COMPLETE: 1203,
  };

  // The handshake class (section 2, column "P"): 1000, 1100-1109, 1201-1203. Never encrypted.
  function isHandshake(type) {
    return type === 1000 || (type >= 1100 && type <= 1109) || (type >= 1201 && type <= 1203);
  }

  // Writes the 22-byte header for the payload already in buf[22, 22 + len).
  function writeHeader(buf, type, len) {
    const v = new DataView(buf.buffer, buf.byteOffset, HEADER_LEN);
    for (let i = 0; i < 8; i++) buf[i] = MAGIC[i];
    v.setUint16(8, type);
    v.setUint32(10, len);
    v.setUint32(14, len === 0 ? 0 : crc32c(buf, HEADER_LEN, HEADER_LEN + len));
    v.setUint32(18, 0);
  }

  function packet(type, payload) {
    const buf = new Uint8Array(HEADER_LEN + payload.length);
    buf.set(payload, HEADER_LEN);
    writeHeader(buf, type, payload.length);
    return buf;
  }

  // CLIENT_CAPABILITIES (3.4) as the Rust ClientCapabilities::new builds it: TERM_CAP bits 0x18,
  // monochrome, "xterm", utf8_support in host order, palette 1; HEAD appends the codec words 0x7 / 0x3.
  function capabilities(dialect, cols, rows, fps) {
    const head = dialect === "head";
    const p = new Uint8Array(head ? 168 : 160);
    const v = new DataView(p.buffer);
    v.setUint32(0, 0x18);
    v.setUint32(4, 0); // color_level
    v.setUint32(8, 0); // color_count
    v.setUint32(12, 0); // render_mode
    v.setUint16(16, cols);
    v.setUint16(18, rows);
    const term = "xterm";
    for (let i = 0; i < term.length; i++) p[20 + i] = term.charCodeAt(i);
    p[84] = 1; // detection_reliable
    v.setUint32(85, 0x01000000); // utf8_support, host order as the real client writes it
    v.setUint32(89, 1); // palette_type
    p[157] = fps;
    if (head) {
      v.setUint32(160, 0x7);
      v.setUint32(164, 0x3);
    }
    return packet(TYPE.CLIENT_CAPABILITIES, p);
  }

  function streamStart(bits) {
    const p = new Uint8Array(4);
    new DataView(p.buffer).setUint32(0, bits);
    return packet(TYPE.STREAM_START, p);
  }

  function ping() {
    return packet(TYPE.PING, new Uint8Array(0));
  }

  // ---- The test pattern (protocol/src/pattern.rs) -----------------------------------------------------
  const PATTERN_HEADER_LEN = 32;
  const CHECKSUM_OFFSET = 28;
  const BAR_STEP = 4n;
  const IMAGE_HEADER_LEN = 24;

  function imageFrameLen(w, h) {
    return HEADER_LEN + IMAGE_HEADER_LEN + w * h * 3;
  }

  // Renders frame `seq` (BigInt-safe numbers) into px (exactly w*h*3 bytes).
  function renderPattern(px, w, h, seq, sendTimeUs, tag) {
    const rowLen = w * 3;
    const barWidth = Math.max(Math.floor(w / 8), 1);
    const s = BigInt(seq);
    const shift = Number(BigInt.asUintN(64, s * BAR_STEP) % BigInt(w));
    for (let x = 0; x < w; x++) {
      const bar = Math.floor(((x + w - shift) % w) / barWidth) % 8;
      const l = bar * 35;
      const o = x * 3;
      px[o] = l;
      px[o + 1] = Math.min(l + 10, 255);
      px[o + 2] = (l >> 1) + 60;
    }
    for (let y = 1; y < h; y++) px.copyWithin(y * rowLen, 0, rowLen);
    const band = Math.max(Math.floor(h / 8), 1);
    const top = Number(s % BigInt(h));
    for (let i = 0; i < band; i++) {
      const y = (top + i) % h;
      px.fill(0xf0, y * rowLen, (y + 1) * rowLen);
    }
    const v = new DataView(px.buffer, px.byteOffset, PATTERN_HEADER_LEN);
    px[0] = 0x41; // "ACPT"
    px[1] = 0x43;
    px[2] = 0x50;
    px[3] = 0x54;
    v.setUint16(4, w);
    v.setUint16(6, h);
    v.setBigUint64(8, s);
    v.setBigUint64(16, BigInt(sendTimeUs));
    v.setUint32(24, tag >>> 0);
    const sum = crc32cAppend(crc32c(px, 0, CHECKSUM_OFFSET), px, PATTERN_HEADER_LEN, px.length);
    v.setUint32(CHECKSUM_OFFSET, sum);
  }

  // Fills `buf` (imageFrameLen(w, h) bytes) with a whole IMAGE_FRAME packet of pattern frame `seq`.
  function imageFrame(buf, w, h, seq, sendTimeUs, tag) {
    const v = new DataView(buf.buffer, buf.byteOffset + HEADER_LEN, IMAGE_HEADER_LEN);
    v.setUint32(0, w);
    v.setUint32(4, h);
    v.setUint32(8, 1); // RGB24
    v.setUint32(12, 0);
    v.setUint32(16, 0);
    v.setUint32(20, 0);
    renderPattern(buf.subarray(HEADER_LEN + IMAGE_HEADER_LEN), w, h, seq, sendTimeUs, tag);
    writeHeader(buf, TYPE.IMAGE_FRAME, buf.length - HEADER_LEN);
    return buf;
  }

  function toBase64(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(s);
  }

  // CLIENT_CAPABILITIES, STREAM_START(VIDEO), one IMAGE_FRAME and a PING, concatenated, as base64: what a
  // test compares with the same packets from the Rust codec.
  function encodeSample(o) {
    const img = new Uint8Array(imageFrameLen(o.width, o.height));
    imageFrame(img, o.width, o.height, o.seq, o.sendTimeUs, o.tag);
    const parts = [capabilities(o.dialect, o.cols, o.rows, o.fps), streamStart(1), img, ping()];
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return toBase64(all);
  }


  // ---- Encryption (ACIP-SPEC.md 4.1, 4.4, 4.5) with libsodium.js -----------------------------------------
  const NONCE_LEN = 24;
  const MAC_LEN = 16;
  // CRYPTO_MAX_PLAINTEXT_SIZE: inner header + payload (1.3).
  const MAX_PLAINTEXT = 1024 * 1024;
  let sodiumLoaded = null;

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const el = document.createElement("script");
      el.src = src;
      el.onload = resolve;
      el.onerror = () => reject(new Error("could not load " + src + " from the harness"));
      document.head.appendChild(el);
    });
  }

  // libsodium.js, once: the Emscripten module first (it sets the global `libsodium` the wrappers use).
  function loadSodium() {
    if (!sodiumLoaded) {
      sodiumLoaded = (async () => {
        if (!global.sodium) {
          await loadScript("/sodium/libsodium.js");
          await loadScript("/sodium/libsodium-wrappers.js");
        }
        await global.sodium.ready;
        return global.sodium;
      })();
    }
    return sodiumLoaded;
  }

  function toHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function fromHex(hex) {
    const out = new Uint8Array(hex.length >> 1);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
    return out;
  }

  function fromBase64(b64) {
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  // The traffic key (4.1): `feb` crypto_box_beforenm = HSalsa20 of the X25519 output, `head` the raw
  // X25519 output. An all-zero result (a low-order peer key) is refused, as libsodium refuses it.
  function sessionKey(sodium, dialect, secretKey, peerPublic) {
    const key =
      dialect === "head"
        ? sodium.crypto_scalarmult(secretKey, peerPublic)
        : sodium.crypto_box_beforenm(peerPublic, secretKey);
    if (key.every((b) => b === 0)) throw new Error("the server's key exchange key is a low-order point");
    return key;
  }

  // One key for both directions (4.1). Outgoing nonces: this sender's 16-byte session id, then a counter
  // from 1, little-endian in `feb`, big-endian in `head`. Incoming nonces are taken from the packet.
  class Sealer {
    constructor(sodium, dialect, key, sessionId) {
      this.sodium = sodium;
      this.littleEndian = dialect !== "head";
      this.key = key;
      this.sessionId = sessionId;
      this.counter = 1n;
    }

    nonce(counter) {
      const n = new Uint8Array(NONCE_LEN);
      n.set(this.sessionId);
      new DataView(n.buffer).setBigUint64(16, counter, this.littleEndian);
      return n;
    }

    // Wraps a whole packet (header and payload) in an ENCRYPTED packet: nonce ‖ MAC ‖ XSalsa20(packet).
    seal(inner) {
      if (inner.length > MAX_PLAINTEXT) {
        throw new Error("a " + inner.length + "-byte packet is over the 1 MiB an ENCRYPTED packet may hold");
      }
      const nonce = this.nonce(this.counter);
      this.counter += 1n;
      const boxed = this.sodium.crypto_secretbox_easy(inner, nonce, this.key);
      const out = new Uint8Array(HEADER_LEN + NONCE_LEN + boxed.length);
      out.set(nonce, HEADER_LEN);
      out.set(boxed, HEADER_LEN + NONCE_LEN);
      writeHeader(out, TYPE.ENCRYPTED, out.length - HEADER_LEN);
      return out;
    }

    // The packet inside an ENCRYPTED payload as {type, payload}. Throws, naming the check that failed
    // (MAC, inner length, inner CRC; the inner magic is not checked, as in the real receiver, 4.5).
    open(ct) {
      if (ct.length < NONCE_LEN + MAC_LEN) throw new Error("ciphertext of " + ct.length + " bytes");
      let plain;
      try {
        plain = this.sodium.crypto_secretbox_open_easy(ct.subarray(NONCE_LEN), ct.subarray(0, NONCE_LEN), this.key);
      } catch (e) {
        throw new Error("bad MAC");
      }
      if (plain.length < HEADER_LEN) throw new Error("inner packet of " + plain.length + " bytes");
      const v = new DataView(plain.buffer, plain.byteOffset, HEADER_LEN);
      const type = v.getUint16(8);
      const len = v.getUint32(10);
      if (len !== plain.length - HEADER_LEN) {
        throw new Error("inner length " + len + " in " + (plain.length - HEADER_LEN) + " bytes");
      }
      const payload = plain.slice(HEADER_LEN);
      if ((len === 0 ? 0 : crc32c(payload)) !== v.getUint32(14)) throw new Error("inner CRC mismatch");
      return { type, payload };
    }
  }

  // The client side of the WebSocket handshake (4.4): the server opens with CRYPTO_PARAMETERS (`head`)
  // and KEY_EXCHANGE_INIT; the page answers KEY_EXCHANGE_RESP and waits for HANDSHAKE_COMPLETE. The page
  // has no password and no identity key, so an AUTH_CHALLENGE ends the session. `secretKey` fixes the
  // ephemeral X25519 key (tests); otherwise a fresh one is drawn per connection.
  class ClientHandshake {
    constructor(sodium, dialect, secretKey) {
      this.sodium = sodium;
      this.dialect = dialect;
      if (secretKey) {
        this.secretKey = secretKey;
        this.publicKey = sodium.crypto_scalarmult_base(secretKey);
      } else {
        const kp = sodium.crypto_box_keypair();
        this.secretKey = kp.privateKey;
        this.publicKey = kp.publicKey;
      }
      this.params = null;
      this.key = null;
      this.serverIdentity = null;
      this.state = "KEY_EXCHANGE_INIT";
    }

    get done() {
      return this.state === "done";
    }

    // Handles one handshake packet; returns the (plain) packets to send. Throws on a protocol failure.
    handle(type, p) {
      const v = new DataView(p.buffer, p.byteOffset, p.length);
      const unexpected = () => new Error("unexpected handshake packet " + type + " while waiting for " + this.state);
      switch (type) {
        case TYPE.CRYPTO_PARAMETERS: {
          if (this.state !== "KEY_EXCHANGE_INIT" || this.params) throw unexpected();
          if (p.length !== 18) throw new Error("CRYPTO_PARAMETERS of " + p.length + " bytes, expected 18");
          if (p[0] !== 1) throw new Error("CRYPTO_PARAMETERS selected_kex " + p[0] + ", expected 1 (X25519)");
          if (p[2] !== 1) throw new Error("CRYPTO_PARAMETERS selected_cipher " + p[2] + ", expected 1");
          if (v.getUint16(4) !== 32) throw new Error("CRYPTO_PARAMETERS kex_public_key_size " + v.getUint16(4));
          this.params = { auth: p[1] !== 0, verification: p[3] !== 0 };
          return [];
        }
        case TYPE.CRYPTO_KEY_EXCHANGE_INIT: {
          if (this.state !== "KEY_EXCHANGE_INIT") throw unexpected();
          if (this.dialect === "head" && !this.params) {
            throw new Error("KEY_EXCHANGE_INIT before CRYPTO_PARAMETERS, which a head server sends first");
          }
          if (p.length !== 32 && p.length !== 128) {
            throw new Error("KEY_EXCHANGE_INIT of " + p.length + " bytes, expected 32 or 128");
          }
          const eph = p.slice(0, 32);
          const signed = p.length === 128;
          if (signed) {
            const id = p.slice(32, 64);
            let ok = false;
            try {
              ok = this.sodium.crypto_sign_verify_detached(p.slice(64, 128), eph, id);
            } catch (e) {
              ok = false;
            }
            if (!ok) throw new Error("the server's signature over its key exchange key does not verify");
            this.serverIdentity = toHex(id);
          }
          this.key = sessionKey(this.sodium, this.dialect, this.secretKey, eph);
          // The extended form (zero identity and signature, no GPG id: 129 B) when the server asked for
          // authentication or verification or proved an identity (4.3 step 6).
          const extended = signed || (this.params !== null && (this.params.auth || this.params.verification));
          const resp = new Uint8Array(extended ? 129 : 32);
          resp.set(this.publicKey);
          this.state = "HANDSHAKE_COMPLETE";
          return [packet(TYPE.CRYPTO_KEY_EXCHANGE_RESP, resp)];
        }
        case TYPE.CRYPTO_HANDSHAKE_COMPLETE: {
          if (this.state !== "HANDSHAKE_COMPLETE") throw unexpected();
          if (p.length !== 0) throw new Error("HANDSHAKE_COMPLETE of " + p.length + " bytes, expected 0");
          this.state = "done";
          return [];
        }
        case TYPE.CRYPTO_AUTH_CHALLENGE:
          throw new Error(
            "the server asks for authentication (AUTH_CHALLENGE flags 0x" +
              (p.length > 0 ? p[0].toString(16) : "?") +
              "): the page has no password or client key"
          );
        case TYPE.CRYPTO_AUTH_FAILED:
          throw new Error("the server sent AUTH_FAILED (reason 0x" + (p.length > 0 ? p[0].toString(16) : "?") + ")");
        default:
          throw unexpected();
      }
    }
  }

  // What a test compares with acip::crypto: the X25519 public key of `secretKey`, the session key of
  // `dialect` from `secretKey` and `peerPublic` (hex), the packets `seal` (base64, whole packets) sealed in
  // order by a Sealer over `key` and `sessionId` (hex), and the ENCRYPTED packets `open` (base64) opened
  // and re-encoded as plain packets.
  async function cryptoSample(o) {
    const sodium = await loadSodium();
    const sk = fromHex(o.secretKey);
    const sealer = new Sealer(sodium, o.dialect, fromHex(o.key), fromHex(o.sessionId));
    return {
      publicKey: toHex(sodium.crypto_scalarmult_base(sk)),
      sessionKey: toHex(sessionKey(sodium, o.dialect, sk, fromHex(o.peerPublic))),
      sealed: (o.seal || []).map((b) => toBase64(sealer.seal(fromBase64(b)))),
      opened: (o.open || []).map((b) => {
        const d = new StreamDecoder();
        d.push(fromBase64(b));
        const outer = d.next();
        if (!outer || outer.type !== TYPE.ENCRYPTED) throw new Error("not an ENCRYPTED packet");
        const inner = sealer.open(outer.payload);
        return toBase64(packet(inner.type, inner.payload));
      }),
    };
  }

  // ---- Receiving: packets cut from the byte stream by their length field --------------------------------
  class StreamDecoder {
    constructor() {
      this.buf = new Uint8Array(1 << 16);
      this.len = 0;
    }
    push(chunk) {
      if (this.len + chunk.length > this.buf.length) {
        let cap = this.buf.length;
        while (cap < this.len + chunk.length) cap *= 2;
        const nb = new Uint8Array(cap);
        nb.set(this.buf.subarray(0, this.len));
        this.buf = nb;
      }
      this.buf.set(chunk, this.len);
      this.len += chunk.length;
    }
    // The next whole packet as {type, payload}, null when more bytes are needed; throws on bad magic.
    next() {
      if (this.len < HEADER_LEN) return null;
      for (let i = 0; i < 8; i++) {
        if (this.buf[i] !== MAGIC[i]) throw new Error("bad packet magic from the server");
      }
      const v = new DataView(this.buf.buffer, 0, HEADER_LEN);
      const type = v.getUint16(8);
      const len = v.getUint32(10);
      if (this.len < HEADER_LEN + len) return null;
      const payload = this.buf.slice(HEADER_LEN, HEADER_LEN + len);
      this.buf.copyWithin(0, HEADER_LEN + len, this.len);
      this.len -= HEADER_LEN + len;
      return { type, payload };
    }
  }

  // Terminal text to plain text: ANSI CSI / OSC sequences removed.
  function stripAnsi(s) {
    return s.replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, "").replace(/\x1b\][^\x07]*(\x07|\x1b\\)/g, "");
  }

  // ---- A session --------------------------------------------------------------------------------------
  function notify(kind, data) {
    if (typeof global.acipEvent === "function") {
      try {
        global.acipEvent(JSON.stringify(Object.assign({ kind }, data || {})));
      } catch (e) {
        // The harness is not listening: nothing to tell.
      }
    }
  }

  function sleepUntil(t) {
    const d = t - performance.now();
    return new Promise((r) => setTimeout(r, Math.max(0, d)));
  }

  // Options: url, dialect ("feb" | "head"), width, height, fps, durationMs, cols, rows, tag,
  // maxBufferedFrames (skip a frame while more than this many frames wait in the socket's send buffer),
  // encrypt (answer the server's handshake and send everything after it encrypted), handshakeTimeoutMs.
  async function run(o) {
    const pre = document.getElementById("ascii");
    const status = document.getElementById("status");
    const res = {
      ok: false,
      error: null,
      opened_ms: null,
      closed: null,
      frames: [],
      skipped_backpressure: 0,
      max_buffered: 0,
      pings_sent: 0,
      ping_rtt_ms: [],
      ascii_frames: 0,
      ascii_at_ms: [],
      ascii_checksum_bad: 0,
      ascii_compressed: 0,
      ascii_width: 0,
      ascii_height: 0,
      packets_by_type: {},
      handshake_offered: false,
      server_errors: [],
      window_ms: 0,
      pre_text_len: 0,
      encrypted: false,
      handshake_ms: null,
      server_identity: null,
      encrypted_received: 0,
      plain_received_after_handshake: 0,
      decrypt_failed: 0,
      decrypt_errors: [],
      rekey_ignored: 0,
    };
    const t0 = performance.now();
    const rel = () => performance.now() - t0;
    let sodium = null;
    if (o.encrypt) {
      try {
        sodium = await loadSodium();
      } catch (e) {
        res.error = "libsodium.js: " + e.message;
        return res;
      }
    }
    const frameLen = imageFrameLen(o.width, o.height);
    const maxBuffered = (o.maxBufferedFrames || 2) * frameLen;
    const decoder = new StreamDecoder();
    const textDecoder = new TextDecoder();
    const pingsOut = [];
    let ws;
    try {
      ws = new WebSocket(o.url, "acip");
    } catch (e) {
      res.error = "WebSocket constructor: " + e.message;
      return res;
    }
    ws.binaryType = "arraybuffer";
    let closedResolve;
    const closed = new Promise((r) => (closedResolve = r));
    ws.onclose = (ev) => {
      res.closed = { code: ev.code, reason: ev.reason, at_ms: rel(), clean: ev.wasClean };
      closedResolve();
    };
    const handshake = o.encrypt ? new ClientHandshake(sodium, o.dialect) : null;
    let sealer = null;
    let handshakeSettled;
    const handshakeDone = new Promise((r) => (handshakeSettled = r));
    const fail = (message) => {
      if (!res.error) res.error = message;
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(4000, "client error");
    };
    // Sends a packet, sealed once the handshake gave a key.
    const send = (pkt) => ws.send(sealer ? sealer.seal(pkt) : pkt);

    // A plain packet, or one taken out of an ENCRYPTED packet.
    const handlePacket = (p) => {
      res.packets_by_type[p.type] = (res.packets_by_type[p.type] || 0) + 1;
      const v = new DataView(p.payload.buffer, p.payload.byteOffset, p.payload.length);
      if (p.type === TYPE.ASCII_FRAME && p.payload.length >= 24) {
        const flags = v.getUint32(20);
        const compressed = v.getUint32(12);
        if (flags & 0x02 && compressed > 0) {
          res.ascii_compressed++;
          return;
        }
        const text = p.payload.subarray(24);
        if (crc32c(text) !== v.getUint32(16)) {
          res.ascii_checksum_bad++;
          return;
        }
        res.ascii_frames++;
        res.ascii_at_ms.push(rel());
        res.ascii_width = v.getUint32(0);
        res.ascii_height = v.getUint32(4);
        pre.textContent = stripAnsi(textDecoder.decode(text));
      } else if (p.type === TYPE.PONG && pingsOut.length > 0) {
        res.ping_rtt_ms.push(rel() - pingsOut.shift());
      } else if ((p.type === TYPE.ERROR_MESSAGE || p.type === TYPE.REMOTE_LOG) && p.payload.length >= 8) {
        const n = Math.min(v.getUint32(4), p.payload.length - 8);
        res.server_errors.push(p.type + ": " + textDecoder.decode(p.payload.subarray(8, 8 + n)));
      }
    };

    const handleHandshake = (p) => {
      res.packets_by_type[p.type] = (res.packets_by_type[p.type] || 0) + 1;
      if (p.type === TYPE.CRYPTO_PARAMETERS || p.type === TYPE.CRYPTO_KEY_EXCHANGE_INIT) res.handshake_offered = true;
      if (!handshake) return; // plaintext page: the server's offer is ignored (4.4)
      if (handshake.done) {
        // REKEY_* after the handshake: ignored, the old key kept (4.8).
        if (p.type >= TYPE.CRYPTO_REKEY_REQUEST && p.type <= TYPE.CRYPTO_REKEY_COMPLETE) res.rekey_ignored++;
        else fail("handshake packet " + p.type + " after the handshake");
        return;
      }
      let out;
      try {
        out = handshake.handle(p.type, p.payload);
      } catch (e) {
        fail("handshake: " + e.message);
        handshakeSettled(false);
        return;
      }
      for (const q of out) ws.send(q);
      if (handshake.done) {
        sealer = new Sealer(sodium, o.dialect, handshake.key, sodium.randombytes_buf(16));
        res.encrypted = true;
        res.server_identity = handshake.serverIdentity;
        res.handshake_ms = rel() - res.opened_ms;
        handshakeSettled(true);
      }
    };

    ws.onmessage = (ev) => {
      decoder.push(new Uint8Array(ev.data));
      for (;;) {
        let p;
        try {
          p = decoder.next();
        } catch (e) {
          fail(e.message);
          return;
        }
        if (!p) return;
        if (p.type === TYPE.ENCRYPTED) {
          res.packets_by_type[p.type] = (res.packets_by_type[p.type] || 0) + 1;
          if (!sealer) {
            res.decrypt_failed++;
            if (res.decrypt_errors.length < 5) res.decrypt_errors.push("ENCRYPTED packet before a key");
            continue;
          }
          let inner;
          try {
            inner = sealer.open(p.payload);
          } catch (e) {
            res.decrypt_failed++;
            if (res.decrypt_errors.length < 5) res.decrypt_errors.push(e.message);
            continue;
          }
          res.encrypted_received++;
          if (isHandshake(inner.type)) handleHandshake(inner);
          else handlePacket(inner);
        } else if (isHandshake(p.type)) {
          handleHandshake(p);
        } else {
          // Before the handshake ends the server may send plaintext (4.4); WS receivers accept both.
          if (sealer) res.plain_received_after_handshake++;
          handlePacket(p);
        }
      }
    };
    const opened = await new Promise((resolve) => {
      ws.onopen = () => resolve(true);
      ws.onerror = () => resolve(false);
    });
    if (!opened) {
      await Promise.race([closed, new Promise((r) => setTimeout(r, 1000))]);
      res.error = "could not open " + o.url + (res.closed ? " (close code " + res.closed.code + ")" : "");
      return res;
    }
    res.opened_ms = rel();
    if (handshake) {
      status.textContent = "handshake with " + o.url;
      // Like the native client, wait a bounded time for "crypto ready" before CLIENT_CAPABILITIES (4.7).
      const limit = o.handshakeTimeoutMs || 10000;
      const ok = await Promise.race([
        handshakeDone,
        closed.then(() => false),
        new Promise((r) => setTimeout(() => r(false), limit)),
      ]);
      if (!ok) {
        fail(
          res.closed
            ? "the server closed the connection (code " + res.closed.code + ") during the crypto handshake"
            : "no crypto handshake completed within " + limit + " ms (state: waiting for " + handshake.state + ")"
        );
        await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
        status.textContent = "failed: " + res.error;
        return res;
      }
    }
    status.textContent =
      "streaming " + o.width + "x" + o.height + " at " + o.fps + " fps to " + o.url + (sealer ? " (encrypted)" : "");
    send(capabilities(o.dialect, o.cols, o.rows, o.fps));
    send(streamStart(1));

    const buf = new Uint8Array(frameLen);
    const period = 1000 / o.fps;
    const start = performance.now();
    const unixStartUs = Math.round((performance.timeOrigin + start) * 1000);
    let seq = 0;
    let nextPing = start;
    notify("sending", { at_ms: start - t0 });
    for (let i = 0; ; i++) {
      const due = start + i * period;
      if (due - start >= o.durationMs) break;
      if (ws.readyState !== WebSocket.OPEN) break;
      await sleepUntil(due);
      if (ws.readyState !== WebSocket.OPEN) break;
      if (performance.now() >= nextPing) {
        pingsOut.push(rel());
        send(ping());
        res.pings_sent++;
        nextPing += 1000;
      }
      if (ws.bufferedAmount > maxBuffered) {
        res.skipped_backpressure++;
        continue;
      }
      const begin = performance.now();
      const intendedUs = unixStartUs + Math.round(i * period * 1000);
      imageFrame(buf, o.width, o.height, seq, intendedUs, o.tag);
      const built = performance.now();
      const wire = sealer ? sealer.seal(buf) : buf;
      const sealed = performance.now();
      ws.send(wire);
      const sent = performance.now();
      const buffered = ws.bufferedAmount;
      if (buffered > res.max_buffered) res.max_buffered = buffered;
      res.frames.push({
        seq,
        due_ms: due - t0,
        start_ms: begin - t0,
        built_ms: built - t0,
        sealed_ms: sealer ? sealed - t0 : null,
        sent_ms: sent - t0,
        buffered,
      });
      seq++;
    }
    res.window_ms = performance.now() - start;
    notify("window_end", { at_ms: rel(), frames: seq });
    // Let what the page handed to the socket leave it, then close cleanly.
    const drainBy = performance.now() + (o.drainMs || 5000);
    while (ws.readyState === WebSocket.OPEN && ws.bufferedAmount > 0 && performance.now() < drainBy) {
      await new Promise((r) => setTimeout(r, 5));
    }
    if (ws.readyState === WebSocket.OPEN) ws.close(1000, "done");
    await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
    res.pre_text_len = pre.textContent.length;
    if (res.frames.length === 0 && !res.error) {
      res.error = res.closed
        ? "the server closed the connection (code " + res.closed.code + " " + res.closed.reason + ") before a frame was sent"
        : "no frame was sent";
    }
    if (!o.encrypt && res.handshake_offered && res.ascii_frames === 0 && !res.error) {
      res.error =
        "the target started a crypto handshake and sent no ASCII frame: it may require encryption (try --encrypt)";
    }
    res.ok = res.error === null;
    status.textContent = res.ok ? "done" : "failed: " + res.error;
    return res;
  }

  global.Acip = {
    crc32c,
    crc32cAppend,
    capabilities,
    streamStart,
    ping,
    imageFrame,
    imageFrameLen,
    renderPattern,
    encodeSample,
    StreamDecoder,
    loadSodium,
    sessionKey,
    Sealer,
    ClientHandshake,
    cryptoSample,
    run,
  };
})(typeof window !== "undefined" ? window : globalThis);
