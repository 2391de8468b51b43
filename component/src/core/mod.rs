//! The stock logic with no WASI in sight: parsing, exact arithmetic, cache policy, breaker, routing,
//! errors. Everything here runs natively under `cargo test`.

pub mod alphavantage;
pub mod breaker;
pub mod cache;
pub mod config;
pub mod decimal;
pub mod env;
pub mod error;
pub mod flight;
pub mod layout;
pub mod model;
pub mod render;
pub mod rendered;
pub mod respond;
pub mod route;
pub mod service;
pub mod upstream;
