//! What `stock-host` and every build of the stock component agree on, and what never changes with a
//! build: the `wasi:config` keys and the environment variables that feed them, their defaults, the
//! duration syntax, secret redaction, the problem document shape, reserved routes, keyvalue buckets, the `X-Cache`
//! values, the calendar, `wasi:io`'s write cap and the test-only floor's answer.
//!
//! Anything a build owns (its keyvalue layout, its validation rules, its breaker) is *not* here: it
//! reaches the host only through the WIT world (`stock:service/status`). No WASI, no I/O.

#![warn(missing_docs)]

pub mod cache_status;
pub mod calendar;
pub mod duration;
pub mod floor;
pub mod keyvalue;
pub mod problem;
pub mod redact;
pub mod routes;
pub mod settings;
pub mod wasi_io;
