//! The head of a connection's first request (the front's hand-written HTTP/1.1 reading
//! on top of httparse): any bytes give a head, "need more", or a 400/431; a head does
//! not depend on the bytes after it; an accepted WebSocket upgrade is an HTTP/1.1 GET
//! with a non-empty key.
#![no_main]

use centrum_front::fuzzing::parse_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_head(data) {
        Ok(None) => {}
        Ok(Some(head)) => {
            assert!(head.len > 0 && head.len <= data.len());
            assert!(head.headers.len() <= 32);
            for (name, _) in &head.headers {
                assert_eq!(name, &name.to_ascii_lowercase());
            }
            // The same head from its own bytes alone.
            assert_eq!(parse_head(&data[..head.len]), Ok(Some(head.clone())));
            match &head.websocket_key {
                Ok(key) => {
                    assert!(head.method == "GET" && head.http11);
                    assert!(!key.is_empty() && key.trim() == key);
                }
                Err((status, message)) => {
                    assert!(matches!(status, 400 | 426), "{status} {message}");
                }
            }
            if head.http11 && !head.headers.iter().any(|(n, _)| n == "connection") {
                assert!(head.keep_alive);
            }
        }
        Err((status, message)) => {
            assert!(matches!(status, 400 | 431), "{status} {message}");
            assert!(!message.is_empty());
        }
    }
});
