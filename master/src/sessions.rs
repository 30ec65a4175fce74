//! The dashboard's logins: the cookie holds a random session id, never the admin token,
//! and the master keeps each id's expiry in a bounded table, so that a logout or an
//! expiry ends the login on the server whatever the browser kept.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Random bytes in a session id: 128 bits, beyond guessing.
const ID_BYTES: usize = 16;

/// The table of live sessions: id -> expiry.
#[derive(Debug)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Instant>>,
    lifetime: Duration,
    max: usize,
}

/// A session just opened.
#[derive(Debug)]
pub(crate) struct Opened {
    /// What the cookie carries: [`ID_BYTES`] random bytes in lowercase hex.
    pub(crate) id: String,
    /// An older session was ended to keep the table at its size.
    pub(crate) evicted: bool,
}

impl Sessions {
    /// A table of at most `max` (at least 1) sessions, each lasting `lifetime`.
    pub(crate) fn new(lifetime: Duration, max: usize) -> Self {
        Self {
            by_id: Mutex::new(HashMap::new()),
            lifetime,
            max: max.max(1),
        }
    }

    pub(crate) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Opens a session at `now`. At the table's size, expired sessions go first, then,
    /// if none had expired, the one closest to expiry (the oldest: all last as long).
    ///
    /// # Errors
    /// When the operating system has no randomness to give.
    pub(crate) fn open(&self, now: Instant) -> Result<Opened, getrandom::Error> {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes)?;
        let mut id = String::with_capacity(2 * ID_BYTES);
        for byte in bytes {
            // Writing to a String cannot fail.
            let _ = write!(id, "{byte:02x}");
        }
        let mut by_id = self.by_id.lock();
        let mut evicted = false;
        if by_id.len() >= self.max {
            by_id.retain(|_, expiry| *expiry > now);
        }
        if by_id.len() >= self.max {
            let oldest = by_id
                .iter()
                .min_by_key(|(_, expiry)| **expiry)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                by_id.remove(&oldest);
                evicted = true;
            }
        }
        by_id.insert(id.clone(), now + self.lifetime);
        Ok(Opened { id, evicted })
    }

    /// Whether `id` is a session in force at `now`; an expired one is forgotten.
    pub(crate) fn is_live(&self, id: &str, now: Instant) -> bool {
        let mut by_id = self.by_id.lock();
        match by_id.get(id) {
            Some(expiry) if *expiry > now => true,
            Some(_) => {
                by_id.remove(id);
                false
            }
            None => false,
        }
    }

    /// Ends session `id`; false if there was none.
    pub(crate) fn close(&self, id: &str) -> bool {
        self.by_id.lock().remove(id).is_some()
    }

    /// Sessions in force at `now`.
    pub(crate) fn live(&self, now: Instant) -> usize {
        self.by_id
            .lock()
            .values()
            .filter(|expiry| **expiry > now)
            .count()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_id.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn ids_are_128_random_bits_in_hex() {
        let sessions = Sessions::new(HOUR, 8);
        let now = Instant::now();
        let a = sessions.open(now).expect("random").id;
        let b = sessions.open(now).expect("random").id;
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        assert!(sessions.is_live(&a, now) && sessions.is_live(&b, now));
        assert!(!sessions.is_live("0123456789abcdef0123456789abcdef", now));
    }

    #[test]
    fn a_session_ends_at_its_expiry_or_its_logout() {
        let sessions = Sessions::new(HOUR, 8);
        let now = Instant::now();
        let id = sessions.open(now).expect("random").id;
        assert!(sessions.is_live(&id, now + HOUR - Duration::from_millis(1)));
        assert!(!sessions.is_live(&id, now + HOUR));
        assert_eq!(sessions.len(), 0, "an expired session is forgotten");

        let id = sessions.open(now).expect("random").id;
        assert!(sessions.close(&id));
        assert!(!sessions.is_live(&id, now));
        assert!(!sessions.close(&id));
    }

    #[test]
    fn a_full_table_drops_expired_sessions_first_then_the_oldest() {
        let sessions = Sessions::new(HOUR, 2);
        let t0 = Instant::now();
        let first = sessions.open(t0).expect("random");
        let second = sessions.open(t0 + Duration::from_secs(1)).expect("random");
        assert!(!first.evicted && !second.evicted);
        let third = sessions.open(t0 + Duration::from_secs(2)).expect("random");
        assert!(third.evicted);
        let now = t0 + Duration::from_secs(3);
        assert!(!sessions.is_live(&first.id, now), "the oldest went");
        assert!(sessions.is_live(&second.id, now));
        assert!(sessions.is_live(&third.id, now));
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.live(now), 2);
        assert_eq!(sessions.live(t0 + HOUR + Duration::from_secs(1)), 1);

        // Once both have expired, a new session replaces them without evicting a live one.
        let later = t0 + HOUR + Duration::from_secs(10);
        let fourth = sessions.open(later).expect("random");
        assert!(!fourth.evicted);
        assert_eq!(sessions.len(), 1);
    }
}
