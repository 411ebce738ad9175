//! Cursor pagination shared by every list query.
//!
//! A cursor is the `seq` of the last row of the previous page, made opaque so clients do not
//! build them. Rows are returned in ascending `seq`, which only grows, so paging while other
//! clients insert neither skips nor repeats a row. Cursors come back from clients, so their
//! decoding is `nexus_formats::cursor`'s, which is fuzzed.

pub use nexus_formats::cursor::{InvalidCursor, decode_cursor, encode_cursor};

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
