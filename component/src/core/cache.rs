//! The cached series: a compact fixed-width encoding (read back without parsing JSON)
//! and the freshness policy that decides HIT, refresh or STALE.

use super::decimal::Decimal;
use super::model::{Close, Date, Series};

/// How long a stale series may still be served when the upstream fails.
pub const MAX_STALE_MS: u64 = 24 * 60 * 60 * 1000;

const MAGIC: &[u8; 4] = b"SCS1";
const HEADER_LEN: usize = 4 + 8 + 2;
const ROW_LEN: usize = 10 + 8 + 1;

/// Encodes a series: magic, fetch time, row count, then `date | units i64 LE | scale` rows.
pub fn encode(series: &Series) -> Vec<u8> {
    let count = u16::try_from(series.closes.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + ROW_LEN * usize::from(count));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&series.fetched_at_ms.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for close in series.closes.iter().take(usize::from(count)) {
        out.extend_from_slice(close.date.bytes());
        out.extend_from_slice(&close.close.units().to_le_bytes());
        out.push(close.close.scale());
    }
    out
}

/// Decodes what [`encode`] wrote; `None` for anything else (an old or foreign value is a miss).
pub fn decode(bytes: &[u8]) -> Option<Series> {
    decode_last(bytes, u32::MAX)
}

/// When the series in `bytes` was fetched, read from its header alone; `None` when `bytes` is not one.
pub fn fetched_at(bytes: &[u8]) -> Option<u64> {
    rows(bytes).map(|(fetched_at_ms, _)| fetched_at_ms)
}

/// [`decode`], keeping only the last `days` rows: a hit decodes the window it answers, not the whole series.
pub fn decode_last(bytes: &[u8], days: u32) -> Option<Series> {
    let (fetched_at_ms, rows) = rows(bytes)?;
    let closes = last_rows(rows, days)
        .chunks_exact(ROW_LEN)
        .map(|row| {
            let date = Date::parse(std::str::from_utf8(&row[..10]).ok()?)?;
            let units = i64::from_le_bytes(row[10..18].try_into().ok()?);
            Some(Close { date, close: Decimal::from_parts(units, row[18])? })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Series { fetched_at_ms, closes })
}

/// What a window's answer depends on in an encoded series: its header (fetch time, row count) and its last
/// `days` rows; `None` when `bytes` is not a series.
pub fn window_parts(bytes: &[u8], days: u32) -> Option<(&[u8], &[u8])> {
    let (_, rows) = rows(bytes)?;
    Some((&bytes[..HEADER_LEN], last_rows(rows, days)))
}

/// The last `days` of whole `rows` (all of them when there are fewer).
fn last_rows(rows: &[u8], days: u32) -> &[u8] {
    let skip = (rows.len() / ROW_LEN).saturating_sub(usize::try_from(days).unwrap_or(usize::MAX));
    &rows[skip * ROW_LEN..]
}

/// The fetch time and the rows of an encoded series, once its magic and length check out.
fn rows(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let header = bytes.get(..HEADER_LEN)?;
    if &header[..4] != MAGIC {
        return None;
    }
    let fetched_at_ms = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let count = usize::from(u16::from_le_bytes(header[12..14].try_into().ok()?));
    let rows = &bytes[HEADER_LEN..];
    (rows.len() == count * ROW_LEN).then_some((fetched_at_ms, rows))
}

/// How a cached series may be used at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within the TTL: serve it.
    Fresh,
    /// Past the TTL but young enough to serve if the upstream fails.
    Stale,
    /// Too old to serve at all.
    Expired,
}

/// Classifies a series fetched at `fetched_at_ms` under a TTL; a clock that went backwards counts as age 0.
pub fn freshness(fetched_at_ms: u64, now_ms: u64, ttl_ms: u64) -> Freshness {
    let age = now_ms.saturating_sub(fetched_at_ms);
    if age < ttl_ms {
        Freshness::Fresh
    } else if age <= MAX_STALE_MS {
        Freshness::Stale
    } else {
        Freshness::Expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Series {
        let closes = [("2026-11-19", "412.5050"), ("2026-11-20", "417.46"), ("2026-11-23", "7")]
            .iter()
            .map(|(d, c)| Close { date: Date::parse(d).expect("valid"), close: Decimal::parse(c).expect("valid") })
            .collect();
        Series { fetched_at_ms: 1_764_000_000_123, closes }
    }

    #[test]
    fn encoding_round_trips() {
        let original = series();
        let bytes = encode(&original);
        assert_eq!(bytes.len(), HEADER_LEN + 3 * ROW_LEN);
        assert_eq!(decode(&bytes), Some(original));
    }

    #[test]
    fn a_window_decodes_only_its_last_rows_and_reads_the_fetch_time_from_the_header() {
        let bytes = encode(&series());
        assert_eq!(fetched_at(&bytes), Some(1_764_000_000_123));
        let last_two = decode_last(&bytes, 2).expect("valid");
        assert_eq!(last_two.closes, series().closes[1..].to_vec());
        assert_eq!(last_two.fetched_at_ms, 1_764_000_000_123);
        assert_eq!(decode_last(&bytes, 100), Some(series()), "a window longer than the series is all of it");
        let mut damaged_outside = bytes.clone();
        damaged_outside[HEADER_LEN + 5] = b'x';
        assert_eq!(decode_last(&damaged_outside, 2).map(|s| s.closes.len()), Some(2), "rows outside the window are not read");
        assert_eq!(decode_last(&damaged_outside, 3), None);
        assert_eq!(fetched_at(&bytes[..bytes.len() - 1]), None, "a truncated value has no fetch time");
        let (header, window) = window_parts(&bytes, 2).expect("valid");
        assert_eq!((header, window), (&bytes[..HEADER_LEN], &bytes[HEADER_LEN + ROW_LEN..]));
        assert_eq!(window_parts(&bytes, 100).map(|(_, rows)| rows.len()), Some(3 * ROW_LEN));
    }

    #[test]
    fn foreign_or_damaged_values_are_misses() {
        let good = encode(&series());
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let mut bad_scale = good.clone();
        bad_scale[HEADER_LEN + 18] = 99;
        let mut bad_date = good.clone();
        bad_date[HEADER_LEN + 5] = b'x';
        for (name, bytes) in [
            ("empty", Vec::new()),
            ("json", br#"{"closes":[]}"#.to_vec()),
            ("magic", bad_magic),
            ("truncated", good[..good.len() - 1].to_vec()),
            ("extra", [good.as_slice(), &[0]].concat()),
            ("scale", bad_scale),
            ("date", bad_date),
        ] {
            assert_eq!(decode(&bytes), None, "{name}");
        }
    }

    #[test]
    fn freshness_follows_ttl_then_stale_window() {
        let ttl = 300_000;
        for (age, want) in [
            (0, Freshness::Fresh),
            (299_999, Freshness::Fresh),
            (300_000, Freshness::Stale),
            (MAX_STALE_MS, Freshness::Stale),
            (MAX_STALE_MS + 1, Freshness::Expired),
        ] {
            assert_eq!(freshness(1_000_000_000, 1_000_000_000 + age, ttl), want, "age {age}");
        }
        assert_eq!(freshness(2_000, 1_000, ttl), Freshness::Fresh, "clock went backwards");
        assert_eq!(freshness(1_000, 1_000, 0), Freshness::Stale, "ttl 0 disables fresh hits");
    }
}
