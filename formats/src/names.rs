//! File names taken from request paths (the web app's files): which segments may be joined
//! to a folder on disk, and which names carry a build fingerprint.

/// A file or folder name that can only name an entry of the folder it is joined to.
pub fn is_plain_name(segment: &str) -> bool {
    !segment.is_empty()
        && !segment.starts_with('.')
        && !segment.contains(['/', '\\', ':'])
        && !segment.chars().any(char::is_control)
}

/// A name with a build fingerprint before its extension: `app.3f9a2c1b.js`,
/// `index-BXk2a9Qz.css`. Its content never changes under that name.
pub fn is_fingerprinted(name: &str) -> bool {
    let Some((stem, _extension)) = name.rsplit_once('.') else {
        return false;
    };
    let fingerprint = stem.rsplit(['.', '-', '_']).next().unwrap_or(stem);
    fingerprint.len() != stem.len()
        && (8..=64).contains(&fingerprint.len())
        && fingerprint.bytes().all(|byte| byte.is_ascii_alphanumeric())
        && fingerprint.bytes().any(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_pass() {
        for good in ["index.html", "app.3f9a2c1b.js", "a b", "ünïcode"] {
            assert!(is_plain_name(good), "{good}");
        }
        for bad in [
            "..", ".", ".env", "a/b", "..\\x", "C:", "a\u{0}", "/etc", "",
        ] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn fingerprints() {
        for hashed in [
            "app.3f9a2c1b.js",
            "index-BXk2a9Qz.css",
            "chunk_0123abcd.mjs",
        ] {
            assert!(is_fingerprinted(hashed), "{hashed}");
        }
        for plain in [
            "index.html",
            "app.js",
            "app.component.js",
            "jquery-3.7.1.min.js",
        ] {
            assert!(!is_fingerprinted(plain), "{plain}");
        }
    }
}
