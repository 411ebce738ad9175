//! `Range` headers against a file's length (`nexus_formats::http::parse_range`).
//!
//! Input: eight bytes of file length (little-endian), then the header's text. Checks that a
//! part lies within the file and reads back the same when written in its plain form.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_formats::http::{ByteRange, parse_range};

fuzz_target!(|input: &[u8]| {
    let Some((length, header)) = input.split_first_chunk::<8>() else {
        return;
    };
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    let length = u64::from_le_bytes(*length);

    let range = parse_range(header, length);

    match range {
        ByteRange::Part { first, last } => {
            assert!(
                first <= last && last < length,
                "{header:?} of {length}: {range:?}"
            );
            let plain = format!("bytes={first}-{last}");
            assert_eq!(parse_range(&plain, length), range, "{header:?} of {length}");
        }
        ByteRange::Unsatisfiable => assert!(header.trim().starts_with("bytes=")),
        ByteRange::Whole => {}
    }
    if !header.trim().starts_with("bytes=") {
        assert_eq!(range, ByteRange::Whole, "{header:?}");
    }
});
