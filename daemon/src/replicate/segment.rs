//! What the S3 replica stores and how its objects are named.
//!
//! Under the configured prefix, one folder per generation (a lineage that starts with a
//! snapshot and continues with the change segments after it):
//!
//! ```text
//! generations/20261204T101500Z-3fa9c2d1/
//!     snapshots/00000000000000000000-20261204T101500.123Z.sqlite.zst
//!     segments/00000000000000000001-00000000000000000042.jsonl.zst
//!     segments/00000000000000000043-00000000000000000051.jsonl.zst
//! blobs/sha256/9f/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```
//!
//! - A generation is named by its start time and a random suffix, so names sort by age.
//! - A snapshot is the whole database (SQLite's online backup), zstd-compressed, named by the
//!   last change it contains and the time it was taken (UTC, milliseconds).
//! - A segment holds the changes `first..=last` as zstd-compressed JSON lines: a header line,
//!   then one change per line, in order. Segments may overlap after a crash (a range shipped
//!   again); readers skip what they already applied, and a gap is an error.
//! - An asset file is stored once, named by the SHA-256 of its bytes, outside the
//!   generations; it is uploaded before any segment or snapshot that names it.
//!
//! This module owns the names; the bytes (segment encoding and decoding, zstd streams) are
//! `nexus_formats::segment`'s, which is fuzzed.

use object_store::path::Path;
use time::OffsetDateTime;

use crate::store::changes::Change;
pub use nexus_formats::segment::{
    FormatError, SEGMENT_FORMAT, SegmentHeader, compress, decompress, encode_segment,
};

const GENERATIONS: &str = "generations";
const BLOBS: &str = "blobs";
const SNAPSHOTS: &str = "snapshots";
const SEGMENTS: &str = "segments";
const SNAPSHOT_SUFFIX: &str = ".sqlite.zst";
const SEGMENT_SUFFIX: &str = ".jsonl.zst";

/// The object keys of one replica.
#[derive(Debug, Clone)]
pub struct Layout {
    prefix: Path,
}

impl Layout {
    pub fn new(prefix: Path) -> Layout {
        Layout { prefix }
    }

    pub fn generations(&self) -> Path {
        self.prefix.clone().join(GENERATIONS)
    }

    pub fn snapshots(&self, generation: &str) -> Path {
        self.generations().join(generation).join(SNAPSHOTS)
    }

    pub fn segments(&self, generation: &str) -> Path {
        self.generations().join(generation).join(SEGMENTS)
    }

    pub fn snapshot(&self, generation: &str, seq: i64, taken_ms: i64) -> Path {
        self.snapshots(generation).join(format!(
            "{seq:020}-{}{SNAPSHOT_SUFFIX}",
            compact_time(taken_ms)
        ))
    }

    /// An asset file, by the SHA-256 of its bytes; shared by every generation.
    pub fn blob(&self, sha256: &str) -> Path {
        let shard = sha256.get(..2).unwrap_or("00");
        self.prefix
            .clone()
            .join(BLOBS)
            .join("sha256")
            .join(shard)
            .join(sha256)
    }

    pub fn segment(&self, generation: &str, first: i64, last: i64) -> Path {
        self.segments(generation)
            .join(format!("{first:020}-{last:020}{SEGMENT_SUFFIX}"))
    }
}

/// A snapshot found in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotKey {
    pub path: Path,
    pub seq: i64,
    pub taken_ms: i64,
}

/// A segment found in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentKey {
    pub path: Path,
    pub first: i64,
    pub last: i64,
}

impl SnapshotKey {
    pub fn parse(path: &Path) -> Option<SnapshotKey> {
        let name = path.filename()?.strip_suffix(SNAPSHOT_SUFFIX)?;
        let (seq, time) = name.split_once('-')?;
        Some(SnapshotKey {
            path: path.clone(),
            seq: seq.parse().ok()?,
            taken_ms: parse_compact_time(time)?,
        })
    }
}

impl SegmentKey {
    pub fn parse(path: &Path) -> Option<SegmentKey> {
        let name = path.filename()?.strip_suffix(SEGMENT_SUFFIX)?;
        let (first, last) = name.split_once('-')?;
        let (first, last) = (first.parse().ok()?, last.parse().ok()?);
        (first <= last).then(|| SegmentKey {
            path: path.clone(),
            first,
            last,
        })
    }
}

/// A new generation's name: its start time, then 8 random hex digits.
pub fn new_generation() -> String {
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).expect("the OS random source is available");
    let now = OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        suffix
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    )
}

/// Decodes and checks the segment stored as `key`: the header matches its name, and the
/// changes are exactly `first..=last`, in order.
pub fn decode_segment(
    key: &SegmentKey,
    compressed: &[u8],
) -> Result<(SegmentHeader, Vec<Change>), FormatError> {
    nexus_formats::segment::decode_segment(&key.path.to_string(), key.first, key.last, compressed)
}

/// `20261204T101500.123Z`: sortable, readable in `aws s3 ls`, free of `:`.
pub fn compact_time(ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

fn parse_compact_time(text: &str) -> Option<i64> {
    let format = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
    );
    let at = time::PrimitiveDateTime::parse(text, &format).ok()?;
    Some((at.assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;
    use crate::store::changes::ChangeOp;

    fn change(seq: i64) -> Change {
        let key: Map<String, Value> =
            serde_json::from_str(&format!(r#"{{"seq": {seq}}}"#)).unwrap();
        Change {
            seq,
            table: "projects".into(),
            op: ChangeOp::Upsert,
            row: Some(key.clone()),
            key,
            at_ms: 1_764_000_000_000 + seq,
        }
    }

    fn header(first: i64, last: i64) -> SegmentHeader {
        SegmentHeader {
            format: SEGMENT_FORMAT,
            generation: "g".into(),
            first_seq: first,
            last_seq: last,
            schema_version: 2,
        }
    }

    #[test]
    fn keys_round_trip_and_sort_by_position() {
        let layout = Layout::new(Path::from("backups/canvas"));
        let snapshot = layout.snapshot("g1", 42, 1_764_843_300_123);
        assert_eq!(
            snapshot.as_ref(),
            "backups/canvas/generations/g1/snapshots/\
             00000000000000000042-20251204T101500.123Z.sqlite.zst"
        );
        let parsed = SnapshotKey::parse(&snapshot).unwrap();
        assert_eq!((parsed.seq, parsed.taken_ms), (42, 1_764_843_300_123));

        let low = layout.segment("g1", 9, 10);
        let high = layout.segment("g1", 11, 200);
        assert!(low.as_ref() < high.as_ref());
        let parsed = SegmentKey::parse(&high).unwrap();
        assert_eq!((parsed.first, parsed.last), (11, 200));
        assert!(SegmentKey::parse(&Path::from("x/segments/5-4.jsonl.zst")).is_none());

        let (older, newer) = (new_generation(), new_generation());
        assert_eq!(older.len(), "20261204T101500Z-3fa9c2d1".len());
        assert_ne!(older, newer);
    }

    #[test]
    fn segments_round_trip_and_damage_is_refused() {
        let changes: Vec<Change> = (5..=9).map(change).collect();
        let key = SegmentKey::parse(&Layout::new(Path::from("p")).segment("g", 5, 9)).unwrap();
        let bytes = encode_segment(&header(5, 9), &changes);
        let (decoded_header, decoded) = decode_segment(&key, &bytes).unwrap();
        assert_eq!(decoded_header, header(5, 9));
        assert_eq!(decoded, changes);

        // A change missing from the middle, a truncated end, a name that lies, garbage.
        let gap = [change(5), change(7)];
        let short = &changes[..4];
        for (bytes, expected) in [
            (encode_segment(&header(5, 9), &gap), "where 6 was expected"),
            (encode_segment(&header(5, 9), short), "truncated"),
            (encode_segment(&header(5, 8), short), "does not match"),
        ] {
            let error = decode_segment(&key, &bytes).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        assert!(decode_segment(&key, b"not zstd").is_err());
    }
}
