//! The wasmtime runtime: one engine and linker, the stores and instance pools, slots, deadlines and
//! the memory cap. It compiles bytes into a checked build, runs a request through a build ([`Runtime::call`])
//! and asks a build for its status ([`Runtime::report`]); it never decides which build serves (that is
//! the builds room's job).

pub mod call;
pub mod compiled;
pub mod egress;
pub mod engine;
pub mod identity;
pub mod pool;
mod runner;
pub mod slots;
pub mod status;
pub mod store;
pub mod variables;

pub use runner::Runtime;
