//! Where the component build comes from at start: COMPONENT (a path; watched, a changed file is a
//! candidate build like any other).

use std::path::PathBuf;

use clap::Args;

/// Where `cargo build --release --target wasm32-wasip2 -p stock-component` puts the component.
pub const DEFAULT_COMPONENT: &str = "target/wasm32-wasip2/release/stock_component.wasm";
/// Where the container image keeps it.
pub const IMAGE_COMPONENT: &str = "/component/stock_component.wasm";

/// The default COMPONENT: the working directory's build, else the build beside this binary
/// (`target/release/stock-host` -> `target/wasm32-wasip2/release/...`), else the image's copy.
pub fn default_component() -> PathBuf {
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|target| target.join("wasm32-wasip2/release/stock_component.wasm")));
    [Some(PathBuf::from(DEFAULT_COMPONENT)), beside_binary, Some(PathBuf::from(IMAGE_COMPONENT))]
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_COMPONENT))
}

/// The component build's source.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Component")]
pub struct ComponentOptions {
    /// Path of the component (.wasm; .wat also accepted); watched, a changed file is checked and goes
    /// live (or starts a canary with CANARY_PERCENT). By default the release build next to this
    /// binary, or the image's /component/stock_component.wasm.
    #[arg(long, env = "COMPONENT", default_value_os_t = default_component())]
    pub component: PathBuf,
}
