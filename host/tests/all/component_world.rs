//! The built component's world: only standard WASI imports, and exactly the three exports we promise.

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use crate::common::component_path;

#[test]
fn the_component_imports_only_wasi_and_exports_http_prices_and_status() {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).expect("engine");
    let component = Component::from_file(&engine, component_path()).expect("component compiles");
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(&engine).map(|(name, _)| name.to_owned()).collect();
    let mut exports: Vec<String> = ty.exports(&engine).map(|(name, _)| name.to_owned()).collect();
    exports.sort();
    assert!(!imports.is_empty());
    for import in &imports {
        assert!(import.starts_with("wasi:"), "non-WASI import {import}");
    }
    for needed in [
        "wasi:keyvalue/store@0.2.0-draft",
        "wasi:keyvalue/atomics@0.2.0-draft",
        "wasi:config/store@0.2.0-rc.1",
        "wasi:http/outgoing-handler@0.2.12",
    ] {
        assert!(imports.iter().any(|i| i == needed), "{needed} not imported: {imports:?}");
    }
    assert_eq!(exports, ["stock:service/prices@1.0.0", "stock:service/status@1.0.0", "wasi:http/incoming-handler@0.2.12"]);
}

#[test]
fn the_release_component_stays_under_512_kib() {
    let size = std::fs::metadata(component_path()).expect("component").len();
    assert!(size <= 512 * 1024, "component is {size} bytes");
}
