//! The `stock:service/status` export, as the host calls it: the only way it learns a build's breaker
//! and whether the build accepts its configuration.

#[expect(missing_docs, reason = "bindgen-generated code")]
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package stock:host;
            /// What the host calls on every build besides `wasi:http/incoming-handler`.
            world build-status {
                export stock:service/status@1.0.0;
            }
        ",
        world: "stock:host/build-status",
        exports: { default: async },
    });
}

use crate::metrics::BREAKER_STATES;

pub use generated::exports::stock::service::status::{
    BreakerState, BreakerStatus, ConfigProblem, Guest as Status, GuestIndices as StatusIndices, QuotaStatus,
};

/// The seed's gauge value: 0 closed, 1 open, 2 half-open.
pub fn gauge_value(state: BreakerState) -> i64 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

/// Transition totals by the `state` label value the metrics use.
pub fn transitions(breaker: &BreakerStatus) -> [(&'static str, u64); 3] {
    let [closed, open, half_open] = BREAKER_STATES;
    [(closed, breaker.transitions_to_closed), (open, breaker.transitions_to_open), (half_open, breaker.transitions_to_half_open)]
}
