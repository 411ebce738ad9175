//! File types told from an upload's first bytes (`nexus_formats::sniff::sniff`).
//!
//! Input: the upload's first bytes. Checks that a kind's names read back, that each binary
//! kind really starts with its magic number (and so ignores what follows), and that SVG is
//! text holding an `<svg` element.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_formats::sniff::{Kind, sniff};

fuzz_target!(|head: &[u8]| {
    let Some(kind) = sniff(head) else {
        return;
    };

    assert_eq!(Kind::from_name(kind.name()), Some(kind));
    assert_eq!(Kind::from_mime(kind.mime()), Some(kind));
    let magic: &[&[u8]] = match kind {
        Kind::Png => &[b"\x89PNG\r\n\x1a\n"],
        Kind::Jpeg => &[b"\xff\xd8\xff"],
        Kind::Gif => &[b"GIF87a", b"GIF89a"],
        Kind::Pdf => &[b"%PDF-"],
        Kind::Woff2 => &[b"wOF2"],
        Kind::Webp => &[b"RIFF"],
        Kind::Otf => &[b"OTTO"],
        Kind::Ttf => &[b"\x00\x01\x00\x00", b"true"],
        Kind::Webm => &[b"\x1a\x45\xdf\xa3"],
        Kind::Avif | Kind::Mp4 => {
            assert_eq!(head.get(4..8), Some(b"ftyp".as_slice()));
            &[]
        }
        Kind::Svg => {
            assert!(!head.contains(&0));
            assert!(head.windows(4).any(|window| window == b"<svg"));
            &[]
        }
    };
    if !magic.is_empty() {
        assert!(
            magic.iter().any(|magic| head.starts_with(magic)),
            "{kind:?}"
        );
    }
    if matches!(
        kind,
        Kind::Png | Kind::Jpeg | Kind::Gif | Kind::Pdf | Kind::Woff2
    ) {
        let longer = [head, b"trailing bytes".as_slice()].concat();
        assert_eq!(sniff(&longer), Some(kind));
    }
});
