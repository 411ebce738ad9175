//! The opaque cursors of list pages: a client sends back what a page gave it, or anything else.
//!
//! A cursor is the `seq` of the last row of the previous page, base64-encoded so that clients
//! do not build them; decoding refuses whatever this encoder could not have produced.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const CURSOR_PREFIX: &str = "s:";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not one this server issued")]
pub struct InvalidCursor;

pub fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{seq}"))
}

/// The `seq` a cursor carries; never negative.
pub fn decode_cursor(cursor: &str) -> Result<i64, InvalidCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| InvalidCursor)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| InvalidCursor)?;
    let seq = text.strip_prefix(CURSOR_PREFIX).ok_or(InvalidCursor)?;
    seq.parse::<i64>()
        .ok()
        .filter(|seq| *seq >= 0)
        .ok_or(InvalidCursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_forgeries() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Ok(42));
        assert_eq!(decode_cursor(&encode_cursor(i64::MAX)), Ok(i64::MAX));
        assert!(decode_cursor("42").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("s:-1")).is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("s:+1")).is_ok());
        assert!(decode_cursor("%%%").is_err());
    }
}
