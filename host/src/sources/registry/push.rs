//! `stock-host push FILE oci://REGISTRY/REPO:TAG`: publishes a component in the wasm OCI layout (config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer) and prints the manifest digest,
//! the name to sign, pin and move tags to. The same bytes always give the same digest: the config's
//! `created` is SOURCE_DATE_EPOCH (or the Unix epoch), not the time of the push.

use bytes::Bytes;

use super::artifact::{self, Descriptor, OCI_MANIFEST, WASM_CONFIG, WASM_LAYER};
use super::client::RegistryClient;
use crate::builds::MAX_COMPONENT_BYTES;
use crate::config::PushConfig;
use crate::runtime::identity::oci_digest;

/// Pushes the component `config` names and returns the manifest digest the registry stored.
pub async fn push(config: &PushConfig) -> anyhow::Result<String> {
    let reference = &config.reference;
    let Some(tag) = reference.tag.as_deref().filter(|_| !reference.is_pinned()) else {
        anyhow::bail!("{reference}: push needs a tag (oci://REGISTRY/REPO:TAG), not a digest");
    };
    let component = std::fs::read(&config.file).map_err(|e| anyhow::anyhow!("{} cannot be read: {e}", config.file.display()))?;
    if !component.starts_with(b"\0asm") {
        anyhow::bail!("{} is not a WebAssembly binary (no \\0asm header)", config.file.display());
    }
    if component.len() > MAX_COMPONENT_BYTES {
        anyhow::bail!("{} is {} bytes, more than the {MAX_COMPONENT_BYTES} bytes the host accepts", config.file.display(), component.len());
    }
    let client = RegistryClient::new(&reference.registry, config.is_insecure(&reference.registry), config.registry_auth_file.clone());
    let layer = Descriptor {
        media_type: WASM_LAYER.to_owned(),
        digest: oci_digest(&component),
        size: component.len() as u64,
        annotations: Default::default(),
    };
    let config_blob = artifact::config_blob(&layer.digest, &created());
    let config_descriptor = Descriptor {
        media_type: WASM_CONFIG.to_owned(),
        digest: oci_digest(&config_blob),
        size: config_blob.len() as u64,
        annotations: Default::default(),
    };
    let repository = &reference.repository;
    client.push_blob(repository, &layer.digest, Bytes::from(component)).await?;
    client.push_blob(repository, &config_descriptor.digest, Bytes::from(config_blob)).await?;
    let manifest = artifact::manifest_for(config_descriptor, layer);
    Ok(client.push_manifest(repository, tag, Bytes::from(manifest), OCI_MANIFEST).await?)
}

/// RFC 3339 time of SOURCE_DATE_EPOCH (reproducible builds' convention), else of the Unix epoch.
fn created() -> String {
    let seconds = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(0);
    rfc3339(seconds)
}

/// `seconds` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
fn rfc3339(seconds: i64) -> String {
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", second_of_day / 3600, second_of_day % 3600 / 60, second_of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_996_799), "2026-11-29T23:59:59Z");
    }
}
