//! [`MemoryStore`]: channels kept in memory, shared by every clone of the store. A
//! back restarted inside the same process (in tests) recovers from it as from disk.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{Journal, Opened, Record, Recovered, Snapshot, Snapshots, Store, StoreError};

/// Channels in memory; clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    channels: Arc<Mutex<HashMap<String, Arc<Mutex<Log>>>>>,
}

#[derive(Debug, Default)]
struct Log {
    /// `(step, bytes)`, oldest first; the two newest are kept.
    snapshots: Vec<(u64, Vec<u8>)>,
    records: Vec<Record>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn channels(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.channels.lock().keys().cloned().collect())
    }

    fn remove(&self, channel: &str) -> Result<(), StoreError> {
        self.channels.lock().remove(channel);
        Ok(())
    }

    fn open(&self, channel: &str) -> Result<Opened, StoreError> {
        let log = self
            .channels
            .lock()
            .entry(channel.to_owned())
            .or_default()
            .clone();
        let recovered = {
            let l = log.lock();
            let snapshot = l.snapshots.last().map(|(step, bytes)| Snapshot {
                step: *step,
                bytes: bytes.clone(),
                source: format!("memory:{channel}"),
            });
            let after = snapshot.as_ref().map_or(0, |s| s.step);
            Recovered {
                snapshot,
                records: l
                    .records
                    .iter()
                    .filter(|r| r.step > after)
                    .cloned()
                    .collect(),
                repairs: Vec::new(),
            }
        };
        let next = recovered.records.last().map_or_else(
            || recovered.snapshot.as_ref().map_or(1, |s| s.step + 1),
            |r| r.step + 1,
        );
        Ok(Opened {
            recovered,
            journal: Box::new(MemoryJournal {
                log: log.clone(),
                next,
                channel: channel.to_owned(),
            }),
            snapshots: Box::new(MemorySnapshots { log }),
        })
    }
}

#[derive(Debug)]
struct MemoryJournal {
    log: Arc<Mutex<Log>>,
    next: u64,
    channel: String,
}

impl Journal for MemoryJournal {
    fn append(&mut self, step: u64, record: &[u8], _durable: bool) -> Result<(), StoreError> {
        if step != self.next {
            return Err(StoreError::Gap {
                path: format!("memory:{}", self.channel),
                what: format!("step {step} appended where step {} was due", self.next),
            });
        }
        let mut log = self.log.lock();
        // Records a reopened journal superseded (after a crash mid-way) go.
        log.records.retain(|r| r.step < step);
        log.records.push(Record {
            step,
            bytes: record.to_vec(),
        });
        self.next += 1;
        Ok(())
    }

    fn cut(&mut self, _step: u64) -> Result<(), StoreError> {
        Ok(())
    }
}

#[derive(Debug)]
struct MemorySnapshots {
    log: Arc<Mutex<Log>>,
}

impl Snapshots for MemorySnapshots {
    fn write(&mut self, step: u64, snapshot: &[u8]) -> Result<(), StoreError> {
        let mut log = self.log.lock();
        log.snapshots.push((step, snapshot.to_vec()));
        if log.snapshots.len() > 2 {
            log.snapshots.remove(0);
        }
        let previous = log.snapshots[0].0;
        if log.snapshots.len() == 2 {
            log.records.retain(|r| r.step > previous);
        }
        Ok(())
    }
}
