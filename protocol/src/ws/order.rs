//! RFC 6455 5.4 frame order without reassembly, for the `head` dialect.

#[cfg(doc)]
use super::Reassembler;
use super::{Frame, OpCode, ReassemblyError};

/// RFC 6455 5.4 frame order for the `head` dialect. HEAD gave message boundaries no meaning for ACIP (its
/// data frames form one byte stream), but WebSocket's own sequencing still holds: a CONTINUATION needs an
/// open message, and TEXT/BINARY may not start one while another lacks its FIN. `feb` gets these checks
/// from [`Reassembler`]; `head` only needs the order, not the reassembled bytes (running the
/// reassembler would copy every message and cap it at `max_ws_message`), so this tracks just that and
/// reports the same typed errors (`Error::close` maps them to 1002).
#[derive(Debug, Default)]
pub struct HeadFrameOrder {
    /// Fragments and bytes of the message whose FIN has not arrived yet.
    open: Option<(usize, usize)>,
}

impl HeadFrameOrder {
    /// Checks one frame; control frames may come between fragments (5.4) and are not tracked.
    pub fn check(&mut self, frame: &Frame) -> Result<(), ReassemblyError> {
        let len = frame.payload.len();
        match frame.opcode {
            OpCode::Continuation => match self.open.as_mut() {
                None => return Err(ReassemblyError::ContinuationWithoutStart { fin: frame.fin }),
                Some((fragments, bytes)) => {
                    *fragments += 1;
                    *bytes = bytes.saturating_add(len);
                }
            },
            OpCode::Text | OpCode::Binary => {
                if let Some((fragments, bytes)) = self.open.take() {
                    return Err(ReassemblyError::DataFrameBeforeFin {
                        opcode: frame.opcode,
                        fragments,
                        bytes,
                    });
                }
                self.open = Some((1, len));
            }
            OpCode::Reserved(v) if !frame.opcode.is_control() => {
                return Err(ReassemblyError::ReservedOpcode(v))
            }
            _ => return Ok(()),
        }
        if frame.fin {
            self.open = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 5.4 in `head`: fragments continue one open message, control frames may come between
    /// them, FIN closes it; CONTINUATION without an open message and TEXT/BINARY inside one are typed
    /// errors (the same ones `feb`'s reassembler reports).
    #[test]
    fn head_frame_order() {
        let mut o = HeadFrameOrder::default();
        assert_eq!(
            o.check(&Frame::continuation(false, vec![1])),
            Err(ReassemblyError::ContinuationWithoutStart { fin: false })
        );
        o.check(&Frame::binary(vec![1, 2])).unwrap();
        assert_eq!(
            o.check(&Frame::continuation(true, vec![1])),
            Err(ReassemblyError::ContinuationWithoutStart { fin: true })
        );
        o.check(&Frame::new(OpCode::Binary, false, vec![1, 2, 3])).unwrap();
        o.check(&Frame::ping(vec![9])).unwrap();
        o.check(&Frame::continuation(false, vec![4])).unwrap();
        assert_eq!(
            o.check(&Frame::new(OpCode::Text, true, vec![5])),
            Err(ReassemblyError::DataFrameBeforeFin { opcode: OpCode::Text, fragments: 2, bytes: 4 })
        );
        // The error took the open message away; a new one starts cleanly and FIN ends it.
        o.check(&Frame::new(OpCode::Binary, false, vec![1])).unwrap();
        o.check(&Frame::continuation(true, vec![2])).unwrap();
        o.check(&Frame::binary(vec![3])).unwrap();
    }
}
