//! Which channels a back has right now and which fronts are linked to it. Channels of
//! the config are here from the start; rooms come and go. A channel and a link meet
//! exactly once: whichever of the two arrives second attaches them, under one lock.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use centrum_protocol::{ChannelIndex, IdMap};

use crate::channel::ChannelShared;
use crate::link::LinkHandle;

#[derive(Debug, Default)]
pub(crate) struct Directory {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_index: IdMap<ChannelIndex, Arc<ChannelShared>>,
    by_name: HashMap<String, ChannelIndex>,
    links: Vec<LinkHandle>,
    /// The next room's number. Numbers are never given twice while the back runs, so a
    /// front's frame for a disposed room cannot land in a newer one.
    next_index: ChannelIndex,
}

/// Every channel number is taken: a back that made four billion rooms must restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this back has used up its channel numbers; restart it")]
pub(crate) struct Exhausted;

impl Directory {
    /// The channel with number `index`.
    pub(crate) fn get(&self, index: ChannelIndex) -> Option<Arc<ChannelShared>> {
        self.inner.read().by_index.get(&index).cloned()
    }

    /// Whether `index` was ever given to a channel (one gone since is not a
    /// protocol violation to name).
    pub(crate) fn was_given(&self, index: ChannelIndex) -> bool {
        index < self.inner.read().next_index
    }

    /// The channel named `name`.
    pub(crate) fn named(&self, name: &str) -> Option<Arc<ChannelShared>> {
        let inner = self.inner.read();
        let index = inner.by_name.get(name)?;
        inner.by_index.get(index).cloned()
    }

    /// Every channel, in no particular order.
    pub(crate) fn channels(&self) -> Vec<Arc<ChannelShared>> {
        self.inner.read().by_index.values().cloned().collect()
    }

    /// Adds a channel made by `make` from its number; `attach` is called, still under
    /// the lock, with the channel and each link already open, so that no link opening
    /// meanwhile is missed or told twice.
    ///
    /// # Errors
    /// [`Exhausted`] when no number is left.
    pub(crate) fn insert(
        &self,
        make: impl FnOnce(ChannelIndex) -> Arc<ChannelShared>,
        mut attach: impl FnMut(&ChannelShared, &LinkHandle),
    ) -> Result<Arc<ChannelShared>, Exhausted> {
        let mut inner = self.inner.write();
        let index = inner.next_index;
        inner.next_index = index.checked_add(1).ok_or(Exhausted)?;
        let channel = make(index);
        for link in &inner.links {
            attach(&channel, link);
        }
        inner.by_name.insert(channel.name.clone(), index);
        inner.by_index.insert(index, channel.clone());
        Ok(channel)
    }

    /// Removes a channel (a disposed room).
    pub(crate) fn remove(&self, index: ChannelIndex) {
        let mut inner = self.inner.write();
        if let Some(channel) = inner.by_index.remove(&index) {
            inner.by_name.remove(&channel.name);
        }
    }

    /// A link opened: `attach` is called with every channel, under the lock.
    pub(crate) fn link_opened(&self, link: &LinkHandle, mut attach: impl FnMut(&ChannelShared)) {
        let mut inner = self.inner.write();
        inner.links.push(link.clone());
        for channel in inner.by_index.values() {
            attach(channel);
        }
    }

    /// A link closed: `detach` is called with every channel, under the lock.
    pub(crate) fn link_closed(&self, link: &LinkHandle, mut detach: impl FnMut(&ChannelShared)) {
        let mut inner = self.inner.write();
        inner.links.retain(|l| l.id() != link.id());
        for channel in inner.by_index.values() {
            detach(channel);
        }
    }
}
