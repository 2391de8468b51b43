//! The typed `stock:service/prices` export, sharing the HTTP routes' logic.

use super::Component;
use super::env::WasiEnv;
use super::exports::stock::service::prices::{Close, Error as WitError, Guest, Series};
use crate::core::error::Error;
use crate::core::service::{closing_prices, typed_request};

impl Guest for Component {
    fn closing_prices(symbol: Option<String>, days: Option<u32>) -> Result<Series, WitError> {
        let settings = super::config::load().map_err(to_wit)?;
        let (symbol, days) = typed_request(&settings, symbol.as_deref(), days).map_err(to_wit)?;
        let prices = closing_prices(&WasiEnv::default(), &settings, &symbol, days).map_err(to_wit)?;
        Ok(Series {
            symbol: prices.symbol.as_str().to_owned(),
            ndays: u32::try_from(prices.closes.len()).unwrap_or(u32::MAX),
            prices: prices.closes.iter().map(|c| Close { date: c.date.as_str().to_owned(), close: c.close.to_string() }).collect(),
            average: prices.average.to_string(),
        })
    }
}

fn to_wit(error: Error) -> WitError {
    let problem = error.problem();
    match error {
        Error::InvalidSymbol(_) | Error::InvalidDays(_) | Error::InvalidPath => WitError::InvalidInput(problem.detail),
        Error::UnknownSymbol(symbol) => WitError::UnknownSymbol(symbol),
        Error::UpstreamTimeout(_) => WitError::UpstreamTimeout,
        _ => match problem.retry_after_secs {
            Some(secs) => WitError::Unavailable(secs),
            None => WitError::BadUpstream(problem.detail),
        },
    }
}
