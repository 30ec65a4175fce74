//! Resume tokens, which any client may present in its Hello: arbitrary text parses to
//! a token or to nothing; a token that parses encodes to text that parses back to it,
//! with ids a front could have made. And tokens built from fuzzer-chosen parts parse
//! back exactly when their ids are valid.
#![no_main]

use centrum_front::fuzzing::{encode_resume_token, parse_resume_token};
use centrum_protocol::LinkResume;
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Parts {
    front: String,
    session: u64,
    secret: u64,
    session_id: String,
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some((session_id, claim)) = parse_resume_token(text)
    {
        assert!(text.len() <= 256);
        assert!(is_id(&session_id) && is_id(&claim.front), "{text:?}");
        let again = encode_resume_token(&session_id, &claim);
        assert_eq!(parse_resume_token(&again), Some((session_id, claim)));
        // Only the hex digits' case and leading zeros may differ.
        assert_eq!(again.split('.').count(), 4);
    }
    let Ok(parts) = Parts::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let claim = LinkResume {
        front: parts.front,
        session: parts.session,
        secret: parts.secret,
    };
    let token = encode_resume_token(&parts.session_id, &claim);
    let valid = is_id(&claim.front) && is_id(&parts.session_id) && token.len() <= 256;
    let parsed = parse_resume_token(&token);
    if valid {
        assert_eq!(parsed, Some((parts.session_id, claim)), "{token:?}");
    } else {
        assert_eq!(parsed, None, "{token:?}");
    }
});
