//! cosign signatures as cosign stores them in a registry without the referrers API: the tag
//! `sha256-<hex>.sig` in the same repository holds a manifest whose layers are simple-signing payloads
//! (`application/vnd.dev.cosign.simplesigning.v1+json`) naming the signed manifest digest, each with
//! its signature (base64, ASN.1 DER ECDSA over the payload's bytes) in the
//! `dev.cosignproject.cosign/signature` annotation. Pure: the key, the tag name, and the check of one
//! payload and signature; fetching is the registry source's job.

use base64::Engine as _;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};

/// The layer media type of a simple-signing payload.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation that holds a payload's signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload's `critical.type`.
const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, a 65-byte bit string):
/// what `cosign generate-key-pair` writes.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
    0x07, 0x03, 0x42, 0x00,
];

/// A cosign public key (ECDSA P-256, cosign's default).
#[derive(Clone)]
pub struct VerifyKey {
    point: Vec<u8>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyKey(P-256)")
    }
}

impl VerifyKey {
    /// Reads a `-----BEGIN PUBLIC KEY-----` PEM block holding a P-256 key.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        if body.is_empty() {
            return Err("no -----BEGIN PUBLIC KEY----- block (cosign.pub from `cosign generate-key-pair`)".into());
        }
        let der = base64::engine::general_purpose::STANDARD.decode(body).map_err(|e| format!("the PEM block is not base64: {e}"))?;
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 4 => Ok(Self { point: point.to_vec() }),
            _ => Err("the key is not an ECDSA P-256 public key (cosign's default; other key types are not supported)".into()),
        }
    }

    /// Whether `signature_b64` is this key's signature over `payload`, and the payload signs `manifest_digest`.
    pub fn verify(&self, payload: &[u8], signature_b64: &str, manifest_digest: &str) -> Result<(), String> {
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature_b64.trim())
            .map_err(|e| format!("the signature annotation is not base64: {e}"))?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(payload, &signature)
            .map_err(|_| "the signature does not verify with COMPONENT_VERIFY_KEY".to_owned())?;
        let signed = signed_digest(payload)?;
        if signed != manifest_digest {
            return Err(format!("the signature is valid but signs {signed}, not {manifest_digest}"));
        }
        Ok(())
    }
}

/// The tag cosign stores the signatures of `manifest_digest` under.
pub fn signature_tag(manifest_digest: &str) -> String {
    manifest_digest.replacen(':', "-", 1) + ".sig"
}

/// The manifest digest a simple-signing payload names.
fn signed_digest(payload: &[u8]) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| format!("the signed payload is not JSON: {e}"))?;
    let critical = &value["critical"];
    if critical["type"].as_str() != Some(PAYLOAD_TYPE) {
        return Err(format!("the signed payload's critical.type is not {PAYLOAD_TYPE:?}"));
    }
    critical["image"]["docker-manifest-digest"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "the signed payload names no critical.image.docker-manifest-digest".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    // The signer side here is only for unit tests of the parsing; the integration test signs with
    // Python's `cryptography`, an implementation independent of this verifier.
    fn key_pair() -> (EcdsaKeyPair, String) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).expect("pair");
        let spki = [&P256_SPKI_PREFIX[..], pair.public_key().as_ref()].concat();
        let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
        (pair, format!("-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n", &b64[..64], &b64[64..]))
    }

    fn payload(digest: &str) -> Vec<u8> {
        serde_json::json!({"critical": {"identity": {"docker-reference": "r/s"}, "image": {"docker-manifest-digest": digest}, "type": PAYLOAD_TYPE}, "optional": null})
            .to_string()
            .into_bytes()
    }

    fn sign(pair: &EcdsaKeyPair, payload: &[u8]) -> String {
        let signature = pair.sign(&SystemRandom::new(), payload).expect("sign");
        base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
    }

    #[test]
    fn a_signature_over_the_digest_by_the_key_is_the_only_one_accepted() {
        let (pair, pem) = key_pair();
        let key = VerifyKey::from_pem(&pem).expect("key");
        let good = payload("sha256:aa");
        assert_eq!(key.verify(&good, &sign(&pair, &good), "sha256:aa"), Ok(()));

        let other = payload("sha256:bb");
        let error = key.verify(&other, &sign(&pair, &other), "sha256:aa").expect_err("another digest");
        assert!(error.contains("signs sha256:bb"), "{error}");

        let (stranger, _) = key_pair();
        let error = key.verify(&good, &sign(&stranger, &good), "sha256:aa").expect_err("another key");
        assert!(error.contains("does not verify"), "{error}");

        let mut tampered = good.clone();
        tampered.push(b' ');
        assert!(key.verify(&tampered, &sign(&pair, &good), "sha256:aa").is_err());
        assert!(key.verify(&good, "%%%", "sha256:aa").expect_err("not base64").contains("base64"));
    }

    #[test]
    fn only_p256_public_keys_are_read() {
        assert!(VerifyKey::from_pem("nothing").expect_err("no block").contains("BEGIN PUBLIC KEY"));
        let ed25519 =
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        assert!(VerifyKey::from_pem(ed25519).expect_err("ed25519").contains("P-256"));
    }

    #[test]
    fn signatures_live_under_the_digest_tag() {
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
    }
}
