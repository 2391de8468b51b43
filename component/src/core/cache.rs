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
    let header = bytes.get(..HEADER_LEN)?;
    if &header[..4] != MAGIC {
        return None;
    }
    let fetched_at_ms = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let count = usize::from(u16::from_le_bytes(header[12..14].try_into().ok()?));
    let rows = &bytes[HEADER_LEN..];
    if rows.len() != count * ROW_LEN {
        return None;
    }
    let closes = rows
        .chunks_exact(ROW_LEN)
        .map(|row| {
            let date = Date::parse(std::str::from_utf8(&row[..10]).ok()?)?;
            let units = i64::from_le_bytes(row[10..18].try_into().ok()?);
            Some(Close { date, close: Decimal::from_parts(units, row[18])? })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Series { fetched_at_ms, closes })
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
