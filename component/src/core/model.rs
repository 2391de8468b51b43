//! Domain values: a daily close, a fetched series, and a validated request.

use super::decimal::Decimal;

/// Longest accepted ticker symbol.
pub const MAX_SYMBOL_LEN: usize = 10;
/// Most trading days a request may ask for (the free tier's compact series has 100).
pub const MAX_DAYS: u32 = 100;

/// One trading day's closing price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// Trading date as ASCII `YYYY-MM-DD`.
    pub date: Date,
    /// Exact closing price.
    pub close: Decimal,
}

/// A calendar date kept as its 10 ASCII bytes `YYYY-MM-DD`, which sort chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date([u8; 10]);

impl Date {
    /// Accepts exactly `YYYY-MM-DD` with a plausible month and day.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes: [u8; 10] = text.as_bytes().try_into().ok()?;
        let digits_at = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
        let shape_ok = digits_at(0..4) && bytes[4] == b'-' && digits_at(5..7) && bytes[7] == b'-' && digits_at(8..10);
        if !shape_ok {
            return None;
        }
        let two = |i: usize| (bytes[i] - b'0') * 10 + (bytes[i + 1] - b'0');
        ((1..=12).contains(&two(5)) && (1..=31).contains(&two(8))).then_some(Self(bytes))
    }

    /// The raw 10 bytes (cache codec).
    pub fn bytes(&self) -> &[u8; 10] {
        &self.0
    }

    /// The date as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and '-' ever get in (see `parse`).
        std::str::from_utf8(&self.0).unwrap_or("0000-00-00")
    }
}

/// A fetched daily series, oldest first, with when it was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// Wall-clock milliseconds since the Unix epoch when the upstream answered.
    pub fetched_at_ms: u64,
    /// Closes in chronological order, no duplicate dates.
    pub closes: Vec<Close>,
}

impl Series {
    /// The last `days` closes (fewer if the series is shorter), oldest first.
    pub fn window(&self, days: u32) -> &[Close] {
        let days = usize::try_from(days).unwrap_or(usize::MAX);
        &self.closes[self.closes.len().saturating_sub(days)..]
    }
}

/// An upper-cased, validated ticker symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol(String);

impl Symbol {
    /// Accepts 1-10 letters, digits, `.` or `-`, case-insensitively; `None` otherwise.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = (1..=MAX_SYMBOL_LEN).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        ok.then(|| Self(text.to_ascii_uppercase()))
    }

    /// The upper-cased symbol.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses a day count: plain decimal digits, 1 to [`MAX_DAYS`].
pub fn parse_days(text: &str) -> Option<u32> {
    // One rule: the canonical decimal form, so `7` and `100` are days and `007` and `0100` are not.
    if text.is_empty() || text.len() > 3 || text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|d| (1..=MAX_DAYS).contains(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_validated_and_upper_cased() {
        for (input, want) in [
            ("msft", Some("MSFT")),
            ("BRK.B", Some("BRK.B")),
            ("brk-a", Some("BRK-A")),
            ("A", Some("A")),
            ("ABCDEFGHIJ", Some("ABCDEFGHIJ")),
            ("ABCDEFGHIJK", None),
            ("", None),
            ("MS FT", None),
            ("MSFT!", None),
            ("MS%20", None),
            ("ÉTÉ", None),
            ("a_b", None),
        ] {
            assert_eq!(Symbol::parse(input).as_ref().map(Symbol::as_str), want, "input {input:?}");
        }
    }

    #[test]
    fn days_are_one_to_a_hundred() {
        for (input, want) in [
            ("1", Some(1)),
            ("7", Some(7)),
            ("007", None),
            ("0100", None),
            ("0", None),
            ("100", Some(100)),
            ("0", None),
            ("101", None),
            ("1000", None),
            ("-1", None),
            ("+7", None),
            ("7.0", None),
            ("", None),
            ("seven", None),
            ("99999999999999999999", None),
        ] {
            assert_eq!(parse_days(input), want, "input {input:?}");
        }
    }

    #[test]
    fn dates_must_look_like_dates() {
        for (input, ok) in [
            ("2026-11-20", true),
            ("2026-13-01", false),
            ("2026-00-10", false),
            ("2026-01-32", false),
            ("2026/01/02", false),
            ("26-01-02", false),
            ("2026-1-02x", false),
        ] {
            assert_eq!(Date::parse(input).is_some(), ok, "input {input:?}");
        }
    }

    #[test]
    fn window_takes_the_most_recent_days() {
        let closes: Vec<Close> = ["2026-01-01", "2026-01-02", "2026-01-05"]
            .iter()
            .map(|d| Close { date: Date::parse(d).expect("valid"), close: Decimal::parse("1").expect("valid") })
            .collect();
        let series = Series { fetched_at_ms: 0, closes };
        for (days, first) in [(1, "2026-01-05"), (2, "2026-01-02"), (3, "2026-01-01"), (100, "2026-01-01")] {
            let window = series.window(days);
            assert_eq!(window[0].date.as_str(), first, "days {days}");
            assert_eq!(window.last().map(|c| c.date.as_str()), Some("2026-01-05"));
        }
    }
}
