//! The one duration syntax: `30` (seconds), `30s`, `1500ms`, `5m`, `1h`.

/// Milliseconds in `text`, or `None` when it is not a duration this syntax accepts.
pub fn parse_ms(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor = match unit {
        "" | "s" => 1000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Renders milliseconds so that [`parse_ms`] reads them back exactly (`1500ms`).
pub fn render_ms(ms: u64) -> String {
    format!("{ms}ms")
}

/// How the syntax is described in error messages.
pub const DURATION_FORMS: &str = "a duration such as 30, 30s, 1500ms, 5m or 1h";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_the_seed_forms_and_nothing_else() {
        for (input, want) in [
            ("30", Some(30_000)),
            ("30s", Some(30_000)),
            ("1500ms", Some(1_500)),
            ("5m", Some(300_000)),
            ("1h", Some(3_600_000)),
            ("0", Some(0)),
            ("", None),
            ("s", None),
            ("-1", None),
            ("1.5s", None),
            ("10d", None),
            ("30x", None),
            (" 30", None),
            ("99999999999999999999", None),
        ] {
            assert_eq!(parse_ms(input), want, "input {input:?}");
        }
    }

    #[test]
    fn rendered_durations_read_back() {
        for ms in [0, 1, 999, 30_000, u64::MAX / 2] {
            assert_eq!(parse_ms(&render_ms(ms)), Some(ms));
        }
    }
}
