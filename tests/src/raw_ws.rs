//! WebSocket frames written by hand, for tests that must send what no client library
//! would: floods, endless fragments, oversized headers.

use centrum_protocol::ClientMsg;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;

/// A masked client frame.
pub fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![if fin { 0x80 | opcode } else { opcode }];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    f
}

/// One client message as a single binary frame.
pub fn message(msg: &ClientMsg) -> Vec<u8> {
    frame(OP_BINARY, true, &centrum_protocol::encode(msg))
}
