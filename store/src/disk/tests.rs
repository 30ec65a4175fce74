//! The disk store against what a crash leaves behind: torn tails, damaged snapshots,
//! leftovers of unfinished writes, other format versions, unwritable directories.

use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("centrum-store-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn store(dir: &Path) -> DiskStore {
    DiskStore::new(dir, SyncPolicy::EveryRecord).unwrap()
}

/// A store in `dir` whose channel `arena` has records of steps 1 to 3 in one segment.
fn with_three_records(dir: &Path) -> DiskStore {
    let s = store(dir);
    let mut opened = s.open("arena").unwrap();
    for step in 1..=3 {
        opened.journal.append(step, b"payload", true).unwrap();
    }
    s
}

fn steps(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.step).collect()
}

fn journals(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("journal-") && n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

#[test]
fn records_and_snapshots_come_back_and_old_ones_are_pruned() {
    let dir = temp_dir("roundtrip");
    let s = store(&dir);
    let mut opened = s.open("arena").unwrap();
    assert!(opened.recovered.snapshot.is_none() && opened.recovered.records.is_empty());
    for step in 1..=5 {
        opened
            .journal
            .append(step, format!("r{step}").as_bytes(), true)
            .unwrap();
    }
    assert!(
        opened.journal.append(7, b"skips", true).is_err(),
        "a skipped step is refused"
    );
    opened.journal.cut(5).unwrap();
    opened.snapshots.write(5, b"s5").unwrap();
    for step in 6..=8 {
        opened.journal.append(step, b"r", step == 8).unwrap();
    }
    drop(opened);

    let opened = s.open("arena").unwrap();
    let rec = &opened.recovered;
    assert_eq!(
        rec.snapshot.as_ref().map(|s| (s.step, s.bytes.clone())),
        Some((5, b"s5".to_vec()))
    );
    assert_eq!(steps(&rec.records), vec![6, 7, 8]);
    assert!(rec.repairs.is_empty(), "{:?}", rec.repairs);

    // Two more snapshots: the first one, and the journal only it needed, go.
    let mut opened = opened;
    opened.journal.cut(8).unwrap();
    opened.snapshots.write(8, b"s8").unwrap();
    opened.journal.append(9, b"r9", true).unwrap();
    opened.journal.cut(9).unwrap();
    opened.snapshots.write(9, b"s9").unwrap();
    let chan = dir.join("arena");
    assert!(!chan.join(file_name("snapshot-", 5, ".snap")).exists());
    assert!(chan.join(file_name("snapshot-", 8, ".snap")).exists());
    assert_eq!(
        journals(&chan).first().unwrap(),
        &file_name("journal-", 9, ".log")
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_tail_is_cut_at_the_last_good_record_and_kept_beside_the_file() {
    let dir = temp_dir("torn");
    let s = with_three_records(&dir);
    // A crash in the middle of writing step 4: half a record at the end.
    let path = dir.join("arena").join(file_name("journal-", 1, ".log"));
    let mut partial = Vec::new();
    record(&mut partial, 4, b"payload that never finished");
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&partial[..partial.len() / 2]).unwrap();
    drop(file);

    let mut opened = s.open("arena").unwrap();
    assert_eq!(steps(&opened.recovered.records), vec![1, 2, 3]);
    let [repair] = &opened.recovered.repairs[..] else {
        panic!("{:?}", opened.recovered.repairs)
    };
    assert!(repair.contains("cut a torn tail"), "{repair}");
    let torn: Vec<_> = fs::read_dir(dir.join("arena"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".torn-")
        })
        .collect();
    assert_eq!(torn.len(), 1, "the cut bytes are kept");
    // The journal goes on after the cut.
    opened.journal.append(4, b"again", true).unwrap();
    drop(opened);
    assert_eq!(
        steps(&s.open("arena").unwrap().recovered.records),
        vec![1, 2, 3, 4]
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn damage_before_the_last_segment_refuses_to_recover() {
    let dir = temp_dir("corrupt");
    let s = store(&dir);
    let mut opened = s.open("arena").unwrap();
    opened.journal.append(1, b"one", true).unwrap();
    opened.journal.append(2, b"two", true).unwrap();
    opened.journal.cut(2).unwrap();
    opened.journal.append(3, b"three", true).unwrap();
    drop(opened);
    let path = dir.join("arena").join(file_name("journal-", 1, ".log"));
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let err = s.open("arena").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("move the file away"),
        "{text}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_snapshot_falls_back_to_the_one_before_it() {
    let dir = temp_dir("fallback");
    let s = store(&dir);
    crate::test_log::snapshots_at_2_and_4_then_step_5(&s);
    let newest = dir.join("arena").join(file_name("snapshot-", 4, ".snap"));
    let mut bytes = fs::read(&newest).unwrap();
    let mid = bytes.len() - 2;
    bytes[mid] ^= 1;
    fs::write(&newest, bytes).unwrap();
    // And a snapshot that was being written when the back died.
    fs::write(
        dir.join("arena")
            .join("snapshot-00000000000000000006.snap.tmp"),
        b"half",
    )
    .unwrap();

    let opened = s.open("arena").unwrap();
    let rec = &opened.recovered;
    assert_eq!(rec.snapshot.as_ref().unwrap().bytes, b"s2");
    assert_eq!(
        steps(&rec.records),
        vec![3, 4, 5],
        "the journal since the older snapshot is still there"
    );
    assert_eq!(rec.repairs.len(), 2, "{:?}", rec.repairs);
    assert!(rec.repairs.iter().any(|r| r.contains("falling back")));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn another_format_version_is_refused_by_file_name() {
    let dir = temp_dir("version");
    let s = store(&dir);
    let mut opened = s.open("arena").unwrap();
    opened.journal.append(1, b"r", true).unwrap();
    drop(opened);
    let path = dir.join("arena").join(file_name("journal-", 1, ".log"));
    let mut bytes = fs::read(&path).unwrap();
    bytes[8] = 2;
    fs::write(&path, bytes).unwrap();
    let err = s.open("arena").unwrap_err().to_string();
    assert!(
        err.contains("format version 2") && err.contains("journal-"),
        "{err}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_that_cannot_be_made_is_named_in_the_error() {
    let dir = temp_dir("notadir");
    fs::write(&dir, b"a file where the directory should be").unwrap();
    let err = DiskStore::new(dir.join("back-1"), SyncPolicy::Never)
        .unwrap_err()
        .to_string();
    assert!(err.contains("notadir"), "{err}");
    let _ = fs::remove_file(&dir);
}

#[test]
fn a_directory_in_use_by_another_store_is_refused_with_its_holder() {
    let dir = temp_dir("inuse");
    let first = store(&dir);
    let err = DiskStore::new(&dir, SyncPolicy::Never)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("in use by another process") && err.contains(&std::process::id().to_string()),
        "{err}"
    );
    drop(first);
    assert!(
        DiskStore::new(&dir, SyncPolicy::Never).is_ok(),
        "free once the holder is gone"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn damage_in_the_middle_of_the_last_segment_is_not_cut_as_a_torn_tail() {
    let dir = temp_dir("middle");
    let s = with_three_records(&dir);
    let path = dir.join("arena").join(file_name("journal-", 1, ".log"));
    let mut bytes = fs::read(&path).unwrap();
    // A flipped bit in the payload of step 2: its length still fits, step 3 follows.
    let second = HEADER_LEN + (16 + 7) + 16;
    bytes[second + 2] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let err = s.open("arena").unwrap_err().to_string();
    assert!(err.contains("whole records follow it"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing cut");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_segment_left_without_its_header_by_a_failed_cut_is_written_afresh() {
    let dir = temp_dir("headerless");
    let s = store(&dir);
    let mut opened = s.open("arena").unwrap();
    opened.journal.append(1, b"one", true).unwrap();
    drop(opened);
    // The next segment was created, but the disk was full before its header.
    fs::write(
        dir.join("arena").join(file_name("journal-", 2, ".log")),
        b"",
    )
    .unwrap();
    let mut opened = s.open("arena").unwrap();
    assert_eq!(steps(&opened.recovered.records), vec![1]);
    opened.journal.append(2, b"two", true).unwrap();
    drop(opened);
    assert_eq!(
        steps(&s.open("arena").unwrap().recovered.records),
        vec![1, 2]
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_lock_lasts_as_long_as_a_journal_or_snapshot_writer() {
    let dir = temp_dir("lock-lives");
    let s = store(&dir);
    let opened = s.open("arena").unwrap();
    drop(s);
    let err = DiskStore::new(&dir, SyncPolicy::Never)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("in use"),
        "the open journal still holds it: {err}"
    );
    drop(opened);
    assert!(DiskStore::new(&dir, SyncPolicy::Never).is_ok());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_record_over_the_limit_is_refused_not_written() {
    let dir = temp_dir("too-large");
    let s = store(&dir);
    let mut opened = s.open("arena").unwrap();
    let huge = vec![0u8; MAX_RECORD + 1];
    let err = opened.journal.append(1, &huge, true).unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    opened.journal.append(1, b"fits", true).unwrap();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_removed_channel_is_gone_whole_and_a_half_removed_one_is_cleared_at_open() {
    let dir = temp_dir("remove");
    let s = with_three_records(&dir);
    s.open("duel.abc.back-1").unwrap();
    let mut listed = s.channels().unwrap();
    listed.sort();
    assert_eq!(listed, ["arena", "duel.abc.back-1"]);
    s.remove("arena").unwrap();
    assert_eq!(s.channels().unwrap(), ["duel.abc.back-1"]);
    s.remove("arena").unwrap();
    // A crash between the rename and the deletion leaves a directory no channel has.
    drop(s);
    fs::create_dir_all(dir.join(".removed-1-0-old")).unwrap();
    let s = store(&dir);
    assert_eq!(s.channels().unwrap(), ["duel.abc.back-1"]);
    assert!(!dir.join(".removed-1-0-old").exists());
    let reopened = s.open("arena").unwrap();
    assert!(
        reopened.recovered.records.is_empty(),
        "a removed channel starts empty"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn journals_that_append_together_keep_every_record() {
    // A back's rooms append at the same moment each tick, each on its own thread.
    let dir = temp_dir("group-commit");
    let s = store(&dir);
    let (rooms, ticks) = (12, 10);
    let barrier = Arc::new(std::sync::Barrier::new(rooms));
    let workers: Vec<_> = (0..rooms)
        .map(|i| {
            let mut journal = s.open(&format!("room-{i}")).unwrap().journal;
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                for step in 1..=ticks {
                    barrier.wait();
                    journal
                        .append(step, format!("{i}:{step}").as_bytes(), true)
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // How many syncs they shared depends on the disk's speed (group.rs tests the
    // sharing itself); each durable append was covered by one.
    let appends = (rooms as u64) * ticks;
    assert!(
        (1..=appends).contains(&s.syncs()),
        "{} syncs for {appends} durable appends",
        s.syncs()
    );
    drop(s);
    let s = store(&dir);
    for i in 0..rooms {
        let records = s.open(&format!("room-{i}")).unwrap().recovered.records;
        assert_eq!(steps(&records), (1..=ticks).collect::<Vec<_>>());
        let last = records.last().unwrap();
        assert_eq!(last.bytes, format!("{i}:{ticks}").into_bytes());
    }
    let _ = fs::remove_dir_all(&dir);
}
