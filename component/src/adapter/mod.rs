//! The thin WASI edge: bindings, the three exports (`incoming-handler`, `prices`, `status`), and the [`Env`](crate::core::env::Env) over WASI imports.

mod config;
mod env;
#[cfg(feature = "fixture")]
mod fixture;
mod http;
mod prices;
mod status;

wit_bindgen::generate!({
    path: "../wit",
    world: "stock:service/service",
    generate_all,
});

/// The component: one type implementing both exports.
struct Component;

export!(Component);
