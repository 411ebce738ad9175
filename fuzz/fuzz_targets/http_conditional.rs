//! `If-None-Match` lists (`etag_list_matches`) and `If-Match` values (`parse_if_match`).
//!
//! Input: the header's text, then a NUL byte, then the entity tag to compare with. Checks that
//! `*` and a tag itself always match, and that a version read back from `If-Match` is the
//! one its plain ETag names.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_formats::http::{etag_list_matches, parse_if_match};

fuzz_target!(|input: &[u8]| {
    let Ok(input) = std::str::from_utf8(input) else {
        return;
    };
    let (header, etag) = input.split_once('\0').unwrap_or((input, "\"1\""));

    etag_list_matches(header, etag);
    assert!(etag_list_matches("*", etag));
    // A tag is a list of itself unless its own commas split it.
    if !etag.contains(',') {
        assert!(etag_list_matches(etag, etag), "{etag:?}");
    }

    match parse_if_match(header) {
        Ok(None) => assert_eq!(header.trim(), "*"),
        Ok(Some(version)) => {
            assert_eq!(parse_if_match(&format!("\"{version}\"")), Ok(Some(version)));
            assert!(header.trim().starts_with('"') && header.trim().ends_with('"'));
        }
        Err(_) => {}
    }
});
