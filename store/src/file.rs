//! The bytes of journal and snapshot files: a header (magic and format version), then
//! records, each `len u32, crc32 u32, step u64, payload`, little-endian, the checksum
//! over step and payload. A crash in the middle of a write leaves a record whose
//! length or checksum does not match: the reader stops there.

use crate::{FORMAT_VERSION, StoreError};

/// What a file is: its first eight bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Magic {
    Journal,
    Snapshot,
}

impl Magic {
    fn bytes(self) -> &'static [u8; 8] {
        match self {
            Magic::Journal => b"CNTRMJNL",
            Magic::Snapshot => b"CNTRMSNP",
        }
    }
}

pub(crate) const HEADER_LEN: usize = 16;
const RECORD_HEAD: usize = 16;
/// A record claiming more than this is damage, not data: nothing allocates for it.
pub(crate) const MAX_RECORD: usize = 1 << 30;

pub(crate) fn header(magic: Magic) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(magic.bytes());
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// Checks a file's header.
///
/// # Errors
/// [`StoreError::Corrupt`] for a file that is not of this kind, [`StoreError::Version`]
/// for one of another format version.
pub(crate) fn check_header(bytes: &[u8], magic: Magic, path: &str) -> Result<(), StoreError> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != magic.bytes() {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            what: format!(
                "not a centrum {} file (its header is missing or wrong)",
                match magic {
                    Magic::Journal => "journal",
                    Magic::Snapshot => "snapshot",
                }
            ),
        });
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != FORMAT_VERSION {
        return Err(StoreError::Version {
            path: path.to_owned(),
            found: version,
        });
    }
    Ok(())
}

/// Appends one framed record to `out`.
pub(crate) fn record(out: &mut Vec<u8>, step: u64, payload: &[u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&step.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&step.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The records of a file body (after its header), up to the first that does not
/// read whole.
#[derive(Debug, Default)]
pub(crate) struct Read {
    /// `(step, payload)` of every good record, in file order.
    pub(crate) records: Vec<(u64, Vec<u8>)>,
    /// Where the good records end, from the start of the body.
    pub(crate) good_len: usize,
    /// Why reading stopped before the end, if it did.
    pub(crate) stopped: Option<String>,
    /// Where the record reading stopped at ends, when its length fits the file (its
    /// checksum failed): what follows it can still be looked at.
    pub(crate) bad_end: Option<usize>,
}

pub(crate) fn read_records(body: &[u8]) -> Read {
    let mut read = Read::default();
    let mut at = 0;
    while at < body.len() {
        let rest = &body[at..];
        if rest.len() < RECORD_HEAD {
            read.stopped = Some(format!(
                "{} bytes of an unfinished record header",
                rest.len()
            ));
            break;
        }
        let word = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let len = word(0) as usize;
        let crc = word(4);
        let mut step_bytes = [0u8; 8];
        step_bytes.copy_from_slice(&rest[8..16]);
        if len > MAX_RECORD || rest.len() - RECORD_HEAD < len {
            read.stopped = Some(format!(
                "a record of {len} bytes with {} bytes left in the file",
                rest.len() - RECORD_HEAD
            ));
            break;
        }
        let payload = &rest[RECORD_HEAD..RECORD_HEAD + len];
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&step_bytes);
        hasher.update(payload);
        if hasher.finalize() != crc {
            read.stopped = Some("a record whose checksum does not match".into());
            read.bad_end = Some(at + RECORD_HEAD + len);
            break;
        }
        read.records
            .push((u64::from_le_bytes(step_bytes), payload.to_vec()));
        at += RECORD_HEAD + len;
        read.good_len = at;
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (step, payload) in records {
            record(&mut out, *step, payload);
        }
        out
    }

    #[test]
    fn records_read_back_and_a_torn_or_flipped_one_stops_the_reader() {
        let whole = body(&[(1, b"one"), (2, b""), (3, b"three")]);
        let read = read_records(&whole);
        assert_eq!(read.records.len(), 3);
        assert_eq!(read.records[2], (3, b"three".to_vec()));
        assert_eq!((read.good_len, read.stopped), (whole.len(), None));

        // Every cut inside the last record stops before it, keeping the first two.
        let two = body(&[(1, b"one"), (2, b"")]).len();
        for cut in two + 1..whole.len() {
            let read = read_records(&whole[..cut]);
            assert_eq!(read.records.len(), 2, "cut at {cut}");
            assert_eq!(read.good_len, two);
            assert!(read.stopped.is_some());
        }
        // A flipped bit anywhere in a record is caught by its checksum or length.
        for i in 0..whole.len() {
            let mut bad = whole.clone();
            bad[i] ^= 0x10;
            let read = read_records(&bad);
            assert!(
                read.stopped.is_some() || read.records != read_records(&whole).records,
                "flip at {i}"
            );
        }
    }

    #[test]
    fn a_header_of_another_kind_or_version_is_refused_by_name() {
        let h = header(Magic::Journal);
        assert!(check_header(&h, Magic::Journal, "j").is_ok());
        assert!(matches!(
            check_header(&h, Magic::Snapshot, "s"),
            Err(StoreError::Corrupt { .. })
        ));
        let mut newer = h;
        newer[8] = 9;
        let err = check_header(&newer, Magic::Journal, "j").unwrap_err();
        assert!(err.to_string().contains("format version 9"), "{err}");
        assert!(matches!(
            check_header(&h[..3], Magic::Journal, "j"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
