//! The front's check of the JWT in a client's hello (`[auth]` with HS256, an issuer and
//! an audience). Even first bytes: the rest is a token as any client may send it, which
//! is refused (no one signed it) with a reason and a message that never quote it. Odd:
//! the rest is a token's claims, signed here with the cluster's key, so the checks
//! after the signature are reached: a refusal is never about the signature, the
//! algorithm or the key, and an accepted token passes on exactly its `sub`, the
//! claims the config names, and its `rooms` as channel patterns. Also token channel
//! patterns against a reference matcher.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use centrum_config::{AuthConfig, Config, JwtAlgorithm, Secret};
use centrum_front::fuzzing::{
    JwtFailure, JwtGrant, JwtVerifier, MAX_IDENTITY_BYTES, channel_matches,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SECRET: &str = "fuzzing-secret-fuzzing-secret-32";

fn verifier() -> &'static JwtVerifier {
    static VERIFIER: OnceLock<JwtVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let mut config = Config::embedded_default();
        config.auth = Some(AuthConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: Some(Secret::new(SECRET)),
            secret_env: None,
            secret_file: None,
            public_key_file: None,
            jwks_file: None,
            issuer: Some("issuer".into()),
            audience: Some("centrum".into()),
            leeway_s: 30,
            claims: vec!["name".into(), "team".into()],
            channels_claim: "rooms".into(),
        });
        JwtVerifier::new(&config).expect("an HS256 [auth] with an inline secret")
    })
}

fn check_failure(f: &JwtFailure, token: &str) {
    assert!(f.message.starts_with(f.reason), "{f:?}");
    // Only a JWT-shaped token (three dot-separated parts) can be told apart from the
    // message's own words: the fuzzer once offered the message's text as the token.
    if token.len() >= 40 && token.matches('.').count() >= 2 {
        assert!(
            !f.message.contains(token),
            "the message quotes the token: {f:?}"
        );
    }
}

/// `*` matches any run of characters, everything else itself (by dynamic programming).
fn reference_match(pattern: &[u8], name: &[u8]) -> bool {
    let mut row = vec![false; name.len() + 1];
    row[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        if p == b'*' {
            let mut any = false;
            for (i, cell) in next.iter_mut().enumerate() {
                any |= row[i];
                *cell = any;
            }
        } else {
            for i in 0..name.len() {
                next[i + 1] = row[i] && name[i] == p;
            }
        }
        row = next;
    }
    row[name.len()]
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 2 == 0
        && let Some(at) = rest.iter().position(|&b| b == 0)
    {
        let (pattern, name) = (&rest[..at], &rest[at + 1..]);
        if let (Ok(p), Ok(n)) = (std::str::from_utf8(pattern), std::str::from_utf8(name)) {
            assert_eq!(
                channel_matches(p, n),
                reference_match(pattern, name),
                "{p:?} {n:?}"
            );
        }
    }
    let verifier = verifier();
    if mode & 1 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        match verifier.admit(token) {
            Ok(grant) => panic!("a token no one signed was let in: {token:?} -> {grant:?}"),
            Err(f) => {
                check_failure(&f, token);
                if token.is_empty() {
                    assert_eq!(f.reason, "missing", "no channel is anonymous");
                }
            }
        }
        return;
    }
    let header = if mode & 4 == 0 {
        r#"{"alg":"HS256","typ":"JWT"}"#
    } else {
        r#"{"alg":"HS256"}"#
    };
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(rest)
    );
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256)
        .expect("HMAC signs anything");
    let token = format!("{message}.{signature}");
    match verifier.admit(&token) {
        Ok(JwtGrant::Token {
            subject,
            claims,
            channels,
        }) => {
            let json: Value = serde_json::from_slice(rest).expect("accepted claims are JSON");
            assert_eq!(json["sub"].as_str(), Some(subject.as_str()));
            assert_eq!(json["iss"].as_str(), Some("issuer"));
            let mut size = subject.len();
            for (name, value) in &claims {
                assert!(name == "name" || name == "team", "{name} passed on");
                assert!(json.get(name).is_some());
                size += name.len() + value.len();
            }
            assert!(size <= MAX_IDENTITY_BYTES);
            let rooms = json.get("rooms").map(|r| {
                r.as_array()
                    .expect("accepted rooms are a list")
                    .iter()
                    .map(|p| p.as_str().expect("of strings").to_owned())
                    .collect::<Vec<_>>()
            });
            assert_eq!(channels, rooms);
        }
        Ok(JwtGrant::Anonymous) => panic!("a token is not anonymous"),
        Err(f) => {
            assert!(
                !matches!(f.reason, "signature" | "algorithm" | "key"),
                "{f:?} for a token signed with the key"
            );
            check_failure(&f, &token);
            assert!(!f.message.contains(&signature));
        }
    }
});
