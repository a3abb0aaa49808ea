//! The WebSocket side of a flow's dissection: frames, control frames (CLOSE checked by `acip::ws`), `feb`
//! messages (one message = one packet, `acip::ws::feb_message_rule`) and `head` byte streams.

use super::*;

impl FlowState {
    /// WebSocket: frames out of the byte stream, then messages (and packets) out of the frames.
    pub(super) fn feed_ws(&mut self, ctx: &mut Ctx<'_>, dir: Dir, at: At, ws: &mut WsDecoder, data: &[u8]) {
        let mut frame_offset = ws.frames.consumed() + ws.frames.buffered() as u64;
        let _ = &mut frame_offset;
        ws.frames.handle_bytes(data);
        loop {
            let start = ws.frames.consumed();
            let (frame, facts) = match ws.frames.poll_observed() {
                None => break,
                Some(Ok(f)) => f,
                Some(Err(e)) => {
                    let detail = format!("{e}; no later frame boundary, dissection of this direction stops");
                    self.anomaly(ctx, at.ts, at.frame, dir, Some(start), AnomalyKind::WsFrame, detail);
                    self.dirs[dir.index()].stop(format!("WebSocket frame error at offset {start}"));
                    return;
                }
            };
            let fat = At { ts: at.ts, frame: at.frame, offset: start };
            self.ws_frame(ctx, dir, fat, ws, frame, facts);
        }
    }

    /// What a frame's header says beyond the frame: RSV bits (permessage-deflate or a violation),
    /// non-minimal lengths, malformed control frames, frames after this side's CLOSE.
    fn frame_facts(
        &mut self,
        ctx: &mut Ctx<'_>,
        dir: Dir,
        at: At,
        ws: &mut WsDecoder,
        frame: &acip::ws::Frame,
        facts: acip::ws::FrameFacts,
    ) {
        let len = frame.payload.len();
        let op = frame.opcode;
        let mut problems = Vec::new();
        {
            let w = self.dirs[dir.index()].report.ws.get_or_insert_with(WsStats::default);
            if ws.close_seen {
                w.frames_after_close += 1;
                problems.push(format!(
                    "{op} frame after this side's CLOSE (RFC 6455 5.5.1: nothing may follow it)"
                ));
            }
            if facts.non_minimal_length {
                w.non_minimal_lengths += 1;
                problems.push(format!(
                    "{op} frame length {len} in a {}-byte header, not the shortest encoding (RFC 6455 5.2)",
                    facts.header_len
                ));
            }
            if op.is_control() && (len > acip::ws::MAX_CONTROL_PAYLOAD || !frame.fin) {
                w.bad_control_frames += 1;
                problems.push(format!(
                    "{op} control frame of {len} bytes{} (RFC 6455 5.5: at most 125 bytes, never fragmented)",
                    if frame.fin { "" } else { " without FIN" }
                ));
            }
            if let acip::ws::OpCode::Reserved(v) = op {
                problems.push(format!("frame with reserved opcode 0x{v:X} (RFC 6455 5.2)"));
            }
            let starts = matches!(op, acip::ws::OpCode::Text | acip::ws::OpCode::Binary);
            if starts {
                ws.msg_compressed = false;
            }
            if facts.rsv == 0b100 && starts && self.deflate.is_some() {
                ws.msg_compressed = true;
            } else if facts.rsv != 0 {
                w.rsv_frames += 1;
                let why = if self.deflate.is_some() {
                    "only RSV1, only on a message's first frame, is permessage-deflate's (RFC 7692 6)"
                } else {
                    "no extension was negotiated (RFC 6455 5.2)"
                };
                problems.push(format!("{op} frame with RSV bits 0b{:03b}: {why}", facts.rsv));
            }
        }
        if op == acip::ws::OpCode::Close {
            ws.close_seen = true;
        }
        for p in problems {
            self.anomaly(ctx, at.ts, at.frame, dir, Some(at.offset), AnomalyKind::WsFrame, p);
        }
    }

    /// Inflates one permessage-deflate message (RFC 7692 7.2.2): the message plus `00 00 FF FF`, through
    /// this direction's raw-deflate state (kept across messages unless the side said no_context_takeover).
    /// The output is bounded by the message limit.
    fn inflate(&self, dir: Dir, ws: &mut WsDecoder, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        let reset = match (self.deflate, dir) {
            (Some((client, _)), Dir::ClientToServer) => client,
            (Some((_, server)), Dir::ServerToClient) => server,
            (None, _) => true,
        };
        if reset {
            ws.inflater = None;
        }
        let z = ws.inflater.get_or_insert_with(|| flate2::Decompress::new(false));
        let mut input = data.to_vec();
        input.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
        let mut out = Vec::with_capacity((data.len() * 4).clamp(64, limit.max(64)));
        let mut at = 0;
        loop {
            if out.len() >= limit {
                return Err(format!("inflates to more than the {limit}-byte message limit"));
            }
            out.reserve((limit - out.len()).min(64 * 1024));
            let (in0, out0) = (z.total_in(), z.total_out());
            let status = z
                .decompress_vec(&input[at..], &mut out, flate2::FlushDecompress::Sync)
                .map_err(|e| format!("is not valid deflate data: {e}"))?;
            at += (z.total_in() - in0) as usize;
            let progressed = z.total_in() > in0 || z.total_out() > out0;
            let room_left = out.len() < out.capacity();
            if (at >= input.len() && room_left) || !progressed || status == flate2::Status::StreamEnd {
                break;
            }
        }
        Ok(out)
    }

    fn ws_frame(
        &mut self,
        ctx: &mut Ctx<'_>,
        dir: Dir,
        at: At,
        ws: &mut WsDecoder,
        frame: acip::ws::Frame,
        facts: acip::ws::FrameFacts,
    ) {
        self.frame_facts(ctx, dir, at, ws, &frame, facts);
        let len = frame.payload.len() as u64;
        let masked = frame.mask.is_some();
        ctx.push(
            at.ts,
            at.frame,
            self.id,
            dir,
            What::Ws { opcode: frame.opcode.to_string(), fin: frame.fin, masked, len },
        );
        {
            let w = self.dirs[dir.index()].report.ws.get_or_insert_with(WsStats::default);
            w.frames += 1;
            *w.by_opcode.entry(frame.opcode.to_string()).or_default() += 1;
            if masked {
                w.masked += 1;
            } else {
                w.unmasked += 1;
            }
        }
        let wrong_mask = match dir {
            Dir::ClientToServer => !masked,
            Dir::ServerToClient => masked,
        };
        if wrong_mask {
            let detail = format!(
                "{} frame from {} is {}masked (RFC 6455 5.1)",
                frame.opcode,
                side(dir),
                if masked { "" } else { "not " }
            );
            self.anomaly(ctx, at.ts, at.frame, dir, Some(at.offset), AnomalyKind::WsMasking, detail);
        }
        if frame.opcode == OpCode::Close {
            self.ws_close(ctx, dir, at, &frame.payload);
        }
        // `head`: every data frame continues one packet byte stream (a compressed message joins it whole,
        // inflated, once complete).
        if !frame.opcode.is_control() && !ws.msg_compressed {
            if let Some(mut stream) = ws.stream.take() {
                let chunk_start = stream.consumed() + stream.buffered() as u64;
                stream.handle_bytes(&frame.payload);
                let payload = frame.payload.clone();
                let mut track = std::mem::take(&mut ws.track);
                self.drain_stream(ctx, dir, at, &mut stream, &mut track, &payload, chunk_start);
                ws.track = track;
                ws.stream = Some(stream);
            }
            if frame.opcode.starts_message() || ws.msg_at.is_none() {
                ws.msg_at = Some(at);
            }
        }
        let now = ctx.instant(at.ts);
        let mut result = ws.reassembler.handle_frame(frame.clone(), now);
        if let Err(ReassemblyError::DataFrameBeforeFin { .. }) = &result {
            // The unfinished message is gone; let this frame start the next one instead of losing it too.
            let e = result.unwrap_err();
            self.reassembly_error(ctx, dir, at, &e);
            result = ws.reassembler.handle_frame(frame, now);
        }
        match result {
            Ok(None) => {}
            Ok(Some(ReassemblyEvent::Control(_))) => {}
            Ok(Some(ReassemblyEvent::Message(m))) => {
                let msg_at = ws.msg_at.take().unwrap_or(at);
                let mut frags = Fragments { count: m.fragments as u64, ..Default::default() };
                frags.first = Some(at.ts.saturating_sub(m.last_at.saturating_duration_since(m.first_at)));
                frags.last = at.ts;
                frags.gaps = m.gaps.clone();
                {
                    let w = self.dirs[dir.index()].report.ws.get_or_insert_with(WsStats::default);
                    w.messages += 1;
                    w.message_bytes += m.data.len() as u64;
                    *w.fragments_per_message.entry(m.fragments as u64).or_default() += 1;
                    if w.message_lengths.len() < MAX_MESSAGE_LENGTHS {
                        w.message_lengths.push(m.data.len() as u64);
                    }
                }
                self.fragments_done(ctx, dir, at, frags, "message");
                let mut data = m.data.clone();
                if std::mem::take(&mut ws.msg_compressed) {
                    match self.inflate(dir, ws, &m.data, ctx.config.limits.max_ws_message) {
                        Ok(plain) => {
                            if let Some(w) = self.dirs[dir.index()].report.ws.as_mut() {
                                w.compressed_messages += 1;
                            }
                            data = bytes::Bytes::from(plain);
                        }
                        Err(why) => {
                            let detail =
                                format!("permessage-deflate message of {} bytes {why}", m.data.len());
                            self.anomaly(
                                ctx,
                                at.ts,
                                at.frame,
                                dir,
                                Some(msg_at.offset),
                                AnomalyKind::WsFrame,
                                detail,
                            );
                            return;
                        }
                    }
                    if let Some(mut stream) = ws.stream.take() {
                        let chunk_start = stream.consumed() + stream.buffered() as u64;
                        stream.handle_bytes(&data);
                        let mut track = std::mem::take(&mut ws.track);
                        self.drain_stream(ctx, dir, at, &mut stream, &mut track, &data, chunk_start);
                        ws.track = track;
                        ws.stream = Some(stream);
                    }
                }
                if ws.stream.is_none() {
                    self.feb_message(ctx, dir, at, msg_at, ws, &data);
                }
            }
            Err(e) => {
                ws.msg_at = None;
                self.reassembly_error(ctx, dir, at, &e);
            }
        }
    }

    fn reassembly_error(&mut self, ctx: &mut Ctx<'_>, dir: Dir, at: At, e: &ReassemblyError) {
        let kind = match e {
            ReassemblyError::ContinuationWithoutStart { .. } => AnomalyKind::ContinuationWithoutStart,
            ReassemblyError::DataFrameBeforeFin { .. } => AnomalyKind::DataFrameBeforeFin,
            ReassemblyError::MessageTooLarge { .. } | ReassemblyError::TooManyFragments { .. } => {
                AnomalyKind::Oversize
            }
            ReassemblyError::Timeout { .. } => AnomalyKind::ReassemblyTimeout,
            ReassemblyError::MessageShorterThanPacket { .. } | ReassemblyError::HeaderIncomplete { .. } => {
                AnomalyKind::MessageShorterThanPacket
            }
            ReassemblyError::MessageLongerThanPacket { .. } => AnomalyKind::MessageLongerThanPacket,
            _ => AnomalyKind::WsFrame,
        };
        self.anomaly(ctx, at.ts, at.frame, dir, Some(at.offset), kind, e.to_string());
    }

    fn ws_close(&mut self, ctx: &mut Ctx<'_>, dir: Dir, at: At, payload: &[u8]) {
        let (code, reason) = acip::ws::read_close_lossy(payload);
        if let Some(w) = self.dirs[dir.index()].report.ws.as_mut() {
            w.close = Some(CloseInfo {
                code,
                reason: reason.clone(),
                valid: acip::ws::parse_close(payload).is_ok(),
            });
        }
        let invalid = acip::ws::parse_close(payload).err();
        if !matches!(code, Some(1000 | 1001)) || invalid.is_some() {
            let mut detail = format!("{} sent close code {code:?} {reason:?}", side(dir));
            if let Some(e) = invalid {
                detail.push_str(&format!(" (invalid, RFC 6455: {e})"));
            }
            self.anomaly(ctx, at.ts, at.frame, dir, Some(at.offset), AnomalyKind::Close, detail);
        }
    }

    /// A `feb` message that does not start with a valid packet: the valid packets inside it (after junk, or
    /// several in one message) are recovered as a byte stream would be; returns what to add to the anomaly.
    fn recover_in_message(&mut self, ctx: &mut Ctx<'_>, dir: Dir, at: At, msg_at: At, data: &[u8]) -> String {
        let mut rx = ResyncDecoder::new(ctx.config.limits);
        rx.handle_bytes(data);
        rx.finish();
        let mut found = Vec::new();
        while let Some(item) = rx.poll() {
            match item {
                Item::Packet(l) => found.push(l),
                Item::Interleaved { packets, .. } => found.extend(packets),
                Item::Skipped { .. } => {}
            }
        }
        if found.is_empty() {
            return String::new();
        }
        let names: Vec<String> =
            found.iter().map(|l| format!("{} @+{}", l.packet.packet_type, l.offset)).collect();
        for l in &found {
            let wire = l.packet.wire_len() as u64;
            self.packet(ctx, dir, at, msg_at.offset + l.offset, l.client_id, &l.packet, wire, CrcStatus::Ok);
        }
        format!("; recovered inside the message with valid CRCs: {}", names.join(", "))
    }

    /// `feb`: one message is one packet. Every mismatch is flagged; the next message is decoded anyway.
    fn feb_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        dir: Dir,
        at: At,
        msg_at: At,
        ws: &mut WsDecoder,
        data: &bytes::Bytes,
    ) {
        let prev_short = std::mem::replace(&mut ws.prev_short, false);
        let starts_with_magic = data.len() >= 8 && data[..8] == MAGIC.to_be_bytes();
        if prev_short && !starts_with_magic && !data.is_empty() {
            let reason = "WebSocket messages continue packets (head byte stream)".to_string();
            self.ws_head_evidence.get_or_insert(reason.clone());
            self.evidence(Dialect::Head, 2, reason);
        }
        let limits = ctx.config.limits;
        let header = match Header::decode(data, &limits) {
            Ok(h) => h,
            Err(CodecError::Truncated { .. }) => {
                if let Err(e) = Header::check_magic_prefix(data) {
                    let detail = format!("{e}{}", self.recover_in_message(ctx, dir, at, msg_at, data));
                    self.anomaly(ctx, at.ts, at.frame, dir, Some(msg_at.offset), codec_kind(&e), detail);
                } else {
                    let e = ReassemblyError::HeaderIncomplete { message: data.len() };
                    self.anomaly(
                        ctx,
                        at.ts,
                        at.frame,
                        dir,
                        Some(msg_at.offset),
                        AnomalyKind::MessageShorterThanPacket,
                        e.to_string(),
                    );
                    ws.prev_short = true;
                }
                return;
            }
            Err(e) => {
                let detail = format!(
                    "message of {} bytes: {e}{}",
                    data.len(),
                    self.recover_in_message(ctx, dir, at, msg_at, data)
                );
                self.anomaly(ctx, at.ts, at.frame, dir, Some(msg_at.offset), codec_kind(&e), detail);
                return;
            }
        };
        // acip's one statement of the rule (the reassembler applies the same function).
        let rule = acip::ws::feb_message_rule(data);
        let packet_len = match &rule {
            Ok(n) => *n,
            Err(
                ReassemblyError::MessageShorterThanPacket { packet, .. }
                | ReassemblyError::MessageLongerThanPacket { packet, .. },
            ) => *packet,
            Err(_) => HEADER_LEN + header.length as usize,
        };
        if let Err(e @ ReassemblyError::MessageShorterThanPacket { .. }) = &rule {
            ws.prev_short = true;
            let detail = format!("{} {e}", header.packet_type);
            self.anomaly(
                ctx,
                at.ts,
                at.frame,
                dir,
                Some(msg_at.offset),
                AnomalyKind::MessageShorterThanPacket,
                detail,
            );
            let info = format!("claims {packet_len} B, message has {} B", data.len());
            let what = What::Acip {
                packet_type: header.packet_type.to_string(),
                len: data.len() as u64,
                crc: CrcStatus::Unchecked,
                client_id: header.client_id,
                info,
            };
            ctx.push(at.ts, at.frame, self.id, dir, what);
            return;
        }
        let payload = data.slice(HEADER_LEN..packet_len);
        if let Err(e @ ReassemblyError::MessageLongerThanPacket { .. }) = &rule {
            let detail = format!("{} {e}", header.packet_type);
            self.anomaly(
                ctx,
                at.ts,
                at.frame,
                dir,
                Some(msg_at.offset),
                AnomalyKind::MessageLongerThanPacket,
                detail,
            );
            if data[packet_len..].starts_with(&MAGIC.to_be_bytes()[..(data.len() - packet_len).min(8)]) {
                let reason = "WebSocket messages carry several packets (head byte stream)".to_string();
                self.ws_head_evidence.get_or_insert(reason.clone());
                self.evidence(Dialect::Head, 2, reason);
            }
        }
        let crc = match header.check_crc(&payload) {
            Ok(()) => CrcStatus::Ok,
            Err(e) => {
                // The same treatment as a byte stream: valid packets inside the damaged message (two
                // writers' records interleaved in one message, or a packet after junk) are recovered and
                // stand for it; otherwise the damaged packet is reported as it is.
                let recovered = self.recover_in_message(ctx, dir, at, msg_at, data);
                let detail = format!("{e}{recovered}");
                self.anomaly(
                    ctx,
                    at.ts,
                    at.frame,
                    dir,
                    Some(msg_at.offset),
                    AnomalyKind::CrcMismatch,
                    detail,
                );
                if !recovered.is_empty() {
                    return;
                }
                CrcStatus::Bad
            }
        };
        let packet = Packet { packet_type: header.packet_type, payload };
        self.packet(ctx, dir, at, msg_at.offset, header.client_id, &packet, packet_len as u64, crc);
    }
}
