//! Stock closing prices as a `wasi:http` component.
//!
//! [`core`] holds all the logic and is plain Rust; the `adapter` (built only for wasm32) connects it to
//! `wasi:http`, `wasi:keyvalue`, `wasi:config` and the `stock:service/prices` export.

#![warn(missing_docs)]

pub mod core;

#[cfg(target_arch = "wasm32")]
mod adapter;
