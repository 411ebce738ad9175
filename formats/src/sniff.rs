//! What an uploaded file is, told from its first bytes (magic numbers), never from the name or
//! the `Content-Type` the client sent: a type the appliance serves must be the type it holds.
//! Which decoder reads a raster kind is the daemon's business (`assets::sniff`).
//!
//! [`HEAD_BYTES`] bytes are enough for every binary format here. SVG is text: it is accepted
//! when its root `<svg` element starts within them, after an optional XML declaration,
//! comments and a doctype without an internal subset (one could declare entities).

/// How many leading bytes [`sniff`] looks at (Rocket lets a handler peek at 512).
pub const HEAD_BYTES: usize = 512;

/// The kinds of file the appliance knows. Which of them it accepts is configuration
/// (`assets.allowed_types`, by [`Kind::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Png,
    Jpeg,
    Webp,
    Gif,
    Avif,
    Svg,
    Woff2,
    Ttf,
    Otf,
    Mp4,
    Webm,
    Pdf,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Png,
        Kind::Jpeg,
        Kind::Webp,
        Kind::Gif,
        Kind::Avif,
        Kind::Svg,
        Kind::Woff2,
        Kind::Ttf,
        Kind::Otf,
        Kind::Mp4,
        Kind::Webm,
        Kind::Pdf,
    ];

    /// The short name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Png => "png",
            Kind::Jpeg => "jpeg",
            Kind::Webp => "webp",
            Kind::Gif => "gif",
            Kind::Avif => "avif",
            Kind::Svg => "svg",
            Kind::Woff2 => "woff2",
            Kind::Ttf => "ttf",
            Kind::Otf => "otf",
            Kind::Mp4 => "mp4",
            Kind::Webm => "webm",
            Kind::Pdf => "pdf",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The MIME type stored and served.
    pub fn mime(self) -> &'static str {
        match self {
            Kind::Png => "image/png",
            Kind::Jpeg => "image/jpeg",
            Kind::Webp => "image/webp",
            Kind::Gif => "image/gif",
            Kind::Avif => "image/avif",
            Kind::Svg => "image/svg+xml",
            Kind::Woff2 => "font/woff2",
            Kind::Ttf => "font/ttf",
            Kind::Otf => "font/otf",
            Kind::Mp4 => "video/mp4",
            Kind::Webm => "video/webm",
            Kind::Pdf => "application/pdf",
        }
    }

    pub fn from_mime(mime: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.mime() == mime)
    }

    /// The file name extension, for names the client did not give.
    pub fn extension(self) -> &'static str {
        match self {
            Kind::Jpeg => "jpg",
            other => other.name(),
        }
    }
}

/// The kind of a file that starts with `head`, if it is one the appliance knows.
pub fn sniff(head: &[u8]) -> Option<Kind> {
    let starts = |magic: &[u8]| head.starts_with(magic);

    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some(Kind::Png);
    }
    if starts(b"\xff\xd8\xff") {
        return Some(Kind::Jpeg);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some(Kind::Gif);
    }
    if starts(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        return Some(Kind::Webp);
    }
    if starts(b"%PDF-") {
        return Some(Kind::Pdf);
    }
    if starts(b"wOF2") {
        return Some(Kind::Woff2);
    }
    if starts(b"OTTO") && sane_table_count(head) {
        return Some(Kind::Otf);
    }
    if (starts(b"\x00\x01\x00\x00") || starts(b"true")) && sane_table_count(head) {
        return Some(Kind::Ttf);
    }
    if starts(b"\x1a\x45\xdf\xa3") {
        return is_webm(head).then_some(Kind::Webm);
    }
    if head.get(4..8) == Some(b"ftyp") {
        return iso_media(head);
    }
    is_svg(head).then_some(Kind::Svg)
}

/// An sfnt font's table directory counts its tables; a bogus count betrays a file that only
/// happens to start with the four magic bytes (`\0\x01\0\0` is a common prefix).
fn sane_table_count(head: &[u8]) -> bool {
    head.get(4..6)
        .map(|count| u16::from_be_bytes([count[0], count[1]]))
        .is_some_and(|count| (1..=64).contains(&count))
}

/// An EBML file whose DocType is `webm` (Matroska, its parent format, is not accepted).
fn is_webm(head: &[u8]) -> bool {
    // The DocType element (id 0x4282) sits in the EBML header, within the first few dozen
    // bytes; its one-byte size for "webm" is 0x84.
    let header = &head[..head.len().min(64)];
    header
        .windows(7)
        .any(|window| window == b"\x42\x82\x84webm")
}

/// Tells AVIF from MP4 among ISO base media files by the `ftyp` box's brands.
fn iso_media(head: &[u8]) -> Option<Kind> {
    let size = u32::from_be_bytes(head.get(0..4)?.try_into().ok()?) as usize;
    let major = head.get(8..12)?;
    // The brands after the major brand and the minor version, as far as the head holds them.
    let end = size.min(head.len()).max(16);
    let compatible: Vec<&[u8]> = head.get(16..end)?.chunks_exact(4).collect();
    let brands = || std::iter::once(major).chain(compatible.iter().copied());

    if brands().any(|brand| brand == b"avif" || brand == b"avis") {
        return Some(Kind::Avif);
    }
    const MP4_BRANDS: [&[u8; 4]; 10] = [
        b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash", b"M4V ",
    ];
    brands()
        .any(|brand| MP4_BRANDS.iter().any(|known| brand == known.as_slice()))
        .then_some(Kind::Mp4)
}

/// Whether `head` is the start of an SVG document (see the module's header).
fn is_svg(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    let mut rest = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    loop {
        rest = rest.trim_ascii_start();
        let skipped = if rest.starts_with(b"<?xml") {
            after(rest, b"?>")
        } else if rest.starts_with(b"<!--") {
            after(rest, b"-->")
        } else if rest.starts_with(b"<!DOCTYPE") {
            let doctype = after(rest, b">");
            // An internal subset (`[...]`) may declare entities; refuse rather than parse it.
            let declaration = &rest[..rest.len() - doctype.map_or(0, <[u8]>::len)];
            if declaration.contains(&b'[') {
                return false;
            }
            doctype
        } else {
            break;
        };
        match skipped {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.strip_prefix(b"<svg").is_some_and(|after| {
        after
            .first()
            .is_some_and(|byte| byte.is_ascii_whitespace() || b">/".contains(byte))
    })
}

/// What follows the first `marker` in `text`.
fn after<'t>(text: &'t [u8], marker: &[u8]) -> Option<&'t [u8]> {
    text.windows(marker.len())
        .position(|window| window == marker)
        .map(|at| &text[at + marker.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_formats_by_magic() {
        let cases: [(&[u8], Option<Kind>); 13] = [
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some(Kind::Png)),
            (b"\xff\xd8\xff\xe0\0\x10JFIF", Some(Kind::Jpeg)),
            (b"GIF89a\x01\0\x01\0", Some(Kind::Gif)),
            (b"RIFF\x24\0\0\0WEBPVP8 ", Some(Kind::Webp)),
            (b"RIFF\x24\0\0\0WAVEfmt ", None),
            (b"%PDF-1.7\n", Some(Kind::Pdf)),
            (b"wOF2\0\x01\0\0", Some(Kind::Woff2)),
            (b"OTTO\0\x0a\0\x80", Some(Kind::Otf)),
            (b"\0\x01\0\0\0\x10\x01\0", Some(Kind::Ttf)),
            (b"\0\x01\0\0\xff\xff", None),
            (b"\0\0\0\x1cftypisom\0\0\x02\0isomiso2mp41", Some(Kind::Mp4)),
            (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf", Some(Kind::Avif)),
            (b"\0\0\0\x14ftypqt  \0\0\0\0qt  ", None),
        ];
        for (head, kind) in cases {
            assert_eq!(sniff(head), kind, "{head:?}");
        }
    }

    #[test]
    fn webm_but_not_matroska() {
        let webm = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm";
        assert_eq!(sniff(webm), Some(Kind::Webm));
        let mkv = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska";
        assert_eq!(sniff(mkv), None);
    }

    #[test]
    fn svg_after_prolog_only() {
        let good: [&[u8]; 4] = [
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            b"\xef\xbb\xbf<?xml version=\"1.0\"?>\n<!-- logo -->\n<svg>",
            b"<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"x.dtd\">\n<svg\nwidth=\"1\">",
            b"  \n<svg/>",
        ];
        for head in good {
            assert_eq!(
                sniff(head),
                Some(Kind::Svg),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        let bad: [&[u8]; 5] = [
            b"<html><svg>",
            b"<svgfoo>",
            b"<!DOCTYPE svg [<!ENTITY x \"y\">]><svg>",
            b"<!-- never closed <svg>",
            b"hello",
        ];
        for head in bad {
            assert_eq!(sniff(head), None, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn names_and_mimes_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
            assert_eq!(Kind::from_mime(kind.mime()), Some(kind));
        }
    }
}
