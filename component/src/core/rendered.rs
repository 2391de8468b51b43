//! Bodies this instance rendered from fresh cached series, each kept with the exact stored bytes it was
//! rendered from (the series' header and the window's rows, [`cache::window_parts`](super::cache::window_parts)):
//! a hit on unchanged bytes is answered without decoding and rendering the window again. A body is a pure
//! function of those bytes, so a reused instance may keep them between requests; bytes another replica
//! rewrote no longer match, and are rendered anew.

/// Most windows kept; past it the least recently used goes (each holds well under 10 KB).
pub const MAX_RENDERED: usize = 64;

/// One rendered window and the stored series it came from.
#[derive(Debug)]
struct Entry {
    symbol: String,
    days: u32,
    header: Vec<u8>,
    rows: Vec<u8>,
    fetched_at_ms: u64,
    body: String,
    last_used: u64,
}

/// A body found for unchanged stored bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found<'a> {
    /// The body rendered before.
    pub body: &'a str,
    /// When the series it came from was fetched upstream.
    pub fetched_at_ms: u64,
}

/// Rendered bodies by (symbol, days), at most [`MAX_RENDERED`].
#[derive(Debug, Default)]
pub struct Rendered {
    entries: Vec<Entry>,
    uses: u64,
}

impl Rendered {
    /// The body rendered for `symbol`'s last `days` closes from exactly these bytes, if there is one.
    pub fn get(&mut self, symbol: &str, days: u32, (header, rows): (&[u8], &[u8])) -> Option<Found<'_>> {
        self.uses += 1;
        let uses = self.uses;
        let entry = self.entries.iter_mut().find(|e| e.days == days && e.symbol == symbol && e.header == header && e.rows == rows)?;
        entry.last_used = uses;
        Some(Found { body: &entry.body, fetched_at_ms: entry.fetched_at_ms })
    }

    /// Keeps `body`, rendered for `symbol`'s last `days` closes from these bytes, in place of any older one.
    pub fn put(&mut self, symbol: &str, days: u32, (header, rows): (&[u8], &[u8]), fetched_at_ms: u64, body: String) {
        self.uses += 1;
        let last_used = self.uses;
        self.entries.retain(|e| !(e.days == days && e.symbol == symbol));
        if self.entries.len() >= MAX_RENDERED
            && let Some(oldest) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.last_used).map(|(i, _)| i)
        {
            self.entries.swap_remove(oldest);
        }
        self.entries.push(Entry {
            symbol: symbol.to_owned(),
            days,
            header: header.to_vec(),
            rows: rows.to_vec(),
            fetched_at_ms,
            body,
            last_used,
        });
    }

    /// How many windows are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_found_only_for_the_same_symbol_window_and_bytes() {
        let mut rendered = Rendered::default();
        rendered.put("MSFT", 7, (b"head-1", b"rows-1"), 10, "body-7".into());
        assert_eq!(rendered.get("MSFT", 7, (b"head-1", b"rows-1")), Some(Found { body: "body-7", fetched_at_ms: 10 }));
        assert_eq!(rendered.get("MSFT", 6, (b"head-1", b"rows-1")), None, "another window");
        assert_eq!(rendered.get("IBM", 7, (b"head-1", b"rows-1")), None, "another symbol");
        assert_eq!(rendered.get("MSFT", 7, (b"head-2", b"rows-1")), None, "fetched again (another replica refreshed it)");
        assert_eq!(rendered.get("MSFT", 7, (b"head-1", b"rows-2")), None, "other closes");
        assert_eq!(rendered.get("MSFT", 7, (b"head-1r", b"ows-1")), None, "the same bytes split otherwise are other bytes");
    }

    #[test]
    fn a_new_rendering_of_a_window_replaces_the_old_one() {
        let mut rendered = Rendered::default();
        rendered.put("MSFT", 7, (b"h", b"old"), 1, "old body".into());
        rendered.put("MSFT", 7, (b"h", b"new"), 2, "new body".into());
        assert_eq!(rendered.len(), 1);
        assert_eq!(rendered.get("MSFT", 7, (b"h", b"old")), None);
        assert_eq!(rendered.get("MSFT", 7, (b"h", b"new")).map(|f| f.body), Some("new body"));
    }

    #[test]
    fn past_the_bound_the_least_recently_used_window_goes() {
        let mut rendered = Rendered::default();
        for days in 1..=u32::try_from(MAX_RENDERED).expect("small") {
            rendered.put("MSFT", days, (b"h", b"r"), 0, format!("{days}"));
        }
        assert!(rendered.get("MSFT", 1, (b"h", b"r")).is_some(), "window 1 is used again, so window 2 is now the oldest");
        rendered.put("IBM", 7, (b"h", b"r"), 0, "ibm".into());
        assert_eq!(rendered.len(), MAX_RENDERED);
        assert!(rendered.get("MSFT", 2, (b"h", b"r")).is_none());
        assert!(rendered.get("MSFT", 1, (b"h", b"r")).is_some());
        assert!(rendered.get("IBM", 7, (b"h", b"r")).is_some());
    }
}
