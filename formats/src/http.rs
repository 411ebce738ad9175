//! Request headers whose values the daemon interprets itself rather than through Rocket:
//! `Range`, `If-None-Match`, `If-Match` and `X-Forwarded-For`.

use std::net::IpAddr;

/// What a `Range` header asks of a file of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range: answer the whole file. Malformed ranges, other units and several
    /// ranges at once land here; HTTP lets a server ignore them.
    Whole,
    /// From `first` to `last`, both included; always within the file.
    Part {
        first: u64,
        last: u64,
    },
    Unsatisfiable,
}

/// Reads a `Range` header against a file of `length` bytes. Only one range of bytes is
/// served; see [`ByteRange`] for what everything else becomes.
pub fn parse_range(header: &str, length: u64) -> ByteRange {
    let number = |text: &str| {
        let text = text.trim();
        (!text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return ByteRange::Whole;
    };

    match (first.trim().is_empty(), last.trim().is_empty()) {
        // `-N`: the last N bytes.
        (true, false) => match number(last) {
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if length == 0 => ByteRange::Unsatisfiable,
            Some(suffix) => ByteRange::Part {
                first: length.saturating_sub(suffix),
                last: length - 1,
            },
            None => ByteRange::Whole,
        },
        // `N-`: from N to the end.
        (false, true) => match number(first) {
            Some(first) if first >= length => ByteRange::Unsatisfiable,
            Some(first) => ByteRange::Part {
                first,
                last: length - 1,
            },
            None => ByteRange::Whole,
        },
        (false, false) => match (number(first), number(last)) {
            (Some(first), Some(last)) if last < first => ByteRange::Whole,
            (Some(first), Some(_)) if first >= length => ByteRange::Unsatisfiable,
            (Some(first), Some(last)) => ByteRange::Part {
                first,
                last: last.min(length - 1),
            },
            _ => ByteRange::Whole,
        },
        (true, true) => ByteRange::Whole,
    }
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as RFC 9110 asks).
pub fn etag_list_matches(header: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    header.trim() == "*" || header.split(',').any(|tag| opaque(tag) == opaque(etag))
}

/// An `If-Match` value that is neither one version's ETag nor `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidIfMatch;

/// The version an `If-Match` value names (`"3"`), or `None` for `*` (any version). The
/// daemon's ETags are versions in quotes; a weak tag or a list cannot name one of them.
pub fn parse_if_match(header: &str) -> Result<Option<i64>, InvalidIfMatch> {
    let header = header.trim();
    if header == "*" {
        return Ok(None);
    }
    header
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|version| version.parse::<i64>().ok())
        .map(Some)
        .ok_or(InvalidIfMatch)
}

/// The client's address: `peer`, or, when `peer` is a trusted proxy, the nearest address in
/// the `X-Forwarded-For` values (`forwarded`, in header order) that is not a trusted proxy
/// itself. Anything a client writes into that header is ignored unless a trusted proxy
/// appended the client after it; entries that are not addresses are skipped.
pub fn forwarded_client<'h>(
    peer: IpAddr,
    forwarded: impl IntoIterator<Item = &'h str>,
    trusted: &[IpAddr],
) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let addresses: Vec<IpAddr> = forwarded
        .into_iter()
        .flat_map(|value| value.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();

    addresses
        .into_iter()
        .rev()
        .find(|address| !trusted.contains(address))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use ByteRange::{Part, Unsatisfiable, Whole};
        for (header, expected) in [
            ("bytes=0-9", Part { first: 0, last: 9 }),
            (
                "bytes=90-",
                Part {
                    first: 90,
                    last: 99,
                },
            ),
            (
                "bytes=-10",
                Part {
                    first: 90,
                    last: 99,
                },
            ),
            ("bytes=-1000", Part { first: 0, last: 99 }),
            (
                "bytes=50-1000",
                Part {
                    first: 50,
                    last: 99,
                },
            ),
            ("bytes=100-", Unsatisfiable),
            ("bytes=100-200", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=0-1,5-6", Whole),
            ("bytes=9-1", Whole),
            ("bytes=a-b", Whole),
            ("bytes=+1-2", Whole),
            ("items=0-1", Whole),
            ("bytes=-", Whole),
            ("bytes=99999999999999999999-", Whole),
        ] {
            assert_eq!(parse_range(header, 100), expected, "{header}");
        }
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn if_none_match_lists() {
        assert!(etag_list_matches("\"a\"", "\"a\""));
        assert!(etag_list_matches("\"b\", W/\"a\"", "\"a\""));
        assert!(etag_list_matches("*", "\"a\""));
        assert!(!etag_list_matches("\"b\"", "\"a\""));
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(parse_if_match("\"3\""), Ok(Some(3)));
        assert_eq!(parse_if_match(" * "), Ok(None));
        for bad in ["3", "W/\"3\"", "\"x\"", "\"1\", \"2\"", "\"", ""] {
            assert_eq!(parse_if_match(bad), Err(InvalidIfMatch), "{bad}");
        }
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let proxies = [ip("10.0.0.1"), ip("10.0.0.2")];
        let header = ["203.0.113.9, 198.51.100.7", " 10.0.0.2 "];

        // An untrusted peer's header is ignored; a trusted one's nearest untrusted entry wins.
        assert_eq!(
            forwarded_client(ip("192.0.2.1"), header, &proxies),
            ip("192.0.2.1")
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.1"), header, &proxies),
            ip("198.51.100.7")
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.1"), ["junk, 10.0.0.2"], &proxies),
            ip("10.0.0.1")
        );
    }
}
