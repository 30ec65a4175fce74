//! Front ↔ back links: `FrontToBack` and `BackToFront` decoded, re-encoded and compared;
//! then the same bytes as a stream through centrum-net's length-prefixed framing with a
//! small frame limit, read in fuzzer-chosen chunks and checked against a reference
//! reading: every whole frame comes out as its message (or a decode error), an
//! oversized length is an error before its payload is read, and nothing near the
//! announced size is ever allocated.
#![no_main]

use centrum_fuzz::{Chunked, round_trip};
use centrum_net::{FrameError, framed, recv};
use centrum_protocol::{BackToFront, FrontToBack, decode, encode};
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;

/// What the stream holds next, read by hand from the bytes.
enum Expected<'a> {
    End,
    Frame(&'a [u8]),
    Oversized,
    Truncated,
    /// A length and nothing after it: tokio-util's codec takes the length in, then
    /// finds its buffer empty at the end of the stream and reports a clean close
    /// (FUZZING.md, "Noticed").
    LengthOnly,
}

fn next_frame<'a>(rest: &mut &'a [u8], max_frame: usize) -> Expected<'a> {
    if rest.is_empty() {
        return Expected::End;
    }
    if rest.len() < 4 {
        return Expected::Truncated;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if len > max_frame {
        return Expected::Oversized;
    }
    if rest.len() == 4 && len > 0 {
        return Expected::LengthOnly;
    }
    if rest.len() < 4 + len {
        return Expected::Truncated;
    }
    let frame = &rest[4..4 + len];
    *rest = &rest[4 + len..];
    Expected::Frame(frame)
}

fuzz_target!(|data: &[u8]| {
    round_trip::<FrontToBack>(data);
    round_trip::<BackToFront>(data);

    let [limit, chunking, rest @ ..] = data else {
        return;
    };
    let max_frame = 8 + 4 * usize::from(*limit);
    let (chunks, stream) = rest.split_at(usize::from(*chunking % 8).min(rest.len()));
    let mut link = framed(Chunked::new(stream, chunks), max_frame as u32);
    let mut expected = stream;
    loop {
        let got = recv::<_, FrontToBack>(&mut link)
            .now_or_never()
            .expect("an in-memory stream is always ready");
        // The read buffer starts at 8 KiB and may grow to hold one whole frame.
        let capacity = link.read_buffer().capacity();
        assert!(
            capacity <= 4 * (8192 + 4 + max_frame),
            "buffer of {capacity} bytes"
        );
        match next_frame(&mut expected, max_frame) {
            Expected::End | Expected::LengthOnly => {
                assert!(matches!(got, Ok(None)), "{got:?} at the end");
                break;
            }
            Expected::Oversized | Expected::Truncated => {
                assert!(matches!(got, Err(FrameError::Io(_))), "{got:?}");
                break;
            }
            Expected::Frame(frame) => match (got, decode::<FrontToBack>(frame, usize::MAX)) {
                (Ok(Some(msg)), Ok(direct)) => assert_eq!(encode(&msg), encode(&direct)),
                (Err(FrameError::Decode(_)), Err(_)) => {}
                (got, direct) => panic!("framed {got:?}, direct {direct:?}"),
            },
        }
    }
});
