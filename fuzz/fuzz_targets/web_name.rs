//! Path segments that may reach the web app's folder (`nexus_formats::names`).
//!
//! Input: one segment's text (already percent-decoded). Checks that a plain name joined to a
//! folder names an entry directly inside it, never the folder itself or anything outside.

#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use nexus_formats::names::{is_fingerprinted, is_plain_name};

fuzz_target!(|input: &[u8]| {
    let Ok(segment) = std::str::from_utf8(input) else {
        return;
    };

    if is_fingerprinted(segment) {
        assert!(segment.contains('.'));
    }
    if !is_plain_name(segment) {
        return;
    }

    let components: Vec<Component<'_>> = Path::new(segment).components().collect();
    assert_eq!(
        components,
        [Component::Normal(segment.as_ref())],
        "{segment:?}"
    );
    let joined = Path::new("/srv/web").join(segment);
    assert_eq!(joined.parent(), Some(Path::new("/srv/web")), "{segment:?}");
});
