//! Who may connect to a front: per client address, a cap on open connections and a
//! token bucket of new ones (governor's keyed limiter); the client's address behind
//! trusted proxies (`X-Forwarded-For`); the origins whose pages may open a WebSocket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

use centrum_config::{Config, IpRange};

/// How often the rate limiter forgets addresses whose bucket is full again, so that it
/// holds only those seen recently.
const FORGET_EVERY: Duration = Duration::from_secs(1);

/// One client address as the limits count it: an IPv4 address, or the /64 an IPv6
/// address is in (one subscriber's network, which it can fill with addresses at will).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct IpKey(IpAddr);

impl IpKey {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpKey(IpAddr::V6(Ipv6Addr::from(network)))
            }
            v4 => IpKey(v4),
        }
    }
}

/// The front's access rules and per-address counts; shared by every connection.
#[derive(Debug)]
pub(crate) struct Access {
    trusted: Vec<IpRange>,
    /// Lowercase; empty allows any origin.
    origins: Vec<String>,
    /// 0: no cap.
    max_per_ip: u32,
    /// Open connections per address; an entry goes when its count drops to 0, so the
    /// map holds at most `limits.max_connections` entries.
    open: Mutex<HashMap<IpKey, u32>>,
    /// New connections per address, and its rate per second.
    rate: Option<(DefaultKeyedRateLimiter<IpKey>, u32)>,
    forgotten_at: Mutex<Instant>,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `limits.max_connections_per_ip` connections from this address are open.
    TooMany(u32),
    /// Over `limits.connections_per_ip_per_s`.
    TooFast(u32),
}

impl Refused {
    /// The text of the 429 answer.
    pub(crate) fn message(&self) -> String {
        match self {
            Refused::TooMany(n) => format!("{n} connections from your address are open already"),
            Refused::TooFast(n) => {
                format!("more than {n} new connections per second from your address; slow down")
            }
        }
    }
}

/// A connection counted against its address until it is dropped.
#[derive(Debug)]
pub(crate) struct IpSlot {
    access: Arc<Access>,
    /// None when connections per address are not capped.
    key: Option<IpKey>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut open = self.access.open.lock();
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

impl Access {
    pub(crate) fn new(config: &Config) -> Self {
        let limits = &config.limits;
        let rate = NonZeroU32::new(limits.connections_per_ip_per_s).map(|per_s| {
            // Validation keeps the burst at 1 or more; the fallback only spares a panic.
            let burst = NonZeroU32::new(limits.connections_per_ip_burst).unwrap_or(NonZeroU32::MIN);
            let quota = Quota::per_second(per_s).allow_burst(burst);
            (RateLimiter::keyed(quota), per_s.get())
        });
        Self {
            trusted: config.access.trusted_proxies.clone(),
            origins: config
                .access
                .allowed_origins
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
            max_per_ip: limits.max_connections_per_ip,
            open: Mutex::new(HashMap::new()),
            rate,
            forgotten_at: Mutex::new(Instant::now()),
        }
    }

    /// Whether `peer` is a trusted proxy: its connections are admitted once their
    /// request head names the client.
    pub(crate) fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(peer))
    }

    /// Counts a new connection from `ip`, or refuses it.
    ///
    /// # Errors
    /// [`Refused`] when the address has its maximum open or connects too fast; a
    /// connection refused at the cap takes nothing from the rate.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<IpSlot, Refused> {
        let key = IpKey::of(ip);
        let capped = self.max_per_ip > 0;
        let mut open = self.open.lock();
        if capped && open.get(&key).is_some_and(|&n| n >= self.max_per_ip) {
            return Err(Refused::TooMany(self.max_per_ip));
        }
        if let Some((rate, per_s)) = &self.rate {
            self.forget_old(rate);
            if rate.check_key(&key).is_err() {
                return Err(Refused::TooFast(*per_s));
            }
        }
        if capped {
            *open.entry(key).or_insert(0) += 1;
        }
        Ok(IpSlot {
            access: self.clone(),
            key: capped.then_some(key),
        })
    }

    /// Drops addresses whose bucket has refilled, at most once per [`FORGET_EVERY`].
    fn forget_old(&self, rate: &DefaultKeyedRateLimiter<IpKey>) {
        let Some(mut at) = self.forgotten_at.try_lock() else {
            return;
        };
        if at.elapsed() >= FORGET_EVERY {
            *at = Instant::now();
            rate.retain_recent();
            rate.shrink_to_fit();
        }
    }

    /// The client's address: `peer`, unless `peer` is a trusted proxy, then the
    /// rightmost address of `forwarded` (the `X-Forwarded-For` values, in order) that
    /// is not a trusted proxy. Each proxy appends the address it got the request from,
    /// so the addresses left of the first untrusted one are whatever the client wrote.
    pub(crate) fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl Iterator<Item = &'a str>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Not an address: the hop that wrote it is as far as we can see.
                break;
            };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }

    /// Whether a WebSocket upgrade with this `Origin` header may go on.
    pub(crate) fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.is_empty()
            || self
                .origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin.trim()))
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use centrum_config::AccessConfig;

    use super::*;

    fn access(change: impl FnOnce(&mut Config)) -> Arc<Access> {
        let mut config = Config::embedded_default();
        change(&mut config);
        Arc::new(Access::new(&config))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn open_connections_per_address_are_capped_and_freed() {
        let access = access(|c| {
            c.limits.max_connections_per_ip = 2;
            c.limits.connections_per_ip_per_s = 0;
        });
        let a = access.admit(ip("10.0.0.1")).unwrap();
        let b = access.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            access.admit(ip("10.0.0.1")).unwrap_err(),
            Refused::TooMany(2)
        );
        // Another address, and the same one mapped into IPv6, counted as itself.
        let _c = access.admit(ip("10.0.0.2")).unwrap();
        assert!(access.admit(ip("::ffff:10.0.0.1")).is_err());
        drop(a);
        let _d = access.admit(ip("10.0.0.1")).unwrap();
        drop(b);
        drop(_d);
        drop(_c);
        assert!(
            access.open.lock().is_empty(),
            "no entry outlives its connections"
        );
    }

    #[test]
    fn an_ipv6_network_counts_as_one_address() {
        let access = access(|c| {
            c.limits.max_connections_per_ip = 1;
            c.limits.connections_per_ip_per_s = 0;
        });
        let _a = access.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(access.admit(ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(access.admit(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn new_connections_per_address_are_rate_limited() {
        let access = access(|c| {
            c.limits.max_connections_per_ip = 0;
            c.limits.connections_per_ip_per_s = 1;
            c.limits.connections_per_ip_burst = 3;
        });
        for _ in 0..3 {
            drop(access.admit(ip("10.0.0.1")).unwrap());
        }
        assert_eq!(
            access.admit(ip("10.0.0.1")).unwrap_err(),
            Refused::TooFast(1)
        );
        assert!(access.admit(ip("10.0.0.2")).is_ok());
        let unlimited = self::access(|c| {
            c.limits.max_connections_per_ip = 0;
            c.limits.connections_per_ip_per_s = 0;
        });
        let held: Vec<_> = (0..1_000)
            .map(|_| unlimited.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(held.len(), 1_000);
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let access = access(|c| {
            c.access = AccessConfig {
                trusted_proxies: vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1".parse().unwrap()],
                allowed_origins: Vec::new(),
            };
        });
        let xff = |peer: &str, values: &[&str]| {
            access
                .client_ip(ip(peer), values.iter().copied())
                .to_string()
        };
        // Untrusted peers: their header is ignored.
        assert_eq!(xff("203.0.113.9", &["198.51.100.1"]), "203.0.113.9");
        // A trusted proxy: the rightmost untrusted address, whatever the client wrote
        // to its left.
        assert_eq!(xff("10.1.1.1", &["198.51.100.1"]), "198.51.100.1");
        assert_eq!(
            xff("127.0.0.1", &["6.6.6.6, 198.51.100.1", "10.2.2.2"]),
            "198.51.100.1"
        );
        assert_eq!(xff("10.1.1.1", &["[2001:db8::1]:443"]), "2001:db8::1");
        // Nothing forwarded, or only proxies: the last proxy seen.
        assert_eq!(xff("10.1.1.1", &[]), "10.1.1.1");
        assert_eq!(xff("10.1.1.1", &["10.3.3.3"]), "10.3.3.3");
        // Garbage stops the walk at the hop that wrote it.
        assert_eq!(xff("10.1.1.1", &["198.51.100.1, unknown"]), "10.1.1.1");
    }

    #[test]
    fn origins_are_checked_only_when_listed() {
        let any = access(|_| {});
        assert!(any.origin_allowed("https://evil.example"));
        let listed = access(|c| {
            c.access.allowed_origins = vec!["https://Game.example.com".into()];
        });
        assert!(listed.origin_allowed("https://game.example.com"));
        assert!(listed.origin_allowed("HTTPS://GAME.EXAMPLE.COM"));
        assert!(!listed.origin_allowed("https://game.example.com.evil.example"));
        assert!(!listed.origin_allowed("http://game.example.com"));
        assert!(!listed.origin_allowed("null"));
    }
}
