//! The registry of live nodes: who is registered, over which control link, since when,
//! and what each last reported. A cheap `Clone` handle; its lock is held only to copy
//! an entry in or out, never across an `.await`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use centrum_protocol::{NodeStats, Register, Role};

/// The live nodes, by id. Ids are unique over fronts and backs (the config checks it), so
/// one map holds both roles, and "at most one live instance per id" is one lookup.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    nodes: Mutex<BTreeMap<String, Node>>,
    next_link: AtomicU64,
    /// A node not heard from for this long is no longer live.
    stale_after: Duration,
    /// Clients sent to a front that have not shown up this long after the first of
    /// them are taken for gone (the matchmaker's seat lifetime).
    handout_ttl: Duration,
}

/// One registration, that is one control link: the link that ends removes its own entry
/// and never the entry of a newer instance of the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkId(u64);

/// A registered node as the registry last saw it.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) link: LinkId,
    pub(crate) role: Role,
    pub(crate) id: String,
    pub(crate) pid: u32,
    pub(crate) listen: String,
    pub(crate) registered: Instant,
    /// Registration or the latest heartbeat.
    pub(crate) last_seen: Instant,
    /// Shared so that views of the registry copy a pointer, not every metric.
    pub(crate) stats: Arc<NodeStats>,
    /// The heartbeat before `stats` and when it arrived: counters' rates are the change
    /// between the two, so every reader sees the same rates whenever it asks.
    pub(crate) previous: Option<(Instant, Arc<NodeStats>)>,
    /// Clients sent to this front (gate, seats) that its heartbeats have not yet shown
    /// connected: they count as its load, so a burst of clients is spread over fronts.
    /// A heartbeat takes off as many as the front's clients grew by, not all of them:
    /// one sent a moment before the heartbeat has not connected yet.
    pub(crate) handouts: u32,
    /// When the oldest of `handouts` was sent: all of them are dropped once it is older
    /// than the handout lifetime (clients that never came).
    pub(crate) handouts_since: Option<Instant>,
}

/// A live node already holds the id; the newcomer is refused with this as the reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{role} {id} is already running (pid {pid}, registered {age:.1} s ago)",
    role = role_name(*role),
    age = age.as_secs_f64()
)]
pub(crate) struct AlreadyLiveError {
    pub(crate) role: Role,
    pub(crate) id: String,
    pub(crate) pid: u32,
    pub(crate) age: Duration,
}

impl Registry {
    /// An empty registry in which a node silent for `stale_after` stops counting as live.
    pub(crate) fn new(stale_after: Duration, handout_ttl: Duration) -> Self {
        Registry {
            inner: Arc::new(Inner {
                nodes: Mutex::new(BTreeMap::new()),
                next_link: AtomicU64::new(1),
                stale_after,
                handout_ttl,
            }),
        }
    }

    /// How long a node may stay silent and still count as live.
    pub(crate) fn stale_after(&self) -> Duration {
        self.inner.stale_after
    }

    /// Records a newly registered node, unless a live node holds its id. A stale entry
    /// for the id (its link not yet closed) is replaced.
    ///
    /// # Errors
    /// [`AlreadyLiveError`] describing the live holder of the id.
    pub(crate) fn insert(&self, reg: &Register, now: Instant) -> Result<LinkId, AlreadyLiveError> {
        let link = LinkId(self.inner.next_link.fetch_add(1, Ordering::Relaxed));
        let mut nodes = self.inner.nodes.lock();
        if let Some(old) = nodes.get(&reg.id)
            && self.is_live(old, now)
        {
            return Err(AlreadyLiveError {
                role: old.role,
                id: old.id.clone(),
                pid: old.pid,
                age: now.saturating_duration_since(old.registered),
            });
        }
        nodes.insert(
            reg.id.clone(),
            Node {
                link,
                role: reg.role,
                id: reg.id.clone(),
                pid: reg.pid,
                listen: reg.listen.clone(),
                registered: now,
                last_seen: now,
                stats: Arc::default(),
                previous: None,
                handouts: 0,
                handouts_since: None,
            },
        );
        Ok(link)
    }

    /// Replaces the stats of the node registered over `link`. `false` when that
    /// registration is gone (replaced after it went stale): its link should close.
    pub(crate) fn heartbeat(&self, id: &str, link: LinkId, stats: NodeStats, now: Instant) -> bool {
        let stats = Arc::new(stats);
        let replaced = {
            let mut nodes = self.inner.nodes.lock();
            match nodes.get_mut(id) {
                Some(node) if node.link == link => {
                    let arrived = stats.clients.saturating_sub(node.stats.clients);
                    node.handouts = node.handouts.saturating_sub(arrived);
                    let expired = node
                        .handouts_since
                        .is_some_and(|t| now.saturating_duration_since(t) > self.inner.handout_ttl);
                    if node.handouts == 0 || expired {
                        node.handouts = 0;
                        node.handouts_since = None;
                    }
                    let last = std::mem::replace(&mut node.stats, stats);
                    let seen = std::mem::replace(&mut node.last_seen, now);
                    Some(node.previous.replace((seen, last)))
                }
                _ => None,
            }
        };
        // The stats dropped out of the window are freed here, after the lock.
        replaced.is_some()
    }

    /// Removes the registration made over `link`, if it is still the current one.
    pub(crate) fn remove(&self, id: &str, link: LinkId) -> bool {
        let removed = {
            let mut nodes = self.inner.nodes.lock();
            match nodes.get(id) {
                Some(node) if node.link == link => nodes.remove(id),
                _ => None,
            }
        };
        removed.is_some()
    }

    /// Every live node, sorted by id.
    pub(crate) fn live(&self, now: Instant) -> Vec<Node> {
        let nodes = self.inner.nodes.lock();
        nodes
            .values()
            .filter(|node| self.is_live(node, now))
            .cloned()
            .collect()
    }

    /// Whether node `id` is live.
    pub(crate) fn is_live_id(&self, id: &str, now: Instant) -> bool {
        let nodes = self.inner.nodes.lock();
        nodes.get(id).is_some_and(|node| self.is_live(node, now))
    }

    /// The live front with the fewest clients, counting those sent to it since its
    /// last heartbeat; ties go to the smallest id. The client about to be sent there
    /// is counted too.
    pub(crate) fn least_loaded_front(&self, now: Instant) -> Option<Node> {
        let mut nodes = self.inner.nodes.lock();
        let stale_after = self.inner.stale_after;
        let node = nodes
            .values_mut()
            .filter(|node| {
                node.role == Role::Front
                    && now.saturating_duration_since(node.last_seen) < stale_after
            })
            // The map iterates in id order and `min_by_key` keeps the first minimum.
            .min_by_key(|node| node.stats.clients + node.handouts)?;
        node.handouts += 1;
        node.handouts_since.get_or_insert(now);
        Some(node.clone())
    }

    fn is_live(&self, node: &Node, now: Instant) -> bool {
        now.saturating_duration_since(node.last_seen) < self.inner.stale_after
    }
}

/// `front` or `back`, as the config and the JSON API spell it.
pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Front => "front",
        Role::Back => "back",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use centrum_protocol::CLUSTER_VERSION;

    fn register(role: Role, id: &str, pid: u32) -> Register {
        Register {
            version: CLUSTER_VERSION,
            role,
            id: id.into(),
            pid,
            listen: "127.0.0.1:1".into(),
            nonce: Default::default(),
        }
    }

    fn stats(clients: u32) -> NodeStats {
        NodeStats {
            clients,
            ..NodeStats::default()
        }
    }

    #[test]
    fn a_live_id_is_refused_until_it_goes_stale() {
        let registry = Registry::new(Duration::from_secs(3), Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let first = registry
            .insert(&register(Role::Back, "back-1", 123), t0)
            .expect("first instance");
        assert!(registry.heartbeat("back-1", first, stats(0), at(2000)));
        let err = registry
            .insert(&register(Role::Back, "back-1", 456), at(4200))
            .expect_err("the first instance heartbeated 2.2 s ago: still live");
        assert_eq!(
            err.to_string(),
            "back back-1 is already running (pid 123, registered 4.2 s ago)"
        );

        // Silent for 3 s: no longer live, so a new instance takes the id over.
        assert!(registry.live(at(5000)).is_empty());
        let second = registry
            .insert(&register(Role::Back, "back-1", 456), at(5100))
            .expect("the stale instance is replaced");
        // The old link ending neither removes nor updates the new registration.
        assert!(!registry.heartbeat("back-1", first, stats(9), at(5200)));
        assert!(!registry.remove("back-1", first));
        let live = registry.live(at(5300));
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].pid, live[0].stats.clients), (456, 0));

        assert!(registry.remove("back-1", second));
        assert!(registry.live(at(5300)).is_empty());
        registry
            .insert(&register(Role::Back, "back-1", 789), at(5400))
            .expect("a removed id is free again");
    }

    #[test]
    fn the_least_loaded_live_front_wins_ties_by_id() {
        let registry = Registry::new(Duration::from_secs(3), Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(registry.least_loaded_front(t0).is_none());
        let back = registry
            .insert(&register(Role::Back, "a-back", 1), t0)
            .expect("back");
        let f1 = registry
            .insert(&register(Role::Front, "front-1", 2), t0)
            .expect("front-1");
        let f2 = registry
            .insert(&register(Role::Front, "front-2", 3), t0)
            .expect("front-2");
        assert!(registry.heartbeat("a-back", back, stats(0), at(100)));
        assert!(registry.heartbeat("front-1", f1, stats(3), at(100)));
        assert!(registry.heartbeat("front-2", f2, stats(1), at(100)));
        let pick = |ms| registry.least_loaded_front(at(ms)).map(|n| n.id);
        assert_eq!(pick(200).as_deref(), Some("front-2"));

        assert!(registry.heartbeat("front-2", f2, stats(3), at(300)));
        assert_eq!(
            pick(400).as_deref(),
            Some("front-1"),
            "a tie goes to the smaller id"
        );

        // Clients sent to a front count until its heartbeats show them connected.
        assert_eq!(pick(500).as_deref(), Some("front-2"));
        assert_eq!(pick(500).as_deref(), Some("front-1"));
        assert_eq!(pick(500).as_deref(), Some("front-2"));
        // front-2 has 2 on their way. A heartbeat showing one of them connected leaves
        // the other counted (4 + 1 against front-1's 3 + 1): a heartbeat sent while a
        // burst is on its way must not make the front look empty.
        assert!(registry.heartbeat("front-2", f2, stats(4), at(600)));
        assert_eq!(pick(700).as_deref(), Some("front-1"));

        // front-1 stays silent; front-2 keeps heartbeating and is the only live front.
        assert!(registry.heartbeat("front-2", f2, stats(50), at(3000)));
        assert_eq!(pick(3200).as_deref(), Some("front-2"));
        assert!(registry.least_loaded_front(at(6100)).is_none());

        // Clients that never come are dropped after the handout lifetime (10 s), though
        // no heartbeat shows anyone new.
        let handouts = |id: &str| registry.inner.nodes.lock()[id].handouts;
        assert_eq!((handouts("front-1"), handouts("front-2")), (3, 1));
        assert!(registry.heartbeat("front-1", f1, stats(3), at(9_000)));
        assert!(registry.heartbeat("front-2", f2, stats(50), at(9_000)));
        assert_eq!(
            (handouts("front-1"), handouts("front-2")),
            (3, 1),
            "not yet"
        );
        assert!(registry.heartbeat("front-1", f1, stats(3), at(20_000)));
        assert!(registry.heartbeat("front-2", f2, stats(50), at(20_000)));
        assert_eq!((handouts("front-1"), handouts("front-2")), (0, 0));
    }
}
