//! The dashboard login's rate limit: so many attempts per client address per minute
//! (governor's GCRA, keyed by address), with the table of addresses bounded.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Addresses remembered at once. Past it, addresses whose allowance is whole again are
/// forgotten; if the table is still full, logins from any address are refused until
/// allowances refill (at most a minute): a flood of addresses can delay the dashboard's
/// logins, never open more guesses. `Authorization: Bearer` is not limited by this.
pub(crate) const MAX_ADDRESSES: usize = 4096;

#[derive(Debug)]
pub(crate) struct LoginLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Time until one more attempt is allowed, when the table of addresses is full.
    refill: Duration,
    max_addresses: usize,
}

impl LoginLimiter {
    /// `per_minute` attempts per address per minute, all at once if need be.
    pub(crate) fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_ADDRESSES)
    }

    fn with_capacity(per_minute: u32, max_addresses: usize) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            refill: Duration::from_secs(60) / per_minute.get(),
            max_addresses,
        }
    }

    /// Takes one attempt from `address`'s allowance.
    ///
    /// # Errors
    /// How long until the next attempt is allowed, when none is now.
    pub(crate) fn check(&self, address: IpAddr) -> Result<(), Duration> {
        let key = key(address);
        if self.limiter.len() >= self.max_addresses {
            self.limiter.retain_recent();
            if self.limiter.len() >= self.max_addresses {
                return Err(self.refill);
            }
        }
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }
}

/// One key per IPv4 address and per IPv6 /64 (what one host is usually given); an
/// IPv4-mapped IPv6 address is its IPv4 address.
fn key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn an_address_gets_its_burst_then_waits() {
        let limiter = LoginLimiter::new(5);
        for _ in 0..5 {
            assert_eq!(limiter.check(ip("192.0.2.1")), Ok(()));
        }
        let wait = limiter
            .check(ip("192.0.2.1"))
            .expect_err("the sixth is refused");
        // One attempt comes back every 12 s.
        assert!(
            wait > Duration::from_secs(11) && wait <= Duration::from_secs(12),
            "{wait:?}"
        );
        assert_eq!(limiter.check(ip("192.0.2.2")), Ok(()), "another address");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let limiter = LoginLimiter::new(2);
        assert_eq!(limiter.check(ip("2001:db8:1:2::1")), Ok(()));
        assert_eq!(limiter.check(ip("2001:db8:1:2:ffff::9")), Ok(()));
        assert!(limiter.check(ip("2001:db8:1:2::3")).is_err(), "same /64");
        assert_eq!(limiter.check(ip("2001:db8:1:3::1")), Ok(()));

        assert_eq!(limiter.check(ip("198.51.100.7")), Ok(()));
        assert_eq!(limiter.check(ip("::ffff:198.51.100.7")), Ok(()));
        assert!(limiter.check(ip("198.51.100.7")).is_err());
    }

    #[test]
    fn a_full_table_refuses_new_addresses_rather_than_grow() {
        let limiter = LoginLimiter::with_capacity(1, 3);
        for last in 1..=3 {
            assert_eq!(limiter.check(ip(&format!("203.0.113.{last}"))), Ok(()));
        }
        assert_eq!(
            limiter.check(ip("203.0.113.4")),
            Err(Duration::from_secs(60))
        );
        assert_eq!(limiter.limiter.len(), 3);
    }
}
