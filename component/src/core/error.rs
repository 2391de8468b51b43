//! Every way a request can fail, and the one place that turns a failure into an RFC 9457 problem.

use super::alphavantage::Refusal;
use super::config::ConfigError;

/// `Retry-After` when the host refused the upstream call: about when Redis is probed again.
pub const UPSTREAM_REFUSED_RETRY_SECS: u32 = 5;

/// A request failure with a known meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The symbol segment is not 1-10 letters, digits, `.` or `-`.
    #[error("symbol {0:?} is not 1-10 letters, digits, '.' or '-'")]
    InvalidSymbol(String),
    /// The days segment is not a whole number from 1 to 100.
    #[error("days {0:?} is not a whole number from 1 to 100")]
    InvalidDays(String),
    /// The path has more segments than `/{symbol}/{days}`.
    #[error("no route for this path; use /{{symbol}} or /{{symbol}}/{{days}}")]
    InvalidPath,
    /// A reserved path that this component does not serve.
    #[error("{0} is not served here")]
    NotFound(String),
    /// Only GET and HEAD are served.
    #[error("method {0} is not allowed; use GET or HEAD")]
    MethodNotAllowed(String),
    /// The upstream does not know the symbol.
    #[error("symbol {0} is not known upstream")]
    UnknownSymbol(String),
    /// The upstream answered something that is not a usable series.
    #[error("{0}")]
    BadUpstream(String),
    /// The upstream asked us to slow down.
    #[error("upstream rate limit reached")]
    RateLimited {
        /// Seconds for `Retry-After`.
        retry_after_secs: u32,
    },
    /// The upstream refused our credentials or plan (invalid, demo or premium key).
    #[error("upstream refused the service's credentials; an operator must fix the API key")]
    UpstreamMisconfigured {
        /// Seconds for `Retry-After`.
        retry_after_secs: u32,
    },
    /// The component's own configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Today's upstream quota is spent.
    #[error("the daily upstream quota of {quota} calls is spent")]
    QuotaExhausted {
        /// The configured quota.
        quota: u64,
        /// Seconds until UTC midnight, when it resets.
        retry_after_secs: u32,
    },
    /// Today's share of the quota for symbols never served before is spent (NEW_SYMBOL_QUOTA_PERCENT).
    #[error(
        "the share of the daily upstream quota for symbols not served before ({share} calls) is spent; symbols that have answered before are still refreshed"
    )]
    NewSymbolQuotaExhausted {
        /// Calls per day such symbols may spend.
        share: u64,
        /// Seconds until UTC midnight, when it resets.
        retry_after_secs: u32,
    },
    /// The symbol is not in ALLOWED_SYMBOLS: answered without any upstream call.
    #[error("symbol {0} is not served here")]
    NotAllowed(String),
    /// The breaker is open after repeated upstream failures.
    #[error("upstream calls are paused after repeated failures")]
    CircuitOpen {
        /// Seconds for `Retry-After`.
        retry_after_secs: u32,
    },
    /// The upstream did not answer in time.
    #[error("upstream did not answer within {0} ms")]
    UpstreamTimeout(u64),
    /// The host would not make the upstream call (for example while Redis, where the fleet counts the
    /// day's quota, is unreachable).
    #[error("{0}")]
    UpstreamRefused(String),
}

/// An RFC 9457 problem: what the HTTP adapter writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// HTTP status.
    pub status: u16,
    /// Last segment of the `type` URI.
    pub slug: &'static str,
    /// Short, fixed summary of the problem type.
    pub title: &'static str,
    /// What happened in this occurrence.
    pub detail: String,
    /// Seconds for a `Retry-After` header, when retrying later helps.
    pub retry_after_secs: Option<u32>,
}

impl Error {
    /// Maps the error to its HTTP problem; the only place statuses are chosen.
    pub fn problem(&self) -> Problem {
        let (status, slug, title, retry_after_secs) = match self {
            Self::InvalidSymbol(_) => (400, "invalid-symbol", "Invalid symbol", None),
            Self::InvalidDays(_) => (400, "invalid-days", "Invalid number of days", None),
            Self::InvalidPath => (400, "invalid-path", "Invalid path", None),
            Self::NotFound(_) => (404, "not-found", "Not found", None),
            Self::MethodNotAllowed(_) => (405, "method-not-allowed", "Method not allowed", None),
            Self::UnknownSymbol(_) | Self::NotAllowed(_) => (404, "unknown-symbol", "Unknown symbol", None),
            Self::BadUpstream(_) => (502, "bad-upstream-response", "Bad upstream response", None),
            Self::RateLimited { retry_after_secs } => {
                (503, "upstream-rate-limited", "Upstream rate limit reached", Some(*retry_after_secs))
            }
            Self::UpstreamMisconfigured { retry_after_secs } => {
                (503, "upstream-misconfigured", "Upstream refused our credentials", Some(*retry_after_secs))
            }
            Self::Config(_) => (503, "service-misconfigured", "Service misconfigured", Some(60)),
            Self::QuotaExhausted { retry_after_secs, .. } | Self::NewSymbolQuotaExhausted { retry_after_secs, .. } => {
                (503, "upstream-quota-exhausted", "Daily upstream quota spent", Some(*retry_after_secs))
            }
            Self::CircuitOpen { retry_after_secs } => (503, "circuit-open", "Circuit breaker open", Some(*retry_after_secs)),
            Self::UpstreamTimeout(_) => (504, "upstream-timeout", "Upstream timeout", None),
            Self::UpstreamRefused(_) => {
                (503, "upstream-call-refused", "The host refused the upstream call", Some(UPSTREAM_REFUSED_RETRY_SECS))
            }
        };
        Problem { status, slug, title, detail: self.to_string(), retry_after_secs }
    }

    /// Whether a stale cached series is a better answer than this error.
    pub fn allows_stale(&self) -> bool {
        matches!(
            self,
            Self::BadUpstream(_)
                | Self::RateLimited { .. }
                | Self::UpstreamMisconfigured { .. }
                | Self::QuotaExhausted { .. }
                | Self::NewSymbolQuotaExhausted { .. }
                | Self::CircuitOpen { .. }
                | Self::UpstreamTimeout(_)
                | Self::UpstreamRefused(_)
        )
    }

    /// Whether the failure says the upstream is unhealthy (feeds the breaker). A refused key is our
    /// misconfiguration: opening the breaker would only delay the fix (a rotated key) by the open time.
    pub fn counts_against_upstream(&self) -> bool {
        self.allows_stale()
            && !matches!(
                self,
                Self::CircuitOpen { .. }
                    | Self::UpstreamRefused(_)
                    | Self::UpstreamMisconfigured { .. }
                    | Self::QuotaExhausted { .. }
                    | Self::NewSymbolQuotaExhausted { .. }
            )
    }

    /// Converts an upstream refusal for `symbol`.
    pub fn from_refusal(refusal: Refusal, symbol: &str) -> Self {
        match refusal {
            Refusal::UnknownSymbol => Self::UnknownSymbol(symbol.to_owned()),
            Refusal::InvalidKey | Refusal::Rejected => {
                Self::UpstreamMisconfigured { retry_after_secs: super::alphavantage::DAILY_LIMIT_RETRY_SECS }
            }
            Refusal::RateLimited { retry_after_secs } => Self::RateLimited { retry_after_secs },
            Refusal::Unusable(detail) => Self::BadUpstream(detail),
        }
    }

    /// Short text form so single-flight followers can learn the leader's outcome through keyvalue.
    pub fn encode_outcome(&self) -> String {
        match self {
            Self::UnknownSymbol(s) => format!("unknown:{s}"),
            Self::RateLimited { retry_after_secs } => format!("rate:{retry_after_secs}"),
            Self::UpstreamMisconfigured { retry_after_secs } => format!("misconfigured:{retry_after_secs}"),
            Self::CircuitOpen { retry_after_secs } => format!("open:{retry_after_secs}"),
            Self::QuotaExhausted { quota, retry_after_secs } => format!("quota:{quota}:{retry_after_secs}"),
            Self::NewSymbolQuotaExhausted { share, retry_after_secs } => format!("newquota:{share}:{retry_after_secs}"),
            Self::UpstreamTimeout(ms) => format!("timeout:{ms}"),
            Self::UpstreamRefused(why) => format!("refused:{why}"),
            other => format!("bad:{other}"),
        }
    }

    /// Reads [`encode_outcome`](Self::encode_outcome); unknown text becomes a 502.
    pub fn decode_outcome(text: &str) -> Self {
        let (kind, rest) = text.split_once(':').unwrap_or(("bad", text));
        let number = || rest.parse().unwrap_or(1);
        match kind {
            "unknown" => Self::UnknownSymbol(rest.to_owned()),
            "rate" => Self::RateLimited { retry_after_secs: number() },
            "misconfigured" => Self::UpstreamMisconfigured { retry_after_secs: number() },
            "open" => Self::CircuitOpen { retry_after_secs: number() },
            "quota" => {
                let (quota, retry) = rest.split_once(':').unwrap_or((rest, "1"));
                Self::QuotaExhausted { quota: quota.parse().unwrap_or(0), retry_after_secs: retry.parse().unwrap_or(1) }
            }
            "newquota" => {
                let (share, retry) = rest.split_once(':').unwrap_or((rest, "1"));
                Self::NewSymbolQuotaExhausted { share: share.parse().unwrap_or(0), retry_after_secs: retry.parse().unwrap_or(1) }
            }
            "timeout" => Self::UpstreamTimeout(rest.parse().unwrap_or(0)),
            "refused" => Self::UpstreamRefused(rest.to_owned()),
            _ => Self::BadUpstream(rest.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_status_and_no_known_case_is_a_500() {
        let config = ConfigError { key: "ndays", reason: "x".into() };
        for (error, status, slug, retry) in [
            (Error::InvalidSymbol("$".into()), 400, "invalid-symbol", None),
            (Error::InvalidDays("0".into()), 400, "invalid-days", None),
            (Error::InvalidPath, 400, "invalid-path", None),
            (Error::NotFound("/docs".into()), 404, "not-found", None),
            (Error::MethodNotAllowed("POST".into()), 405, "method-not-allowed", None),
            (Error::UnknownSymbol("ZZZZ".into()), 404, "unknown-symbol", None),
            (Error::BadUpstream("x".into()), 502, "bad-upstream-response", None),
            (Error::RateLimited { retry_after_secs: 60 }, 503, "upstream-rate-limited", Some(60)),
            (Error::UpstreamMisconfigured { retry_after_secs: 5 }, 503, "upstream-misconfigured", Some(5)),
            (Error::Config(config), 503, "service-misconfigured", Some(60)),
            (Error::CircuitOpen { retry_after_secs: 9 }, 503, "circuit-open", Some(9)),
            (Error::QuotaExhausted { quota: 25, retry_after_secs: 7 }, 503, "upstream-quota-exhausted", Some(7)),
            (Error::NewSymbolQuotaExhausted { share: 5, retry_after_secs: 7 }, 503, "upstream-quota-exhausted", Some(7)),
            (Error::NotAllowed("ZZZZ".into()), 404, "unknown-symbol", None),
            (Error::UpstreamTimeout(1000), 504, "upstream-timeout", None),
            (Error::UpstreamRefused("x".into()), 503, "upstream-call-refused", Some(UPSTREAM_REFUSED_RETRY_SECS)),
        ] {
            let problem = error.problem();
            assert_eq!((problem.status, problem.slug, problem.retry_after_secs), (status, slug, retry), "{error:?}");
            assert!(
                stock_shared::problem::is_known(slug, status, stock_shared::problem::Owner::Component),
                "{slug} is not in problem::TYPES"
            );
        }
    }

    #[test]
    fn refusals_map_to_errors() {
        for (refusal, want) in [
            (Refusal::UnknownSymbol, Error::UnknownSymbol("X".into())),
            (Refusal::InvalidKey, Error::UpstreamMisconfigured { retry_after_secs: 3600 }),
            (Refusal::Rejected, Error::UpstreamMisconfigured { retry_after_secs: 3600 }),
            (Refusal::RateLimited { retry_after_secs: 60 }, Error::RateLimited { retry_after_secs: 60 }),
            (Refusal::Unusable("empty".into()), Error::BadUpstream("empty".into())),
        ] {
            assert_eq!(Error::from_refusal(refusal, "X"), want);
        }
    }

    #[test]
    fn outcomes_round_trip_through_text() {
        for error in [
            Error::UnknownSymbol("BRK.B".into()),
            Error::RateLimited { retry_after_secs: 60 },
            Error::UpstreamMisconfigured { retry_after_secs: 3600 },
            Error::CircuitOpen { retry_after_secs: 12 },
            Error::QuotaExhausted { quota: 25, retry_after_secs: 3600 },
            Error::NewSymbolQuotaExhausted { share: 5, retry_after_secs: 3600 },
            Error::UpstreamTimeout(2000),
            Error::UpstreamRefused("the host refused the upstream call: none while Redis is unreachable".into()),
            Error::BadUpstream("upstream answered HTTP 500".into()),
        ] {
            assert_eq!(Error::decode_outcome(&error.encode_outcome()), error);
        }
    }

    #[test]
    fn stale_data_beats_upstream_trouble_but_not_client_errors() {
        assert!(Error::UpstreamTimeout(1).allows_stale());
        assert!(Error::CircuitOpen { retry_after_secs: 1 }.allows_stale());
        assert!(!Error::CircuitOpen { retry_after_secs: 1 }.counts_against_upstream());
        assert!(!Error::UpstreamMisconfigured { retry_after_secs: 1 }.counts_against_upstream());
        assert!(Error::RateLimited { retry_after_secs: 1 }.counts_against_upstream());
        assert!(!Error::UnknownSymbol("X".into()).allows_stale());
        assert!(!Error::InvalidDays("0".into()).allows_stale());
    }
}
