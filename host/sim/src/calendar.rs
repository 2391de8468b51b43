//! Proleptic Gregorian dates as day numbers, and the list of trading days (weekdays) the simulator serves.
//!
//! No date crate is needed: conversions use Howard Hinnant's `days_from_civil` / `civil_from_days` algorithms,
//! all in integer arithmetic.

use std::fmt;

/// A calendar date, stored as days since 1970-01-01 (a Thursday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    days: i64,
}

/// Day of the week, as far as trading cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    /// Monday to Friday: markets are open (holidays are not modelled).
    Weekday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl Date {
    /// The date for a year, month (1..=12) and day of month (1..=31). Out-of-range parts are not checked; callers
    /// pass constants.
    pub const fn from_ymd(year: i64, month: u32, day: u32) -> Self {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = month as i64;
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Self { days: era * 146_097 + doe - 719_468 }
    }

    /// Year, month (1..=12) and day of month.
    pub const fn ymd(self) -> (i64, u32, u32) {
        let z = self.days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
        (year, month, day)
    }

    /// Whether the date is a weekday or which weekend day it is.
    pub const fn day_kind(self) -> DayKind {
        // 1970-01-01 was a Thursday: with Sunday = 0 that is 4.
        match (self.days + 4).rem_euclid(7) {
            0 => DayKind::Sunday,
            6 => DayKind::Saturday,
            _ => DayKind::Weekday,
        }
    }

    /// The day before.
    pub const fn pred(self) -> Self {
        Self { days: self.days - 1 }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// The `count` most recent weekdays up to and including `last`, newest first.
pub fn trading_days(last: Date, count: usize) -> Vec<Date> {
    let mut days = Vec::with_capacity(count);
    let mut day = last;
    while days.len() < count {
        if day.day_kind() == DayKind::Weekday {
            days.push(day);
        }
        day = day.pred();
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_format() {
        for (ymd, want) in [
            ((1970, 1, 1), "1970-01-01"),
            ((2000, 2, 29), "2000-02-29"),
            ((2024, 12, 31), "2024-12-31"),
            ((2026, 11, 20), "2026-11-20"),
            ((2026, 3, 1), "2026-03-01"),
            ((1969, 12, 31), "1969-12-31"),
        ] {
            let date = Date::from_ymd(ymd.0, ymd.1, ymd.2);
            assert_eq!(date.to_string(), want);
            assert_eq!(date.ymd(), ymd);
        }
    }

    #[test]
    fn weekdays_are_known_for_fixed_dates() {
        for (ymd, want) in [
            ((1970, 1, 1), DayKind::Weekday),   // Thursday
            ((2026, 11, 20), DayKind::Weekday), // Friday
            ((2026, 11, 21), DayKind::Saturday),
            ((2026, 11, 22), DayKind::Sunday),
            ((2026, 11, 23), DayKind::Weekday), // Monday
            ((2000, 1, 1), DayKind::Saturday),
        ] {
            assert_eq!(Date::from_ymd(ymd.0, ymd.1, ymd.2).day_kind(), want, "{ymd:?}");
        }
    }

    #[test]
    fn trading_days_skip_weekends_newest_first() {
        let friday = Date::from_ymd(2026, 11, 20);
        let sunday = Date::from_ymd(2026, 11, 22);
        for (last, count, first_three) in [
            (friday, 100, ["2026-11-20", "2026-11-19", "2026-11-18"]),
            (sunday, 3, ["2026-11-20", "2026-11-19", "2026-11-18"]),
            (Date::from_ymd(2026, 11, 17), 3, ["2026-11-17", "2026-11-16", "2026-11-13"]),
        ] {
            let days = trading_days(last, count);
            assert_eq!(days.len(), count);
            let head: Vec<String> = days.iter().take(3).map(ToString::to_string).collect();
            assert_eq!(head, first_three);
            assert!(days.windows(2).all(|w| w[0] > w[1]), "newest first");
            assert!(days.iter().all(|d| d.day_kind() == DayKind::Weekday));
        }
    }

    #[test]
    fn hundred_trading_days_span_twenty_weeks() {
        let days = trading_days(Date::from_ymd(2026, 11, 20), 100);
        // 100 weekdays ending on a Friday start on the Monday 19 weeks and 4 days earlier.
        assert_eq!(days.last().map(ToString::to_string).as_deref(), Some("2026-07-06"));
    }
}
