//! Deterministic sample prices: which symbols exist, the daily bars for each, and the Alpha Vantage documents built
//! from them.
//!
//! Every value is derived from an FNV-1a hash of (symbol, date), in integer ten-thousandths of a dollar, so two runs
//! (or two machines) always serve the same series. Closes follow a bounded random walk around a per-symbol base
//! price; open, high and low are placed around the close so that `low <= open, close <= high` always holds.

use crate::calendar::{Date, trading_days};
use crate::json::Json;

/// The newest trading day served (a Friday), fixed so that output never depends on the clock.
pub const LAST_REFRESHED: Date = Date::from_ymd(2026, 11, 20);

/// Rows in a `compact` answer, as upstream.
pub const COMPACT_ROWS: usize = 100;

/// Symbols the simulator knows; anything else gets the "Invalid API call" error.
pub const KNOWN_SYMBOLS: [&str; 12] = ["MSFT", "AAPL", "IBM", "GOOGL", "AMZN", "NVDA", "TSLA", "META", "BRK.B", "BRK-A", "SPY", "QQQ"];

/// Ten-thousandths in one dollar.
const SCALE: i64 = 10_000;
/// Lowest base price, $20.
const MIN_BASE: i64 = 20 * SCALE;
/// Highest base price, $900.
const MAX_BASE: i64 = 900 * SCALE;
/// A day's close moves at most base / this (2%).
const STEP_DIVISOR: i64 = 50;
/// The walk stays within base / this (25%) of the base price.
const WALK_BOUND_DIVISOR: i64 = 4;
/// Overnight gap between the previous close and the open: at most base / this (0.5%).
const GAP_DIVISOR: i64 = 200;
/// Intraday wick above/below the open-close body: at most base / this (1%).
const WICK_DIVISOR: i64 = 100;
/// Fewest shares traded in a day.
const MIN_VOLUME: u64 = 500_000;
/// Spread of daily volume above the minimum.
const VOLUME_SPREAD: u64 = 60_000_000;

/// One day of prices, in ten-thousandths of a dollar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// The trading day.
    pub date: Date,
    /// Opening price.
    pub open: i64,
    /// Highest price.
    pub high: i64,
    /// Lowest price.
    pub low: i64,
    /// Closing price.
    pub close: i64,
    /// Shares traded.
    pub volume: u64,
}

/// The canonical (upper-case) symbol if `symbol` names a known one, ignoring ASCII case.
pub fn known_symbol(symbol: &str) -> Option<&'static str> {
    KNOWN_SYMBOLS.iter().copied().find(|known| known.eq_ignore_ascii_case(symbol))
}

/// Formats ten-thousandths as a decimal string with exactly four places, e.g. `4174600` -> `"417.4600"`.
pub fn format_ten_thousandths(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    let scale = SCALE.unsigned_abs();
    format!("{sign}{}.{:04}", abs / scale, abs % scale)
}

/// 64-bit FNV-1a over the given byte slices, in order.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// A hash of (symbol, date, field), `field` keeping the draws for open/high/low/... independent.
fn draw(symbol: &str, date: &str, field: u8) -> u64 {
    fnv1a(&[symbol.as_bytes(), b"|", date.as_bytes(), b"|", &[field]])
}

/// A value in `0..=max` from a hash (`max >= 0`).
fn up_to(hash: u64, max: i64) -> i64 {
    let span = max.unsigned_abs() + 1;
    i64::try_from(hash % span).expect("hash % span is at most max, which fits in i64")
}

/// A value in `-max..=max` from a hash (`max >= 0`).
fn plus_minus(hash: u64, max: i64) -> i64 {
    up_to(hash, 2 * max) - max
}

/// The per-symbol base price around which closes wander.
fn base_price(symbol: &str) -> i64 {
    MIN_BASE + up_to(fnv1a(&[symbol.as_bytes()]), MAX_BASE - MIN_BASE)
}

/// Reflects `walk` back into `-bound..=bound` (one reflection suffices since steps are smaller than the bound).
fn reflect(walk: i64, bound: i64) -> i64 {
    if walk > bound {
        2 * bound - walk
    } else if walk < -bound {
        -2 * bound - walk
    } else {
        walk
    }
}

/// The compact series for a canonical symbol: [`COMPACT_ROWS`] bars ending at [`LAST_REFRESHED`], newest first.
pub fn daily_bars(symbol: &str) -> Vec<Bar> {
    let base = base_price(symbol);
    let bound = base / WALK_BOUND_DIVISOR;
    let mut walk = 0;
    let mut bars: Vec<Bar> = trading_days(LAST_REFRESHED, COMPACT_ROWS)
        .into_iter()
        .rev()
        .map(|date| {
            let day = date.to_string();
            let previous_close = base + walk;
            walk = reflect(walk + plus_minus(draw(symbol, &day, b'c'), base / STEP_DIVISOR), bound);
            let close = base + walk;
            let open = previous_close + plus_minus(draw(symbol, &day, b'o'), base / GAP_DIVISOR);
            let high = open.max(close) + up_to(draw(symbol, &day, b'h'), base / WICK_DIVISOR);
            let low = open.min(close) - up_to(draw(symbol, &day, b'l'), base / WICK_DIVISOR);
            let volume = MIN_VOLUME + draw(symbol, &day, b'v') % VOLUME_SPREAD;
            Bar { date, open, high, low, close, volume }
        })
        .collect();
    bars.reverse();
    bars
}

/// The "Meta Data" object of a daily answer for `symbol` (echoed as given).
fn meta_data(symbol: &str) -> Json {
    Json::Obj(vec![
        ("1. Information".into(), Json::str("Daily Prices (open, high, low, close) and Volumes")),
        ("2. Symbol".into(), Json::str(symbol)),
        ("3. Last Refreshed".into(), Json::str(LAST_REFRESHED.to_string())),
        ("4. Output Size".into(), Json::str("Compact")),
        ("5. Time Zone".into(), Json::str("US/Eastern")),
        ("6. Note".into(), Json::str("Deterministic sample data from alphavantage-sim, not market prices")),
    ])
}

/// One row of "Time Series (Daily)".
fn bar_json(bar: &Bar) -> (String, Json) {
    let row = Json::Obj(vec![
        ("1. open".into(), Json::str(format_ten_thousandths(bar.open))),
        ("2. high".into(), Json::str(format_ten_thousandths(bar.high))),
        ("3. low".into(), Json::str(format_ten_thousandths(bar.low))),
        ("4. close".into(), Json::str(format_ten_thousandths(bar.close))),
        ("5. volume".into(), Json::str(bar.volume.to_string())),
    ]);
    (bar.date.to_string(), row)
}

/// A full TIME_SERIES_DAILY success document for `symbol` (as shown in "2. Symbol") with the given rows.
pub fn daily_document(symbol: &str, bars: &[Bar]) -> String {
    Json::Obj(vec![("Meta Data".into(), meta_data(symbol)), ("Time Series (Daily)".into(), Json::Obj(bars.iter().map(bar_json).collect()))])
        .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_ten_thousandths_with_four_places() {
        for (value, want) in [
            (0, "0.0000"),
            (1, "0.0001"),
            (4_174_600, "417.4600"),
            (4_151_000, "415.1000"),
            (200_007, "20.0007"),
            (-15, "-0.0015"),
            (-12_345_678, "-1234.5678"),
        ] {
            assert_eq!(format_ten_thousandths(value), want, "{value}");
        }
    }

    #[test]
    fn symbols_match_case_insensitively() {
        for (given, want) in [
            ("MSFT", Some("MSFT")),
            ("msft", Some("MSFT")),
            ("brk.b", Some("BRK.B")),
            ("Brk-A", Some("BRK-A")),
            ("BRK.A", None),
            ("", None),
            ("XYZ", None),
        ] {
            assert_eq!(known_symbol(given), want, "{given}");
        }
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        for (input, want) in [("", 0xcbf2_9ce4_8422_2325), ("a", 0xaf63_dc4c_8601_ec8c), ("foobar", 0x8594_4171_f739_67e8)] {
            assert_eq!(fnv1a(&[input.as_bytes()]), want, "{input:?}");
        }
    }

    /// Builds a bar from its date and prices, for pinned expectations.
    fn bar(date: Date, open: i64, high: i64, low: i64, close: i64, volume: u64) -> Bar {
        Bar { date, open, high, low, close, volume }
    }

    /// The series are a fixed function of the symbol: these values were computed outside this crate, by a separate
    /// script implementing the documented scheme (FNV-1a over `SYMBOL|YYYY-MM-DD|field`, a walk reflected at 25% of
    /// the base price), not by running `daily_bars`. MSFT is the symbol the docs use; AAPL's walk hits the bound
    /// (2026-10-22..28), so its newest bar also covers the reflection.
    #[test]
    fn series_match_independently_computed_values() {
        let oldest = Date::from_ymd(2026, 7, 6);
        for (symbol, want_newest, want_oldest) in [
            (
                "MSFT",
                bar(LAST_REFRESHED, 8_937_750, 9_004_727, 8_832_489, 8_837_737, 632_071),
                bar(oldest, 8_418_551, 8_519_176, 8_406_525, 8_484_980, 10_938_334),
            ),
            (
                "AAPL",
                bar(LAST_REFRESHED, 3_926_693, 3_995_747, 3_886_271, 3_987_289, 4_162_415),
                bar(oldest, 4_826_229, 4_839_006, 4_736_551, 4_765_821, 14_856_742),
            ),
        ] {
            let bars = daily_bars(symbol);
            assert_eq!(bars.first(), Some(&want_newest), "{symbol} newest");
            assert_eq!(bars.last(), Some(&want_oldest), "{symbol} oldest");
        }
    }

    /// No hidden state: building every series in the opposite order gives the same data, and no two symbols share a
    /// series of closes.
    #[test]
    fn series_are_independent_of_call_order_and_distinct_per_symbol() {
        let forward: Vec<Vec<Bar>> = KNOWN_SYMBOLS.iter().map(|s| daily_bars(s)).collect();
        let mut backward: Vec<Vec<Bar>> = KNOWN_SYMBOLS.iter().rev().map(|s| daily_bars(s)).collect();
        backward.reverse();
        for ((symbol, a), b) in KNOWN_SYMBOLS.iter().zip(&forward).zip(&backward) {
            assert!(a == b, "{symbol}: series depends on call order");
        }

        let closes: Vec<Vec<i64>> = forward.iter().map(|bars| bars.iter().map(|b| b.close).collect()).collect();
        for (i, a) in closes.iter().enumerate() {
            for (j, b) in closes.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{} and {}", KNOWN_SYMBOLS[i], KNOWN_SYMBOLS[j]);
            }
        }
    }

    #[test]
    fn bars_are_consistent_and_in_range() {
        for symbol in KNOWN_SYMBOLS {
            let bars = daily_bars(symbol);
            assert_eq!(bars.len(), COMPACT_ROWS);
            assert_eq!(bars[0].date, LAST_REFRESHED);
            assert!(bars.windows(2).all(|w| w[0].date > w[1].date), "{symbol}: newest first");
            for bar in &bars {
                assert!(!bar.date.weekday().is_weekend(), "{}", bar.date);
                assert!(bar.low <= bar.open && bar.open <= bar.high, "{symbol} {bar:?}");
                assert!(bar.low <= bar.close && bar.close <= bar.high, "{symbol} {bar:?}");
                assert!(bar.low > 0, "{symbol} {bar:?}");
                assert!(bar.close >= MIN_BASE * 3 / 4 && bar.close <= MAX_BASE * 5 / 4, "{symbol} {bar:?}");
                assert!(bar.volume >= MIN_VOLUME);
            }
        }
    }

    #[test]
    fn last_two_decimals_vary() {
        let closes: Vec<i64> = KNOWN_SYMBOLS.iter().flat_map(|s| daily_bars(s)).map(|b| b.close).collect();
        let not_round = closes.iter().filter(|c| *c % 100 != 0).count();
        assert!(not_round > closes.len() / 2, "{not_round} of {}", closes.len());
    }

    #[test]
    fn document_lists_dates_newest_first_with_meta_data() {
        let bars = daily_bars("MSFT");
        let text = daily_document("MSFT", &bars);
        let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        for (pointer, want) in [
            ("/Meta Data/2. Symbol", "MSFT"),
            ("/Meta Data/3. Last Refreshed", "2026-11-20"),
            ("/Meta Data/4. Output Size", "Compact"),
            ("/Meta Data/5. Time Zone", "US/Eastern"),
        ] {
            assert_eq!(doc.pointer(pointer).and_then(|v| v.as_str()), Some(want), "{pointer}");
        }
        let series = doc["Time Series (Daily)"].as_object().expect("series object");
        assert_eq!(series.len(), COMPACT_ROWS);
        let newest = text.find("\"2026-11-20\"").expect("newest row");
        let next = text.find("\"2026-11-19\"").expect("second row");
        assert!(newest < next, "newest row comes first in the document");
        let row = &doc["Time Series (Daily)"]["2026-11-20"];
        for field in ["1. open", "2. high", "3. low", "4. close"] {
            let value = row[field].as_str().expect("string price");
            assert_eq!(value.split('.').nth(1).map(str::len), Some(4), "{field}: {value}");
        }
        assert!(row["5. volume"].as_str().is_some_and(|v| v.parse::<u64>().is_ok()));
    }
}
