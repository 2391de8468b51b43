//! Exact decimal numbers for prices: parsed from upstream strings, never through `f64`.

use std::fmt;

/// Most fractional digits we accept; Alpha Vantage sends 4, and 12 leaves room without risking overflow.
pub const MAX_SCALE: u8 = 12;
/// Fractional digits of the reported average.
pub const AVERAGE_SCALE: u8 = 4;

/// A decimal `units / 10^scale`, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    units: i64,
    scale: u8,
}

/// Why a string is not a decimal we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a decimal number: {0:?}")]
pub struct DecimalError(pub String);

impl Decimal {
    /// Builds a decimal from raw parts (used by the cache codec).
    pub fn from_parts(units: i64, scale: u8) -> Option<Self> {
        (scale <= MAX_SCALE).then_some(Self { units, scale })
    }

    /// The integer mantissa.
    pub fn units(self) -> i64 {
        self.units
    }

    /// Number of fractional digits in `units`.
    pub fn scale(self) -> u8 {
        self.scale
    }

    /// Parses `-?digits(.digits)?`, as Alpha Vantage writes prices (`"417.4600"`).
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        let bad = || DecimalError(text.chars().take(32).collect());
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || (body.contains('.') && frac.is_empty()) {
            return Err(bad());
        }
        let scale = u8::try_from(frac.len()).ok().filter(|s| *s <= MAX_SCALE).ok_or_else(bad)?;
        let mut units: i64 = 0;
        for digit in whole.bytes().chain(frac.bytes()) {
            units = units.checked_mul(10).and_then(|u| u.checked_add(i64::from(digit - b'0'))).ok_or_else(bad)?;
        }
        Ok(Self { units: if negative { -units } else { units }, scale })
    }

    /// Exact mean of `values`, rounded half-to-even to [`AVERAGE_SCALE`] places; `None` when empty.
    pub fn mean(values: &[Decimal]) -> Option<Decimal> {
        let count = i128::try_from(values.len()).ok().filter(|n| *n > 0)?;
        let scale = values.iter().map(|v| v.scale).max()?;
        let sum: i128 = values.iter().map(|v| i128::from(v.units) * pow10(scale - v.scale)).sum();
        // mean * 10^4 = sum * 10^4 / (10^scale * count)
        let numerator = sum * pow10(AVERAGE_SCALE);
        let denominator = pow10(scale) * count;
        let units = i64::try_from(div_round_half_even(numerator, denominator)).ok()?;
        Some(Decimal { units, scale: AVERAGE_SCALE })
    }
}

fn pow10(exp: u8) -> i128 {
    10i128.pow(u32::from(exp))
}

/// `numerator / denominator` rounded to the nearest integer, ties to even; `denominator > 0`.
fn div_round_half_even(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator / denominator;
    let remainder = (numerator % denominator).abs();
    let twice = remainder * 2;
    let away = twice > denominator || (twice == denominator && quotient % 2 != 0);
    let step = if numerator < 0 { -1 } else { 1 };
    // A tie with quotient 0 is even, so rounding to 0 is correct for both signs.
    if away { quotient + step } else { quotient }
}

impl fmt::Display for Decimal {
    /// Shortest exact text: trailing fractional zeros trimmed (`417.4600` -> `417.46`, `400.0000` -> `400`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let divisor = 10u64.pow(u32::from(self.scale));
        let magnitude = self.units.unsigned_abs();
        let sign = if self.units < 0 { "-" } else { "" };
        let whole = magnitude / divisor;
        let mut frac = magnitude % divisor;
        let mut digits = usize::from(self.scale);
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        while frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        write!(f, "{sign}{whole}.{frac:0digits$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::parse(text).expect("test input is a valid decimal")
    }

    #[test]
    fn parses_and_prints_exactly() {
        for (input, want) in [
            ("417.4600", "417.46"),
            ("400.0000", "400"),
            ("0.0001", "0.0001"),
            ("0", "0"),
            ("12", "12"),
            ("-3.50", "-3.5"),
            ("0.10", "0.1"),
            ("999999.999999999999", "999999.999999999999"),
        ] {
            assert_eq!(d(input).to_string(), want, "input {input}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_plain_decimal() {
        for input in ["", ".", "1.", ".5", "1e3", "NaN", "1,5", " 1", "1 ", "--1", "+1", "1.2.3", "0.0000000000001", "99999999999999999999"]
        {
            assert!(Decimal::parse(input).is_err(), "accepted {input:?}");
        }
    }

    #[test]
    fn mean_rounds_half_to_even_at_four_places() {
        for (inputs, want) in [
            (&["1", "2"][..], "1.5"),
            (&["388.47", "397.31"][..], "392.89"),
            // 0.00005 is a tie: the 4th digit 0 is even, so it stays.
            (&["0.0001", "0"][..], "0"),
            // 0.00015 is a tie: 1 is odd, so it goes up to 2.
            (&["0.0003", "0"][..], "0.0002"),
            (&["0.0001", "0.0002"][..], "0.0002"),
            (&["0.00025"][..], "0.0002"),
            (&["0.00035"][..], "0.0004"),
            (&["-0.00025"][..], "-0.0002"),
            (&["-0.00035"][..], "-0.0004"),
            (&["-0.00005"][..], "0"),
            (&["0.000251"][..], "0.0003"),
            (&["0.000249"][..], "0.0002"),
            // 1/3 and 2/3 do not tie.
            (&["1", "0", "0"][..], "0.3333"),
            (&["1", "1", "0"][..], "0.6667"),
            (&["417.4600", "414.0200", "418.9900"][..], "416.8233"),
            (&["100.0000", "100.0000", "100.0000", "100.0001"][..], "100"),
            (&["100.0000", "100.0000", "100.0001", "100.0001"][..], "100"),
            (&["100.0001", "100.0001", "100.0001", "100.0000"][..], "100.0001"),
            (&["10.5", "10.25", "10.125"][..], "10.2917"),
        ] {
            let values: Vec<Decimal> = inputs.iter().map(|s| d(s)).collect();
            let mean = Decimal::mean(&values).expect("non-empty");
            assert_eq!(mean.to_string(), want, "mean of {inputs:?}");
            assert_eq!(mean.scale(), AVERAGE_SCALE);
        }
    }

    #[test]
    fn mean_of_nothing_is_none() {
        assert_eq!(Decimal::mean(&[]), None);
    }

    #[test]
    fn mean_of_a_hundred_large_prices_does_not_overflow() {
        let values = vec![d("99999999.9999"); 100];
        assert_eq!(Decimal::mean(&values).expect("non-empty").to_string(), "99999999.9999");
    }
}
