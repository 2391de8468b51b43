//! Integration tests: every test starts real processes on loopback and talks HTTP to them.

mod common;
mod component_prices_export;
mod component_under_wasmtime_serve;
mod component_world;
mod container;
mod fleet;
mod host_cache_and_state;
mod host_canary;
mod host_hostile_input;
mod host_hot_swap;
mod host_instance_reuse;
mod host_lifecycle;
mod host_metrics_and_secrets;
mod host_redis;
mod host_registry;
mod host_reliability;
mod host_rollout_control;
mod host_state_bounds;
mod observability;
