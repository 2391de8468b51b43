//! The thin WASI edge: bindings, the two exports, and the [`Env`](crate::core::env::Env) over WASI imports.

mod config;
mod env;
mod http;
mod prices;

wit_bindgen::generate!({
    path: "../wit",
    world: "stock:service/service",
    generate_all,
});

/// The component: one type implementing both exports.
struct Component;

export!(Component);
