//! Replica segments as a restore reads them (`nexus_formats::segment::decode_segment`).
//!
//! Input: a mode byte, the first and last change the object's name states (two little-endian
//! i64), then the body. Mode bit 0: the body is the segment's text, compressed here (so the
//! fuzzer explores the JSON lines rather than zstd's frames); else the body is the object's
//! bytes. Mode bit 1: the name agrees with whatever the header line states, so the fuzzer
//! need not guess it. Checks that an accepted segment holds exactly the changes its name
//! states, and that encoding what was decoded decodes to the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_formats::segment::{SEGMENT_FORMAT, SegmentHeader, decode_segment, encode_segment};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let Some((first, rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let Some((last, body)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let (mut first, mut last) = (i64::from_le_bytes(*first), i64::from_le_bytes(*last));

    if mode & 2 != 0 {
        let line = body.split(|byte| *byte == b'\n').next().unwrap_or_default();
        if let Ok(header) = serde_json::from_slice::<SegmentHeader>(line) {
            (first, last) = (header.first_seq, header.last_seq);
        }
    }
    // In one call, which sizes zstd's tables to the body: a streaming encoder's are sized for
    // any length, and allocating them each time was most of an execution's cost.
    let compressed = if mode & 1 != 0 {
        zstd::bulk::compress(body, 1).expect("compressing into memory cannot fail")
    } else {
        body.to_vec()
    };

    let Ok((header, changes)) = decode_segment("fuzz", first, last, &compressed) else {
        return;
    };

    assert!(header.format <= SEGMENT_FORMAT);
    assert_eq!((header.first_seq, header.last_seq), (first, last));
    for (offset, change) in changes.iter().enumerate() {
        assert_eq!(i128::from(change.seq), i128::from(first) + offset as i128);
    }
    assert_eq!(changes.last().map(|change| change.seq), Some(last));

    let again = encode_segment(&header, &changes);
    let (header_again, changes_again) =
        decode_segment("fuzz", first, last, &again).expect("an encoded segment decodes");
    assert_eq!(header_again, header);
    assert_eq!(changes_again, changes);
});
