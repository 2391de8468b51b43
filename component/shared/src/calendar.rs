//! The proleptic Gregorian calendar in integer arithmetic: days since 1970-01-01 to and from a civil
//! date, `YYYY-MM-DD` rendering and the day of the week. The one calendar the component (UTC day of the
//! quota), the simulator (trading days) and the tests use; no date crate, no clock, no I/O.
//!
//! Conversions are Howard Hinnant's `days_from_civil` / `civil_from_days`
//! (<https://howardhinnant.github.io/date_algorithms.html>): exact for every `i64` day the arithmetic fits.

use std::fmt;

/// Milliseconds in a UTC day (Unix time has no leap seconds).
pub const MS_PER_DAY: u64 = 86_400_000;

/// Days in a 400-year era, after which the Gregorian calendar repeats.
const DAYS_PER_ERA: i64 = 146_097;
/// Days from 0000-03-01 (the start of Hinnant's era 0, with March as the first month) to 1970-01-01.
const EPOCH_SHIFT: i64 = 719_468;

/// A calendar date, kept as days since 1970-01-01 so that order, differences and stepping are plain integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    days: i64,
}

/// Day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl Weekday {
    /// Saturday or Sunday.
    pub const fn is_weekend(self) -> bool {
        matches!(self, Self::Saturday | Self::Sunday)
    }
}

impl Date {
    /// 1970-01-01, day 0 of Unix time.
    pub const UNIX_EPOCH: Self = Self { days: 0 };

    /// The date `days` after 1970-01-01 (negative: before it).
    pub const fn from_days(days: i64) -> Self {
        Self { days }
    }

    /// Days since 1970-01-01.
    pub const fn days(self) -> i64 {
        self.days
    }

    /// The UTC date of a Unix time in milliseconds.
    pub const fn from_unix_ms(unix_ms: u64) -> Self {
        // u64::MAX / MS_PER_DAY is about 2.1e11 days: it always fits an i64.
        Self { days: (unix_ms / MS_PER_DAY) as i64 }
    }

    /// Unix milliseconds at 00:00 UTC of this date; `None` before 1970 or past what a `u64` holds.
    pub const fn unix_ms(self) -> Option<u64> {
        if self.days < 0 {
            return None;
        }
        (self.days as u64).checked_mul(MS_PER_DAY)
    }

    /// The date for a year, month (1..=12) and day of month (1..=31). Parts out of range are not checked
    /// (they roll over into neighbouring months); callers pass dates they know.
    pub const fn from_ymd(year: i64, month: u32, day: u32) -> Self {
        // Years start in March, so the leap day is the last day of the "year".
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let m = month as i64;
        let month_from_march = if m > 2 { m - 3 } else { m + 9 };
        let day_of_year = (153 * month_from_march + 2) / 5 + day as i64 - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        Self { days: era * DAYS_PER_ERA + day_of_era - EPOCH_SHIFT }
    }

    /// Year, month (1..=12) and day of month (1..=31).
    pub const fn ymd(self) -> (i64, u32, u32) {
        let z = self.days + EPOCH_SHIFT;
        let era = z.div_euclid(DAYS_PER_ERA);
        let day_of_era = z - era * DAYS_PER_ERA;
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
        let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
        let year = year_of_era + era * 400 + if month <= 2 { 1 } else { 0 };
        (year, month, day)
    }

    /// The day of the week.
    pub const fn weekday(self) -> Weekday {
        // 1970-01-01 was a Thursday.
        match self.days.rem_euclid(7) {
            0 => Weekday::Thursday,
            1 => Weekday::Friday,
            2 => Weekday::Saturday,
            3 => Weekday::Sunday,
            4 => Weekday::Monday,
            5 => Weekday::Tuesday,
            _ => Weekday::Wednesday,
        }
    }

    /// The day before.
    pub const fn pred(self) -> Self {
        Self { days: self.days - 1 }
    }

    /// The day after.
    pub const fn succ(self) -> Self {
        Self { days: self.days + 1 }
    }
}

/// `YYYY-MM-DD` (years before 1 or after 9999 keep their sign and digits: `-0001-03-01`, `10000-01-01`).
impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.ymd();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

/// `YYYY-MM-DD` of the UTC day a Unix time in milliseconds falls on (the daily quota's key).
pub fn utc_date(unix_ms: u64) -> String {
    Date::from_unix_ms(unix_ms).to_string()
}

/// The next 00:00 UTC strictly after `unix_ms` (when a daily quota resets).
pub fn next_utc_midnight(unix_ms: u64) -> u64 {
    (unix_ms / MS_PER_DAY).saturating_add(1).saturating_mul(MS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_round_trip_and_render() {
        for (ymd, days, text) in [
            ((1970, 1, 1), 0, "1970-01-01"),
            ((1969, 12, 31), -1, "1969-12-31"),
            ((2000, 2, 29), 11_016, "2000-02-29"),
            ((2000, 3, 1), 11_017, "2000-03-01"),
            ((1900, 3, 1), -25_508, "1900-03-01"),
            ((2024, 12, 31), 20_088, "2024-12-31"),
            ((2025, 11, 24), 20_416, "2025-11-24"),
            ((2026, 11, 20), 20_777, "2026-11-20"),
            ((2026, 12, 31), 20_818, "2026-12-31"),
        ] {
            let date = Date::from_ymd(ymd.0, ymd.1, ymd.2);
            assert_eq!((date.days(), date.ymd(), date.to_string()), (days, ymd, text.to_owned()), "{text}");
            assert_eq!(Date::from_days(days), date);
        }
    }

    #[test]
    fn unix_milliseconds_map_to_their_utc_day() {
        for (ms, want) in [
            (0, "1970-01-01"),
            (MS_PER_DAY - 1, "1970-01-01"),
            (MS_PER_DAY, "1970-01-02"),
            (951_782_400_000, "2000-02-29"),
            (1_764_000_000_000, "2025-11-24"),
            (1_798_761_599_000, "2026-12-31"),
        ] {
            assert_eq!(utc_date(ms), want, "{ms}");
        }
        let day = Date::from_ymd(2025, 11, 24);
        assert_eq!(day.unix_ms().map(Date::from_unix_ms), Some(day));
        assert_eq!(Date::from_ymd(1969, 12, 31).unix_ms(), None, "before the epoch has no unsigned Unix time");
    }

    #[test]
    fn midnight_is_the_start_of_the_next_utc_day() {
        for (ms, want) in [(0, MS_PER_DAY), (MS_PER_DAY - 1, MS_PER_DAY), (MS_PER_DAY, 2 * MS_PER_DAY), (u64::MAX, u64::MAX)] {
            assert_eq!(next_utc_midnight(ms), want, "{ms}");
        }
    }

    #[test]
    fn weekdays_of_known_dates() {
        for (ymd, want) in [
            ((1970, 1, 1), Weekday::Thursday),
            ((1969, 12, 29), Weekday::Monday),
            ((2000, 1, 1), Weekday::Saturday),
            ((2026, 11, 20), Weekday::Friday),
            ((2026, 11, 21), Weekday::Saturday),
            ((2026, 11, 22), Weekday::Sunday),
            ((2026, 11, 23), Weekday::Monday),
            ((2026, 11, 24), Weekday::Tuesday),
            ((2026, 11, 25), Weekday::Wednesday),
        ] {
            let date = Date::from_ymd(ymd.0, ymd.1, ymd.2);
            assert_eq!(date.weekday(), want, "{ymd:?}");
            assert_eq!(date.weekday().is_weekend(), matches!(want, Weekday::Saturday | Weekday::Sunday));
        }
    }

    #[test]
    fn stepping_crosses_month_year_and_leap_day_boundaries() {
        for (from, to) in [
            ((2000, 2, 28), "2000-02-29"),
            ((2000, 2, 29), "2000-03-01"),
            ((1900, 2, 28), "1900-03-01"),
            ((2100, 2, 28), "2100-03-01"),
            ((1999, 12, 31), "2000-01-01"),
        ] {
            let date = Date::from_ymd(from.0, from.1, from.2);
            assert_eq!(date.succ().to_string(), to, "{from:?}");
            assert_eq!(date.succ().pred(), date);
        }
    }
}
