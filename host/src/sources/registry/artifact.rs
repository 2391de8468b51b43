//! The wasm OCI artifact layout (CNCF TAG Runtime, written by `wkg oci push` and the `oci-wasm` crate):
//! an OCI image manifest whose config has media type `application/vnd.wasm.config.v0+json` and whose
//! one layer is the component, `application/wasm`. Pure: reading (and checking) a manifest, and
//! writing one for `stock-host push`.

use serde::{Deserialize, Serialize};

use crate::builds::MAX_COMPONENT_BYTES;

/// The manifest type the layout uses.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config blob's media type in the layout.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type.
pub const WASM_LAYER: &str = "application/wasm";
/// What the host asks a registry for: the layout's manifest type, and the others only so they can be
/// named when a tag points at one.
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                          application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
/// Largest manifest read (distribution's own limit is 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// A content descriptor: what a blob is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// `sha256:HEX`.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
    /// Annotations (cosign keeps its signature here).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// An image manifest, as much of it as the host reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own type (optional in the spec; the response's Content-Type says it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The component layer of a manifest that follows the layout, or why it does not.
pub fn component_layer(bytes: &[u8], content_type: Option<&str>) -> Result<Descriptor, String> {
    let declared = serde_json::from_slice::<serde_json::Value>(bytes)
        .map_err(|e| format!("the manifest is not JSON: {e}"))?
        .get("mediaType")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_owned()));
    match declared.as_deref() {
        None | Some(OCI_MANIFEST) => {}
        Some(index) if index.contains("index") || index.contains("manifest.list") => {
            return Err(format!("the tag points at an image index ({index}), not a wasm component artifact"));
        }
        Some(other) => return Err(format!("manifest media type {other} is not {OCI_MANIFEST}")),
    }
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("the manifest is not an OCI image manifest: {e}"))?;
    if manifest.schema_version != 2 {
        return Err(format!("manifest schemaVersion {} is not 2", manifest.schema_version));
    }
    if manifest.config.media_type != WASM_CONFIG {
        return Err(format!("config media type {} is not {WASM_CONFIG}: not a wasm component artifact", manifest.config.media_type));
    }
    let [layer] = manifest.layers.as_slice() else {
        return Err(format!("{} layers: a wasm component artifact has exactly one", manifest.layers.len()));
    };
    if layer.media_type != WASM_LAYER {
        return Err(format!("layer media type {} is not {WASM_LAYER}", layer.media_type));
    }
    crate::config::oci_reference::parse_digest(&layer.digest).map_err(|e| format!("the layer's {e}"))?;
    if layer.size > MAX_COMPONENT_BYTES as u64 {
        return Err(format!("the layer is {} bytes, more than the {MAX_COMPONENT_BYTES} bytes any source may deliver", layer.size));
    }
    Ok(layer.clone())
}

/// The config blob `stock-host push` writes (the layout's `architecture`, `os` and `layerDigests`).
pub fn config_blob(layer_digest: &str, created: &str) -> Vec<u8> {
    let config = serde_json::json!({
        "created": created,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
    });
    config.to_string().into_bytes()
}

/// The manifest `stock-host push` writes for a config and a component layer.
pub fn manifest_for(config: Descriptor, layer: Descriptor) -> Vec<u8> {
    let manifest = Manifest { schema_version: 2, media_type: Some(OCI_MANIFEST.to_owned()), config, layers: vec![layer] };
    serde_json::to_vec(&manifest).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(media_type: &str, digest_hex: char, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: format!("sha256:{}", digest_hex.to_string().repeat(64)),
            size,
            annotations: Default::default(),
        }
    }

    fn manifest(config: &str, layers: &[Descriptor]) -> Vec<u8> {
        let mut m = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(config, 'c', 10),
            "layers": layers,
        });
        m["config"]["mediaType"] = config.into();
        m.to_string().into_bytes()
    }

    #[test]
    fn what_push_writes_is_what_pull_accepts() {
        let layer = descriptor(WASM_LAYER, 'a', 1234);
        let bytes = manifest_for(descriptor(WASM_CONFIG, 'c', 10), layer.clone());
        assert_eq!(component_layer(&bytes, None), Ok(layer));
        let config: serde_json::Value = serde_json::from_slice(&config_blob("sha256:aa", "2026-11-29T00:00:00Z")).expect("json");
        assert_eq!((config["architecture"].as_str(), config["layerDigests"][0].as_str()), (Some("wasm"), Some("sha256:aa")));
    }

    #[test]
    fn anything_but_the_layout_is_refused_with_the_reason() {
        let wasm = descriptor(WASM_LAYER, 'a', 10);
        let cases: [(Vec<u8>, &str); 7] = [
            (manifest("application/vnd.oci.image.config.v1+json", std::slice::from_ref(&wasm)), "not a wasm component artifact"),
            (manifest(WASM_CONFIG, &[descriptor("application/vnd.oci.image.layer.v1.tar+gzip", 'a', 10)]), "layer media type"),
            (manifest(WASM_CONFIG, &[wasm.clone(), wasm.clone()]), "exactly one"),
            (manifest(WASM_CONFIG, &[]), "exactly one"),
            (manifest(WASM_CONFIG, &[descriptor(WASM_LAYER, 'a', MAX_COMPONENT_BYTES as u64 + 1)]), "more than"),
            (br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.to_vec(), "image index"),
            (b"not json".to_vec(), "not JSON"),
        ];
        for (bytes, says) in cases {
            let error = component_layer(&bytes, None).expect_err(says);
            assert!(error.contains(says), "{says}: {error}");
        }
    }

    #[test]
    fn the_content_type_counts_when_the_manifest_names_no_type() {
        let bytes = br#"{"schemaVersion":2,"manifests":[]}"#;
        let error = component_layer(bytes, Some("application/vnd.docker.distribution.manifest.list.v2+json")).expect_err("a list");
        assert!(error.contains("image index"), "{error}");
    }
}
