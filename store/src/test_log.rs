//! A channel log that every store's tests write alike.

use crate::Store;

/// Channel `arena` of `store`: records of steps 1 to 5, with snapshots `s2` and `s4`
/// after steps 2 and 4 (the journal cut there first).
pub(crate) fn snapshots_at_2_and_4_then_step_5(store: &dyn Store) {
    let mut opened = store.open("arena").unwrap();
    for step in 1..=4 {
        opened.journal.append(step, b"r", true).unwrap();
        if step % 2 == 0 {
            opened.journal.cut(step).unwrap();
            let snapshot = format!("s{step}");
            opened.snapshots.write(step, snapshot.as_bytes()).unwrap();
        }
    }
    opened.journal.append(5, b"r", true).unwrap();
}
