//! Property tests over the pure core: the router, the day and symbol parsers, the Alpha Vantage parser,
//! the cache encoding and the shared calendar. Arbitrary input never panics, and what is accepted is always in range.

use proptest::prelude::*;
use stock_component::core::alphavantage::parse_answer;
use stock_component::core::cache;
use stock_component::core::decimal::Decimal;
use stock_component::core::model::{Close, Date, MAX_DAYS, Series, Symbol, parse_days};
use stock_component::core::route::{Route, route};
use stock_shared::calendar::{Date as CalendarDate, MS_PER_DAY, utc_date};

fn valid_symbol() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.-]{1,10}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn the_router_never_panics_and_routes_only_valid_prices(method in "[A-Z]{1,8}", path in "\\PC{0,64}") {
        if let Ok(Route::Prices { symbol, days }) = route(&method, &path) {
            prop_assert!(method == "GET" || method == "HEAD");
            if let Some(symbol) = symbol {
                prop_assert!(symbol.as_str().len() <= 10);
                prop_assert!(symbol.as_str().bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'-'));
            }
            if let Some(days) = days {
                prop_assert!((1..=MAX_DAYS).contains(&days));
            }
        }
    }

    #[test]
    fn valid_symbols_and_days_always_route(symbol in valid_symbol(), days in 1..=MAX_DAYS) {
        let reserved = stock_shared::routes::reserved(&symbol).is_some();
        let routed = route("GET", &format!("/{symbol}/{days}"));
        if !reserved {
            let want = Route::Prices { symbol: Symbol::parse(&symbol), days: Some(days) };
            prop_assert_eq!(routed, Ok(want));
        }
    }

    #[test]
    fn days_are_exactly_the_canonical_decimals_from_1_to_100(text in "\\PC{0,6}") {
        let canonical = (1..=MAX_DAYS).map(|d| d.to_string()).any(|d| d == text);
        prop_assert_eq!(parse_days(&text).is_some(), canonical);
        if let Some(days) = parse_days(&text) {
            prop_assert_eq!(days.to_string(), text);
        }
    }

    #[test]
    fn symbols_parse_case_insensitively_or_not_at_all(text in "\\PC{0,16}") {
        match Symbol::parse(&text) {
            Some(symbol) => prop_assert_eq!(symbol.as_str(), text.to_ascii_uppercase()),
            None => prop_assert!(text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')),
        }
    }

    #[test]
    fn the_alpha_vantage_parser_never_panics(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_answer(status, &body);
    }

    #[test]
    fn the_alpha_vantage_parser_never_panics_on_near_json(body in r#"\{("[A-Za-z .()0-9]{0,20}": ("[0-9.\-]{0,12}"|\{\}|\[\]|null|[0-9]{1,4}),? ?){0,6}\}"#) {
        let _ = parse_answer(200, body.as_bytes());
    }

    #[test]
    fn the_cache_decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = cache::decode(&bytes);
    }

    #[test]
    fn the_shared_calendar_agrees_with_an_independent_calendar_walk(n in 0u32..80_000) {
        let date = CalendarDate::from_ymd(2000, 1, 1);
        let date = CalendarDate::from_days(date.days() + i64::from(n));
        prop_assert_eq!(date.to_string(), civil(n));
        let (y, m, d) = date.ymd();
        prop_assert_eq!(CalendarDate::from_ymd(y, m, d), date);
        prop_assert_eq!(date.succ().pred(), date);
        if let Some(midnight) = date.unix_ms() {
            prop_assert_eq!(utc_date(midnight + MS_PER_DAY - 1), civil(n));
        }
    }

    #[test]
    fn weekdays_cycle_through_the_week_day_by_day(n in -100_000i64..100_000) {
        let date = CalendarDate::from_days(n);
        let week: Vec<_> = (0..7).map(|i| CalendarDate::from_days(n + i).weekday()).collect();
        prop_assert_eq!(week.iter().filter(|d| d.is_weekend()).count(), 2);
        prop_assert_eq!(CalendarDate::from_days(n + 7).weekday(), date.weekday());
    }

    #[test]
    fn cached_series_round_trip(fetched_at_ms in any::<u64>(), rows in proptest::collection::btree_map(0u32..20_000, (0i64..100_000_000, 0u8..=4), 1..100)) {
        let closes: Vec<Close> = rows
            .iter()
            .map(|(day, (units, scale))| {
                let date = civil(*day);
                Close { date: Date::parse(&date).expect("generated date"), close: Decimal::from_parts(*units, *scale).expect("in range") }
            })
            .collect();
        let series = Series { fetched_at_ms, closes };
        prop_assert_eq!(cache::decode(&cache::encode(&series)), Some(series));
    }
}

/// `YYYY-MM-DD` of day `n` after 2000-01-01: an oracle kept on purpose beside `stock_shared::calendar`, because it is
/// written differently (it walks whole years, then whole months, with the leap rule spelled out) and so cannot share
/// a mistake with Hinnant's era arithmetic there.
fn civil(n: u32) -> String {
    let (mut year, mut day) = (2000u32, n);
    loop {
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let len = if leap { 366 } else { 365 };
        if day < len {
            let months = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
            let mut month = 0;
            while day >= months[month] {
                day -= months[month];
                month += 1;
            }
            return format!("{year:04}-{:02}-{:02}", month + 1, day + 1);
        }
        day -= len;
        year += 1;
    }
}
