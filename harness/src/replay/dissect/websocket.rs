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
            let frame = match ws.frames.poll_frame() {
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
            self.ws_frame(ctx, dir, fat, ws, frame);
        }
    }

    fn ws_frame(&mut self, ctx: &mut Ctx<'_>, dir: Dir, at: At, ws: &mut WsDecoder, frame: acip::ws::Frame) {
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
        // `head`: every data frame continues one packet byte stream.
        if !frame.opcode.is_control() {
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
                if ws.stream.is_none() {
                    self.feb_message(ctx, dir, at, msg_at, ws, &m.data);
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
            w.close = Some(CloseInfo { code, reason: reason.clone() });
        }
        if !matches!(code, Some(1000 | 1001)) {
            let mut detail = format!("{} sent close code {code:?} {reason:?}", side(dir));
            if let Err(e) = acip::ws::parse_close(payload) {
                detail.push_str(&format!(" (invalid, RFC 6455: {e})"));
            }
            self.anomaly(ctx, at.ts, at.frame, dir, Some(at.offset), AnomalyKind::Close, detail);
        }
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
                if Header::check_magic_prefix(data).is_err() {
                    let e = Header::check_magic_prefix(data).unwrap_err();
                    self.anomaly(
                        ctx,
                        at.ts,
                        at.frame,
                        dir,
                        Some(msg_at.offset),
                        codec_kind(&e),
                        e.to_string(),
                    );
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
                let detail = format!("message of {} bytes: {e}", data.len());
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
                self.anomaly(
                    ctx,
                    at.ts,
                    at.frame,
                    dir,
                    Some(msg_at.offset),
                    AnomalyKind::CrcMismatch,
                    e.to_string(),
                );
                CrcStatus::Bad
            }
        };
        let packet = Packet { packet_type: header.packet_type, payload };
        self.packet(ctx, dir, at, msg_at.offset, &packet, packet_len as u64, crc);
    }
}
