//! `--echo`: a plain RFC 6455 echo endpoint on the WebSocket port, no ACIP (issue 4): a transport baseline
//! and a target for WebSocket conformance tools. Messages (fragmented or not) come back as one frame of the
//! same opcode; PING gets PONG; CLOSE is answered and ends the connection. CLOSE frames and TEXT messages are
//! checked by `acip::ws` (RFC 6455): an invalid close code, a 1-byte close payload or a close reason that is
//! not UTF-8 fails the connection with 1002; a TEXT message that is not UTF-8 fails it with 1007 at the first
//! fragment that makes it invalid.

use acip::ws::{
    close_code, close_payload, encode_frame, parse_close, FrameDecoder, FrameDecoderConfig, OpCode,
    Utf8Validator,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::hub::Shared;
use crate::tasks::READ_BUF;

/// Runs the echo loop on an upgraded connection. One task reads and writes, so there is one writer.
pub(crate) async fn run(mut stream: TcpStream, leftover: Vec<u8>, shared: &Shared) {
    let limits = shared.config.limits;
    let mut frames = FrameDecoder::with_config(FrameDecoderConfig {
        max_frame: limits.max_ws_frame,
        require_mask: Some(true),
        strict_length: false,
        observe: false,
    });
    frames.handle_bytes(&leftover);
    let mut message: Option<(OpCode, Vec<u8>)> = None;
    let mut text = Utf8Validator::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut shutdown = shared.shutdown.clone();
    loop {
        while let Some(f) = frames.poll_frame() {
            let (close, reply) = match f {
                Err(e) => (true, close_frame(close_code::PROTOCOL_ERROR, &e.to_string())),
                Ok(frame) => match frame.opcode {
                    OpCode::Ping => (false, frame_bytes(OpCode::Pong, &frame.payload)),
                    OpCode::Pong => (false, Vec::new()),
                    OpCode::Close => match parse_close(&frame.payload) {
                        // Echo the peer's code; an empty CLOSE is answered with 1000 (7.1.5: 1005 is never sent).
                        Ok(c) => (true, close_frame(c.code.unwrap_or(close_code::NORMAL), "")),
                        Err(e) => (true, close_frame(close_code::PROTOCOL_ERROR, &e.to_string())),
                    },
                    OpCode::Text | OpCode::Binary if message.is_some() => {
                        (true, close_frame(1002, "data frame before the previous message's FIN"))
                    }
                    OpCode::Continuation if message.is_none() => {
                        (true, close_frame(1002, "continuation without a message in progress"))
                    }
                    OpCode::Reserved(v) => (true, close_frame(1002, &format!("reserved opcode 0x{v:X}"))),
                    op => {
                        let (opcode, mut data) =
                            message.take().unwrap_or((op, Vec::with_capacity(frame.payload.len())));
                        data.extend_from_slice(&frame.payload);
                        let utf8 = if opcode == OpCode::Text {
                            text.push(&frame.payload, frame.fin)
                        } else {
                            Ok(())
                        };
                        if data.len() > limits.max_ws_message {
                            (true, close_frame(close_code::TOO_BIG, "message too large"))
                        } else if let Err(e) = utf8 {
                            (true, close_frame(close_code::INVALID_PAYLOAD, &e.to_string()))
                        } else if !frame.fin {
                            message = Some((opcode, data));
                            (false, Vec::new())
                        } else {
                            (false, frame_bytes(opcode, &data))
                        }
                    }
                },
            };
            if !reply.is_empty() && stream.write_all(&reply).await.is_err() {
                return;
            }
            if close {
                let _ = stream.shutdown().await;
                return;
            }
        }
        let n = tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = crate::sync::until_true(&mut shutdown) => {
                let _ = stream.write_all(&close_frame(close_code::GOING_AWAY, "server shutting down")).await;
                return;
            }
        };
        frames.handle_bytes(&buf[..n]);
    }
}

fn frame_bytes(op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    encode_frame(op, true, None, payload, &mut out);
    out
}

fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    frame_bytes(OpCode::Close, &close_payload(code, reason))
}
