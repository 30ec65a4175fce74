//! Seat tokens, which any client may present in a room's Join: arbitrary text is a
//! seat of this cluster or nothing, and never one signed with another secret. A seat
//! made from fuzzer-chosen parts parses back to exactly those parts, and is refused
//! once any byte of its token changes.
#![no_main]

use centrum_net::auth::ClusterKey;
use centrum_net::seat::{Seat, SeatError};
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Parts {
    room: String,
    number: u64,
    expires_ms: u64,
    flip: usize,
}

fuzz_target!(|data: &[u8]| {
    let key = ClusterKey::new(b"the fuzzed cluster's secret");
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(seat) = Seat::parse(&key, text)
    {
        // Only a token signed with this secret parses (the corpus holds some); the
        // signature binds the values, whatever digits spelled them.
        assert_eq!(Seat::parse(&key, &seat.token(&key)), Ok(seat.clone()), "{text:?}");
        let other = ClusterKey::new(b"another cluster's secret");
        assert_eq!(Seat::parse(&other, text), Err(SeatError::Invalid));
    }
    let Ok(parts) = Parts::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let seat = Seat {
        room: parts.room,
        number: parts.number,
        expires_ms: parts.expires_ms,
    };
    let token = seat.token(&key);
    // A room id never holds ':', and a token is at most 256 bytes.
    if seat.room.contains(':') || token.len() > 256 {
        assert_eq!(Seat::parse(&key, &token), Err(SeatError::Invalid), "{token:?}");
        return;
    }
    assert_eq!(Seat::parse(&key, &token), Ok(seat.clone()));
    let other = ClusterKey::new(b"another cluster's secret");
    assert_eq!(Seat::parse(&other, &token), Err(SeatError::Invalid));
    let mut bytes = token.clone().into_bytes();
    let at = parts.flip % bytes.len();
    bytes[at] = bytes[at].wrapping_add(1);
    if let Ok(changed) = String::from_utf8(bytes)
        && let Ok(parsed) = Seat::parse(&key, &changed)
    {
        // A changed digit may still read as the same value (a hex digit's case).
        assert_eq!(parsed, seat, "{changed:?}");
    }
});
