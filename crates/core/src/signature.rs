//! Device signatures: Ed25519 (RFC 8032) over the JCS encoding (RFC 8785) of the state a
//! device reports. The device signs before the ledger assigns an index or version, so the
//! signature covers exactly the state; the ledger keeps it in the record's annex, where the
//! leaf hash covers it too.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::jcs::jcs_json;
use crate::json::{Object, Value};

/// The `algorithm` of every device signature.
pub const ALGORITHM: &str = "ed25519";

/// Why a key or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not 64 hex digits of a valid Ed25519 public key.
    #[error("a device public key is 64 hex digits of an Ed25519 key")]
    BadKey,
    /// Not 128 hex digits.
    #[error("a signature is 128 hex digits (64 bytes of Ed25519)")]
    BadEncoding,
    /// The state cannot be encoded canonically.
    #[error("the state cannot be signed: {0}")]
    Canonical(String),
    /// The signature is not the key's over the state.
    #[error("the signature does not match the state and the twin's key")]
    Mismatch,
    /// The annex's signature member is not `{"algorithm", "public_key", "value"}`.
    #[error("malformed signature: {0}")]
    Malformed(String),
}

/// A device's public key, registered per twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceKey(VerifyingKey);

impl DeviceKey {
    /// Reads 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, SignatureError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| SignatureError::BadKey)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| SignatureError::BadKey)
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// Checks `signature` (128 hex digits) over `state` (strict: no malleable signatures).
    pub fn verify(
        &self,
        state: &Value,
        signature: &str,
    ) -> Result<DeviceSignature, SignatureError> {
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(signature, &mut bytes).map_err(|_| SignatureError::BadEncoding)?;
        let message = jcs_json(state).map_err(|e| SignatureError::Canonical(e.to_string()))?;
        self.0
            .verify_strict(message.as_bytes(), &Signature::from_bytes(&bytes))
            .map_err(|_| SignatureError::Mismatch)?;
        Ok(DeviceSignature {
            key: *self,
            value: bytes,
        })
    }
}

/// A checked signature of a state by a device key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSignature {
    /// The key that signed.
    pub key: DeviceKey,
    /// The 64 signature bytes.
    pub value: [u8; 64],
}

impl DeviceSignature {
    /// The `signature` member of a record's annex.
    pub fn to_annex_member(&self) -> Value {
        let mut o = Object::new();
        o.insert("algorithm", Value::String(ALGORITHM.into()));
        o.insert("public_key", Value::String(self.key.to_hex()));
        o.insert("value", Value::String(hex::encode(self.value)));
        Value::Object(o)
    }

    /// Reads the `signature` member of an annex and checks it over `state`.
    pub fn check_annex_member(member: &Value, state: &Value) -> Result<Self, SignatureError> {
        let malformed = |m: &str| SignatureError::Malformed(m.to_owned());
        let o = member
            .as_object()
            .ok_or_else(|| malformed("not an object"))?;
        if o.len() != 3 {
            return Err(malformed("expected algorithm, public_key and value"));
        }
        let text = |k: &str| {
            o.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(&format!("{k} must be a string")))
        };
        if text("algorithm")? != ALGORITHM {
            return Err(malformed("the algorithm must be ed25519"));
        }
        DeviceKey::from_hex(text("public_key")?)?.verify(state, text("value")?)
    }
}

/// A device's signing key: for the simulator, tests and devices written in Rust.
pub struct DeviceSigner(SigningKey);

impl DeviceSigner {
    /// The key whose secret is `seed` (32 bytes).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// Its public key.
    pub fn public_key(&self) -> DeviceKey {
        DeviceKey(self.0.verifying_key())
    }

    /// Signs the JCS encoding of `state`; 128 hex digits.
    pub fn sign(&self, state: &Value) -> Result<String, SignatureError> {
        let message = jcs_json(state).map_err(|e| SignatureError::Canonical(e.to_string()))?;
        Ok(hex::encode(self.0.sign(message.as_bytes()).to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Limits, parse};

    fn json(s: &str) -> Value {
        parse(s.as_bytes(), &Limits::default()).expect("json")
    }

    #[test]
    fn rfc8032_test_vector_1_public_key() {
        // RFC 8032 section 7.1, TEST 1.
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .expect("hex");
        let signer = DeviceSigner::from_seed(&seed.try_into().expect("32 bytes"));
        assert_eq!(
            signer.public_key().to_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn signatures_cover_the_canonical_state_only() {
        let signer = DeviceSigner::from_seed(&[7; 32]);
        let key = signer.public_key();
        let state = json(r#"{"t": 20.5, "mode": "auto"}"#);
        let sig = signer.sign(&state).expect("sign");
        // Member order and spelling do not matter: JCS is signed.
        let same = json(r#"{"mode":"auto","t":2.05e1}"#);
        let checked = key.verify(&same, &sig).expect("valid");
        let member = checked.to_annex_member();
        assert_eq!(
            DeviceSignature::check_annex_member(&member, &state).expect("member"),
            checked
        );
        assert_eq!(
            key.verify(&json(r#"{"t": 20.6, "mode": "auto"}"#), &sig),
            Err(SignatureError::Mismatch)
        );
        let other = DeviceSigner::from_seed(&[8; 32]).public_key();
        assert_eq!(other.verify(&state, &sig), Err(SignatureError::Mismatch));
        assert_eq!(key.verify(&state, "abcd"), Err(SignatureError::BadEncoding));
        assert_eq!(DeviceKey::from_hex("zz"), Err(SignatureError::BadKey));
    }
}
