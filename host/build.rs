//! Build facts for `stock-host --version`: the git commit and the wasmtime version actually locked.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let lock = std::fs::read_to_string("../Cargo.lock").unwrap_or_default();
    let wasmtime = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"").map(|v| v.trim_end_matches('"').to_owned())))
        .unwrap_or_else(|| "unknown".into());
    embed_scalar();
    println!("cargo:rustc-env=STOCK_HOST_COMMIT={commit}");
    println!("cargo:rustc-env=STOCK_HOST_WASMTIME={wasmtime}");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
}

/// Copies Scalar's standalone bundle (fetched and checksummed by `make docs-assets`) where the host
/// embeds it for `GET /docs`: every asset of the docs page is served by the service itself.
fn embed_scalar() {
    let source = std::path::Path::new("../target/docs-assets/scalar.standalone.js");
    println!("cargo:rerun-if-changed={}", source.display());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("scalar.standalone.js");
    if let Err(error) = std::fs::copy(source, &out) {
        panic!("{} is missing ({error}): run `make docs-assets` (or scripts/docs-assets.sh) before building stock-host", source.display());
    }
}
