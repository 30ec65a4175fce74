//! Resume tokens: what a `Welcome` hands a client so that a later `Hello`, on any
//! front, can claim its session back. A token names the front and key that held the
//! session, carries the session's random secret, and the session id to keep. Fronts
//! cannot check the secret; the backs can, since every join tells them the secret of
//! its session, and a resume is decided per membership by the back that holds it.

use centrum_protocol::{LinkResume, SessionKey};

/// A parsed resume token: the session id it keeps and the claim for the backs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResumeToken {
    pub(crate) session_id: String,
    pub(crate) claim: LinkResume,
}

/// Tokens longer than this are refused unparsed.
const MAX_TOKEN: usize = 256;

impl ResumeToken {
    /// `front.key.secret.session-id`, with key and secret in hex. Front ids and
    /// session ids never contain a dot.
    pub(crate) fn encode(&self) -> String {
        format!(
            "{}.{:x}.{:016x}.{}",
            self.claim.front, self.claim.session, self.claim.secret, self.session_id
        )
    }

    /// None for anything that is not a token this version of centrum made.
    pub(crate) fn parse(token: &str) -> Option<Self> {
        if token.len() > MAX_TOKEN {
            return None;
        }
        let mut parts = token.split('.');
        let (front, key, secret, session_id) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        if parts.next().is_some()
            || !is_id(front)
            || !is_id(session_id)
            || !hex(key)
            || !hex(secret)
            || secret.len() != 16
        {
            return None;
        }
        Some(Self {
            session_id: session_id.to_owned(),
            claim: LinkResume {
                front: front.to_owned(),
                session: SessionKey::from_str_radix(key, 16).ok()?,
                secret: u64::from_str_radix(secret, 16).ok()?,
            },
        })
    }
}

/// Front ids (as config allows them) and session ids built from them.
fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh secret from the operating system's random source. Without one (it never
/// fails on the platforms centrum runs on) the session simply cannot be resumed:
/// the back refuses a zero secret.
pub(crate) fn new_secret() -> u64 {
    getrandom::u64().unwrap_or(0)
}

/// A number for this process that a restarted one will not repeat: random, or
/// without a random source, the clock and the pid.
pub(crate) fn new_instance() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ u64::from(std::process::id()).rotate_left(32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> ResumeToken {
        ResumeToken {
            session_id: "front-1-42".into(),
            claim: LinkResume {
                front: "front_2".into(),
                session: 0x2a,
                secret: 0x9f3c_51e0_7d2a_4c81,
            },
        }
    }

    #[test]
    fn a_token_round_trips() {
        let text = token().encode();
        assert_eq!(text, "front_2.2a.9f3c51e07d2a4c81.front-1-42");
        assert_eq!(ResumeToken::parse(&text), Some(token()));
    }

    #[test]
    fn anything_else_is_not_a_token() {
        for bad in [
            "",
            "front-1",
            "front-1.2a.9f3c51e07d2a4c81",
            "front-1.2a.9f3c51e07d2a4c81.s.extra",
            "front-1.zz.9f3c51e07d2a4c81.s",
            "front-1.2a.9f3c.s",
            "front 1.2a.9f3c51e07d2a4c81.s",
            "front-1.2a.9f3c51e07d2a4c81.",
            "front-1.2a.9f3c51e07d2a4c8g.s",
            "front-1.+2a.9f3c51e07d2a4c81.s",
            "front-1.fffffffffffffffff.9f3c51e07d2a4c81.s",
        ] {
            assert_eq!(ResumeToken::parse(bad), None, "{bad:?}");
        }
        assert_eq!(ResumeToken::parse(&"a".repeat(MAX_TOKEN + 1)), None);
    }
}
