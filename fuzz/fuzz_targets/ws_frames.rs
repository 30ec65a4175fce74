//! The front's WebSocket frame reader on arbitrary client bytes, read as a connection
//! reads its socket (fuzzer-chosen chunk sizes, each read capped by the buffer's spare
//! room), with or without a rate budget (its burst only: a run is far shorter than a
//! refill). Checked: no message over the limit is ever returned, the buffer stays
//! within a small multiple of the limit, and the events (and the error that ends
//! them) are the same however the bytes were split.
#![no_main]

use centrum_front::fuzzing::{FrameReader, WsEvent, WsFailure};
use libfuzzer_sys::fuzz_target;

/// A client frame's longest header: 2 bytes, an 8-byte length and the mask.
const MAX_CLIENT_HEADER: usize = 14;

fn check(event: &WsEvent, max_message: usize) {
    match event {
        WsEvent::Binary(b) => assert!(b.len() <= max_message, "{} > {max_message}", b.len()),
        WsEvent::Ping(b) => assert!(b.len() <= 125),
        WsEvent::Text | WsEvent::Pong | WsEvent::Close | WsEvent::Dropped => {}
    }
}

fn failure(f: &WsFailure) {
    assert!(matches!(f.close_code, 1002 | 1008 | 1009), "{f:?}");
}

fuzz_target!(|data: &[u8]| {
    let [limit, chunking, budget, rest @ ..] = data else {
        return;
    };
    let max_message = 64 + 8 * usize::from(*limit);
    let (chunks, stream) = rest.split_at(usize::from(*chunking % 8).min(rest.len()));
    // High nibble: frames the client may send (0: no limit); low nibble: bytes, in 64s.
    let frames = u32::from(budget >> 4) * 2;
    let bytes = u32::from(budget & 0xf) * 64;
    let reader = || FrameReader::with_burst(max_message, frames, bytes);

    // All at once.
    let mut whole = reader();
    whole.push(stream);
    let mut expected = Vec::new();
    let end = loop {
        match whole.next_event() {
            Ok(Some(event)) => {
                check(&event, max_message);
                expected.push(event);
            }
            Ok(None) => break None,
            Err(e) => {
                failure(&e);
                break Some(e);
            }
        }
    };

    // As a socket delivers them.
    let mut reader = reader();
    let mut got = Vec::new();
    let mut left = stream;
    let mut next_chunk = 0;
    let got_end = 'read: loop {
        if left.is_empty() {
            break None;
        }
        let cap = match chunks {
            [] => left.len(),
            chunks => 1 + usize::from(chunks[next_chunk % chunks.len()]),
        };
        next_chunk += 1;
        let n = reader.read(&left[..cap.min(left.len())]);
        assert!(n > 0, "a read with no room");
        left = &left[n..];
        let bound = 2 * (MAX_CLIENT_HEADER + max_message) + 1024;
        assert!(
            reader.capacity() <= bound,
            "{} > {bound}",
            reader.capacity()
        );
        loop {
            match reader.next_event() {
                Ok(Some(event)) => got.push(event),
                Ok(None) => break,
                Err(e) => break 'read Some(e),
            }
        }
    };
    assert_eq!(got, expected);
    assert_eq!(got_end, end);
    if end.is_none() {
        assert_eq!(reader.buffered(), whole.buffered());
        assert!(reader.buffered() < MAX_CLIENT_HEADER + max_message);
    }
});
