//! Seat tokens: what the matchmaker hands a client for one join of one room, signed
//! with the cluster secret so that the room's back can check it without asking the
//! master. A token names the room, the seat's number and when it expires.

use hmac::Mac;

use crate::auth::ClusterKey;

/// A seat as a token carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub room: String,
    /// The matchmaker's number for the seat: a back takes each number once.
    pub number: u64,
    /// When the seat stops being good, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

/// Why a seat token was not taken. The code (`as_str`) starts the rejection's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SeatError {
    #[error("seat_required: a room is joined with a seat from the matchmaker")]
    Required,
    #[error("seat_invalid: the seat token is not one this cluster made for this room")]
    Invalid,
    #[error("seat_expired: the seat reservation expired; ask the matchmaker again")]
    Expired,
    #[error("seat_used: this seat was already taken; ask the matchmaker again")]
    Used,
}

/// Tokens longer than this are refused unread: a room id is at most 130 characters.
const MAX_TOKEN: usize = 256;

/// The bytes of the HMAC a token carries: 128 bits, in hex.
const MAC_BYTES: usize = 16;

const LABEL: &[u8] = b"centrum seat";

impl Seat {
    /// The token: `room:number:expires_ms:mac`, number in hex, mac the first 16 bytes of
    /// an HMAC-SHA256 of the rest under the cluster secret, in hex.
    pub fn token(&self, key: &ClusterKey) -> String {
        let mac = self.mac(key).finalize().into_bytes();
        let mut token = format!("{}:{:x}:{}:", self.room, self.number, self.expires_ms);
        for b in &mac[..MAC_BYTES] {
            token.push_str(&format!("{b:02x}"));
        }
        token
    }

    /// The seat `token` names, if this cluster's secret signed it. Expiry is the
    /// caller's to check ([`Seat::check`]).
    ///
    /// # Errors
    /// [`SeatError::Invalid`] for anything else.
    pub fn parse(key: &ClusterKey, token: &str) -> Result<Seat, SeatError> {
        if token.len() > MAX_TOKEN {
            return Err(SeatError::Invalid);
        }
        let mut parts = token.split(':');
        let (Some(room), Some(number), Some(expires), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SeatError::Invalid);
        };
        let seat = Seat {
            room: room.to_owned(),
            number: u64::from_str_radix(number, 16).map_err(|_| SeatError::Invalid)?,
            expires_ms: expires.parse().map_err(|_| SeatError::Invalid)?,
        };
        let mac = hex(mac).ok_or(SeatError::Invalid)?;
        seat.mac(key)
            .verify_truncated_left(&mac)
            .map_err(|_| SeatError::Invalid)?;
        Ok(seat)
    }

    /// As [`Seat::parse`], and the seat must be for `room` and not expired at `now_ms`.
    ///
    /// # Errors
    /// [`SeatError::Invalid`] or [`SeatError::Expired`].
    pub fn check(
        key: &ClusterKey,
        token: &str,
        room: &str,
        now_ms: u64,
    ) -> Result<Seat, SeatError> {
        let seat = Seat::parse(key, token)?;
        if seat.room != room {
            return Err(SeatError::Invalid);
        }
        if now_ms >= seat.expires_ms {
            return Err(SeatError::Expired);
        }
        Ok(seat)
    }

    fn mac(&self, key: &ClusterKey) -> hmac::Hmac<sha2::Sha256> {
        let (number, expires) = (self.number.to_be_bytes(), self.expires_ms.to_be_bytes());
        key.mac_parts(LABEL, &[self.room.as_bytes(), &number, &expires])
    }
}

/// Milliseconds since the Unix epoch, the clock seat expiries are in. The master and
/// the backs must agree on it within a second or so (NTP does far better).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != MAC_BYTES * 2 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ClusterKey {
        ClusterKey::new(b"a cluster secret of some length")
    }

    fn seat() -> Seat {
        Seat {
            room: "duel.k3x9q2m7p4za.back-1".into(),
            number: 42,
            expires_ms: 2_000,
        }
    }

    #[test]
    fn a_token_checks_only_for_its_room_before_it_expires_under_the_same_secret() {
        let token = seat().token(&key());
        assert_eq!(Seat::check(&key(), &token, &seat().room, 1_999), Ok(seat()));
        assert_eq!(
            Seat::check(&key(), &token, &seat().room, 2_000),
            Err(SeatError::Expired)
        );
        assert_eq!(
            Seat::check(&key(), &token, "duel.other.back-1", 0),
            Err(SeatError::Invalid)
        );
        let other = ClusterKey::new(b"another cluster secret entirely");
        assert_eq!(Seat::parse(&other, &token), Err(SeatError::Invalid));
    }

    #[test]
    fn a_changed_or_malformed_token_is_invalid() {
        let token = seat().token(&key());
        let later = token.replace(":2000:", ":9000:");
        assert_eq!(Seat::parse(&key(), &later), Err(SeatError::Invalid));
        for bad in [
            "",
            ":::",
            "a:b:c:d:e",
            "room:zz:1:00",
            &token[..token.len() - 2],
            &"x".repeat(300),
            "room:1:1:é0000000000000000000000000000000",
        ] {
            assert_eq!(Seat::parse(&key(), bad), Err(SeatError::Invalid), "{bad:?}");
        }
    }
}
