//! A cap on connections that have not yet proved they belong to the cluster. At the cap
//! the oldest is closed to make room, so that strangers holding connections open cannot
//! lock out a node, which handshakes within a round trip or two.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The connections in their handshake, oldest first.
#[derive(Debug, Clone)]
pub struct Pending {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    cap: usize,
    next_id: u64,
    open: VecDeque<(u64, CancellationToken)>,
}

/// One connection's place among the pending ones, given up when dropped (its handshake
/// ended, one way or the other).
#[derive(Debug)]
pub struct PendingSlot {
    id: u64,
    evicted: CancellationToken,
    inner: Arc<Mutex<Inner>>,
}

impl Pending {
    /// At most `cap` (at least 1) connections in their handshake at once.
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                cap: cap.max(1),
                next_id: 0,
                open: VecDeque::new(),
            })),
        }
    }

    /// A place for a new connection, and whether an older one was evicted to make it.
    pub fn admit(&self) -> (PendingSlot, bool) {
        let mut inner = self.inner.lock();
        let evicted = if inner.open.len() >= inner.cap {
            if let Some((_, oldest)) = inner.open.pop_front() {
                oldest.cancel();
            }
            true
        } else {
            false
        };
        let id = inner.next_id;
        inner.next_id += 1;
        let token = CancellationToken::new();
        inner.open.push_back((id, token.clone()));
        let slot = PendingSlot {
            id,
            evicted: token,
            inner: self.inner.clone(),
        };
        (slot, evicted)
    }

    /// Connections in their handshake now.
    pub fn len(&self) -> usize {
        self.inner.lock().open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PendingSlot {
    /// Completes when a newer connection took this one's place: its handshake must end.
    pub fn evicted(&self) -> WaitForCancellationFutureOwned {
        self.evicted.clone().cancelled_owned()
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut inner = self.inner.lock();
        if let Some(at) = inner.open.iter().position(|(id, _)| *id == self.id) {
            inner.open.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_handshake_makes_room() {
        let pending = Pending::new(2);
        let (first, evicted) = pending.admit();
        assert!(!evicted);
        let (second, _) = pending.admit();
        let (third, evicted) = pending.admit();
        assert!(evicted, "the cap was reached");
        assert!(first.evicted.is_cancelled());
        assert!(!second.evicted.is_cancelled() && !third.evicted.is_cancelled());
        assert_eq!(pending.len(), 2);
        drop(first);
        assert_eq!(pending.len(), 2, "an evicted slot is already gone");
        drop(second);
        drop(third);
        assert!(pending.is_empty());
    }
}
