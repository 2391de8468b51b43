//! The trading days (weekdays) the simulator serves. Dates and weekdays come from the one calendar the
//! component and the tests use too (`stock_shared::calendar`).

pub use stock_shared::calendar::Date;

/// The `count` most recent weekdays up to and including `last`, newest first (holidays are not modelled).
pub fn trading_days(last: Date, count: usize) -> Vec<Date> {
    let mut days = Vec::with_capacity(count);
    let mut day = last;
    while days.len() < count {
        if !day.weekday().is_weekend() {
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
            assert!(days.iter().all(|d| !d.weekday().is_weekend()));
        }
    }

    #[test]
    fn hundred_trading_days_span_twenty_weeks() {
        let days = trading_days(Date::from_ymd(2026, 11, 20), 100);
        // 100 weekdays ending on a Friday start on the Monday 19 weeks and 4 days earlier.
        assert_eq!(days.last().map(ToString::to_string).as_deref(), Some("2026-07-06"));
    }
}
