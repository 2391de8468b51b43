//! Fault modes: the ways the simulator can misbehave on `/query`, and their names on the CLI and control API.

use std::fmt;
use std::str::FromStr;

/// How the next `/query` answers are spoiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultMode {
    /// Answer normally.
    #[default]
    None,
    /// Answer normally; only the configured latency applies (it applies in every mode).
    Latency,
    /// HTTP 500 with a small HTML error page.
    Http500,
    /// HTTP 503 with an HTML page, as a proxy in front of the API would send.
    Http503,
    /// Read the request and never answer; the connection stays open.
    Hang,
    /// Close the TCP connection (with a reset) without any response.
    Reset,
    /// HTTP 200 JSON whose document is cut short.
    Malformed,
    /// HTTP 200 `{}`.
    Empty,
    /// HTTP 200 with valid "Meta Data" and an empty "Time Series (Daily)".
    EmptySeries,
    /// HTTP 200 with the old per-minute rate-limit `Note`.
    Note,
    /// HTTP 200 with the daily rate-limit `Information`.
    Information,
    /// HTTP 200 with the invalid-apikey `Error Message`.
    BadKey,
}

impl FaultMode {
    /// Every mode, in the order they are listed to users.
    pub const ALL: [FaultMode; 12] = [
        Self::None,
        Self::Latency,
        Self::Http500,
        Self::Http503,
        Self::Hang,
        Self::Reset,
        Self::Malformed,
        Self::Empty,
        Self::EmptySeries,
        Self::Note,
        Self::Information,
        Self::BadKey,
    ];

    /// The mode's name on the CLI (`--fault`) and in `PUT /_sim/fault?mode=`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Latency => "latency",
            Self::Http500 => "http-500",
            Self::Http503 => "http-503",
            Self::Hang => "hang",
            Self::Reset => "reset",
            Self::Malformed => "malformed",
            Self::Empty => "empty",
            Self::EmptySeries => "empty-series",
            Self::Note => "note",
            Self::Information => "information",
            Self::BadKey => "bad-key",
        }
    }

    /// All mode names, for error messages and the control API.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|mode| mode.name()).collect()
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault mode name that is not one of [`FaultMode::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFaultMode(pub String);

impl fmt::Display for UnknownFaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown fault mode {:?}; expected one of: {}", self.0, FaultMode::names().join(", "))
    }
}

impl std::error::Error for UnknownFaultMode {}

impl FromStr for FaultMode {
    type Err = UnknownFaultMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|mode| mode.name().eq_ignore_ascii_case(s.trim())).ok_or_else(|| UnknownFaultMode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for mode in FaultMode::ALL {
            assert_eq!(mode.name().parse::<FaultMode>(), Ok(mode));
        }
    }

    #[test]
    fn parses_names_and_rejects_others() {
        for (input, want) in [
            ("none", Ok(FaultMode::None)),
            ("HTTP-503", Ok(FaultMode::Http503)),
            (" hang ", Ok(FaultMode::Hang)),
            ("empty-series", Ok(FaultMode::EmptySeries)),
            ("bad-key", Ok(FaultMode::BadKey)),
            ("http500", Err(UnknownFaultMode("http500".into()))),
            ("", Err(UnknownFaultMode(String::new()))),
        ] {
            assert_eq!(input.parse::<FaultMode>(), want, "{input:?}");
        }
    }

    #[test]
    fn unknown_mode_message_lists_modes() {
        let message = UnknownFaultMode("x".into()).to_string();
        assert!(message.contains("\"x\""));
        for name in FaultMode::names() {
            assert!(message.contains(name), "{name}");
        }
    }
}
