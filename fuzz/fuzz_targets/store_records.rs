//! The durable store's recovery on arbitrary channel directories: snapshot and journal
//! files with fuzzer-chosen names and contents (well-formed records, damaged ones,
//! torn tails, wrong headers, plain garbage), in a directory on tmpfs. `DiskStore::open`
//! answers the newest whole snapshot and the records after it in step order, or an
//! error; what it repaired stays repaired: a second open reads the same, a record
//! appended after it comes back, and a refused directory is refused again.
#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use centrum_store::{DiskStore, Opened, Store, StoreError, SyncPolicy};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Kind {
    Snapshot,
    Journal,
    /// A snapshot being written when the back stopped.
    SnapshotTmp,
    /// Something recovery leaves alone (a set-aside or torn file).
    Other,
}

#[derive(Arbitrary, Debug)]
enum Header {
    Good,
    /// The other kind's magic.
    Swapped,
    Version(u32),
    /// The first `n % 16` bytes of a good header.
    Short(u8),
}

#[derive(Arbitrary, Debug)]
struct RecordSpec {
    /// Steps after the previous record's (0: the same step again).
    step_delta: u8,
    payload: Vec<u8>,
    /// A bit flipped in the record: `(byte index, bit)`.
    flip: Option<(u16, u8)>,
}

#[derive(Arbitrary, Debug)]
enum Contents {
    Raw(Vec<u8>),
    Records {
        header: Header,
        records: Vec<RecordSpec>,
        /// Cut this many bytes off the end (a torn write).
        torn: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct FileSpec {
    kind: Kind,
    step: u16,
    /// Name the file `journal-5.log` rather than `journal-00000000000000000005.log`.
    short_name: bool,
    contents: Contents,
}

const HEADER_LEN: usize = 16;

fn header(kind: &Kind, spec: &Header) -> Vec<u8> {
    let journal = matches!(kind, Kind::Journal) != matches!(spec, Header::Swapped);
    let mut h = Vec::from(if journal { *b"CNTRMJNL" } else { *b"CNTRMSNP" });
    let version = match spec {
        Header::Version(v) => *v,
        _ => centrum_store::FORMAT_VERSION,
    };
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    if let Header::Short(n) = spec {
        h.truncate(usize::from(*n) % HEADER_LEN);
    }
    h
}

fn contents(spec: &FileSpec) -> Vec<u8> {
    match &spec.contents {
        Contents::Raw(bytes) => bytes.clone(),
        Contents::Records {
            header: h,
            records,
            torn,
        } => {
            let mut out = header(&spec.kind, h);
            // A journal's first record is of its first step; a snapshot's, of its step.
            let mut step = u64::from(spec.step);
            for (i, r) in records.iter().take(16).enumerate() {
                if i > 0 || matches!(spec.kind, Kind::Journal) {
                    step += u64::from(r.step_delta).min(2);
                }
                let start = out.len();
                let mut crc = crc32fast::Hasher::new();
                crc.update(&step.to_le_bytes());
                crc.update(&r.payload);
                out.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
                out.extend_from_slice(&crc.finalize().to_le_bytes());
                out.extend_from_slice(&step.to_le_bytes());
                out.extend_from_slice(&r.payload);
                if let Some((at, bit)) = r.flip {
                    let len = out.len() - start;
                    out[start + usize::from(at) % len] ^= 1 << (bit % 8);
                }
            }
            out.truncate(out.len().saturating_sub(usize::from(*torn)));
            out
        }
    }
}

fn name(spec: &FileSpec) -> String {
    let step = if spec.short_name {
        spec.step.to_string()
    } else {
        format!("{:020}", spec.step)
    };
    match spec.kind {
        Kind::Snapshot => format!("snapshot-{step}.snap"),
        Kind::Journal => format!("journal-{step}.log"),
        Kind::SnapshotTmp => format!("snapshot-{step}.snap.tmp"),
        Kind::Other => format!("journal-{step}.log.torn-16"),
    }
}

/// One store for the process, on tmpfs when there is one: recovery syncs what it
/// repairs, which on a disk would make each run slow.
fn store() -> &'static (DiskStore, PathBuf) {
    static STORE: OnceLock<(DiskStore, PathBuf)> = OnceLock::new();
    STORE.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        let root = base.join(format!("centrum-fuzz-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let store = DiskStore::new(&root, SyncPolicy::Never).expect("a store in a fresh directory");
        (store, root)
    })
}

/// What an open read, to compare two opens by: the snapshot's step and bytes, and each
/// record's.
type Read = (Option<(u64, Vec<u8>)>, Vec<(u64, Vec<u8>)>);

fn read(opened: &Opened) -> Read {
    let r = &opened.recovered;
    (
        r.snapshot.as_ref().map(|s| (s.step, s.bytes.clone())),
        r.records
            .iter()
            .map(|r| (r.step, r.bytes.clone()))
            .collect(),
    )
}

fn same_kind(a: &StoreError, b: &StoreError) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fuzz_target!(|files: Vec<FileSpec>| {
    let (store, root) = store();
    let dir = root.join("c");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("the channel's directory");
    let mut snapshot_steps = Vec::new();
    for spec in files.iter().take(8) {
        if let Kind::Snapshot = spec.kind {
            snapshot_steps.push(u64::from(spec.step));
        }
        fs::write(dir.join(name(spec)), contents(spec)).expect("a file on tmpfs");
    }

    match store.open("c") {
        Ok(opened) => {
            let first = read(&opened);
            let (snapshot, records) = &first;
            let after = snapshot.as_ref().map_or(0, |(step, _)| {
                assert!(snapshot_steps.contains(step));
                *step
            });
            for (i, (step, _)) in records.iter().enumerate() {
                assert_eq!(*step, after + 1 + i as u64, "steps follow each other");
            }
            drop(opened);

            let mut opened = store
                .open("c")
                .expect("a directory recovery accepted opens again");
            assert_eq!(read(&opened), first, "a second open reads differently");
            assert!(
                opened.recovered.repairs.is_empty(),
                "{:?}",
                opened.recovered.repairs
            );
            let next = records.last().map_or(after, |(step, _)| *step) + 1;
            opened
                .journal
                .append(next, b"next", true)
                .expect("an append after recovery");
            drop(opened);

            let opened = store.open("c").expect("an open after an append");
            let (snapshot, mut records) = first;
            records.push((next, b"next".to_vec()));
            assert_eq!(read(&opened), (snapshot, records));
        }
        Err(first) => match store.open("c") {
            Ok(_) => panic!("refused ({first}), then accepted"),
            Err(again) => assert!(same_kind(&first, &again), "{first} / {again}"),
        },
    }
    let _ = fs::remove_dir_all(&dir);
});
