//! Cursor pagination shared by every list query.
//!
//! A cursor is the `seq` of the last row of the previous page, made opaque so clients do not
//! build them. Rows are returned in ascending `seq`, which only grows, so paging while other
//! clients insert neither skips nor repeats a row.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const CURSOR_PREFIX: &str = "s:";

/// Where a page starts and how long it is.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub after: i64,
    pub limit: u32,
}

/// One page of rows and the cursor of the next one, if there may be more.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("the cursor is not one this server issued")]
pub struct InvalidCursor;

pub fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{seq}"))
}

pub fn decode_cursor(cursor: &str) -> Result<i64, InvalidCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| InvalidCursor)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| InvalidCursor)?;
    let seq = text.strip_prefix(CURSOR_PREFIX).ok_or(InvalidCursor)?;
    seq.parse::<i64>()
        .ok()
        .filter(|seq| *seq >= 0)
        .ok_or(InvalidCursor)
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched with their `seq`: the extra row only
    /// tells whether a next page exists.
    pub fn from_rows(mut rows: Vec<(i64, T)>, limit: u32) -> Page<T> {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);

        let next_cursor = match rows.last() {
            Some((seq, _)) if has_more => Some(encode_cursor(*seq)),
            _ => None,
        };
        Page {
            items: rows.into_iter().map(|(_, item)| item).collect(),
            next_cursor,
        }
    }
}

impl PageRequest {
    /// The `LIMIT` to query with: one more than the page, see [`Page::from_rows`].
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_forgeries() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        assert!(decode_cursor("42").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("s:-1")).is_err());
        assert!(decode_cursor("%%%").is_err());
    }

    #[test]
    fn next_cursor_only_when_more_rows_exist() {
        let page = Page::from_rows(vec![(1, 'a'), (2, 'b'), (3, 'c')], 2);
        assert_eq!(page.items, vec!['a', 'b']);
        assert_eq!(
            decode_cursor(page.next_cursor.as_deref().unwrap()).unwrap(),
            2
        );

        let last = Page::from_rows(vec![(3, 'c')], 2);
        assert!(last.next_cursor.is_none());
    }
}
