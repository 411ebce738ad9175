//! BLOB values as the change log carries them (`nexus_formats::segment::decode_hex`).
//!
//! Input: the value's text. Checks that exactly the even-length runs of hex digits decode,
//! to the bytes they spell.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_formats::segment::decode_hex;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };

    let decoded = decode_hex(text);

    let well_formed = text.len() % 2 == 0 && text.bytes().all(|byte| byte.is_ascii_hexdigit());
    assert_eq!(decoded.is_some(), well_formed, "{text:?}");
    if let Some(bytes) = decoded {
        let upper: String = bytes.iter().map(|byte| format!("{byte:02X}")).collect();
        assert_eq!(upper, text.to_ascii_uppercase());
    }
});
