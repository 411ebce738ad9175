//! What an uploaded file is, told from its first bytes: the sniffing itself is
//! `nexus_formats::sniff`'s (it reads untrusted bytes, so it is fuzzed); this module adds
//! which of the `image` crate's decoders reads each raster kind.

use image::ImageFormat;
pub use nexus_formats::sniff::{HEAD_BYTES, Kind, sniff};

/// The decoder of a raster image this build can read (and so make thumbnails of).
pub fn raster_format(kind: Kind) -> Option<ImageFormat> {
    match kind {
        Kind::Png => Some(ImageFormat::Png),
        Kind::Jpeg => Some(ImageFormat::Jpeg),
        Kind::Webp => Some(ImageFormat::WebP),
        Kind::Gif => Some(ImageFormat::Gif),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_decodable_raster_kinds_get_a_decoder() {
        let decodable: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|kind| raster_format(*kind).is_some())
            .collect();
        assert_eq!(decodable, [Kind::Png, Kind::Jpeg, Kind::Webp, Kind::Gif]);
    }
}
