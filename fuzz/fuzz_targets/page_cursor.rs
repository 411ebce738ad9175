//! List cursors sent back by clients (`nexus_formats::cursor::decode_cursor`).
//!
//! Input: the cursor's text. Checks that a cursor decodes to a position a page could have
//! ended at, and that the cursor issued for that position decodes to it again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_formats::cursor::{decode_cursor, encode_cursor};

fuzz_target!(|input: &[u8]| {
    let Ok(cursor) = std::str::from_utf8(input) else {
        return;
    };

    let Ok(seq) = decode_cursor(cursor) else {
        return;
    };

    assert!(seq >= 0, "{cursor:?} decoded to {seq}");
    assert_eq!(decode_cursor(&encode_cursor(seq)), Ok(seq));
});
