//! The shared duration syntax (`30`, `30s`, `1500ms`, `5m`, `1h`) for the host's own settings.

use std::time::Duration;

use stock_shared::duration::{DURATION_FORMS, parse_ms, render_ms};

/// Parses the shared duration syntax (`30`, `30s`, `1500ms`, `5m`, `1h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_ms(text).map(Duration::from_millis).ok_or_else(|| format!("{text:?} is not {DURATION_FORMS}"))
}

/// [`parse_duration`], refusing zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).and_then(|d| if d.is_zero() { Err("must be more than zero".into()) } else { Ok(d) })
}

/// Renders a duration in the shared syntax, for `wasi:config`.
pub fn config_duration(duration: Duration) -> String {
    render_ms(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_positive_where_zero_makes_no_sense() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_positive_duration("0").is_err());
        assert_eq!(config_duration(Duration::from_millis(1500)), "1500ms");
    }
}
