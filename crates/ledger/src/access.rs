//! API keys: issued once, stored hashed, scoped to reading or writing and optionally to twins
//! whose id starts with a prefix.

use rand::RngCore;
use twinledger_core::{Hash, TwinId};
use twinledger_store::ApiKey;

use crate::Ledger;

/// What a key may do; writing includes reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read records, proofs and verdicts.
    Read,
    /// Also record states.
    Write,
}

impl Scope {
    /// The scope's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }
}

/// A key as handed to its holder, once: `tl_<id>_<secret>`.
pub struct IssuedKey {
    /// The whole token; shown once, never stored.
    pub token: String,
    /// What is stored.
    pub key: ApiKey,
}

/// A new key with a random id and secret.
pub fn issue_key(
    scope: Scope,
    twin_prefix: Option<String>,
    label: String,
    now_ms: i64,
) -> IssuedKey {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut id);
    rand::thread_rng().fill_bytes(&mut secret);
    let (id, secret) = (hex::encode(id), hex::encode(secret));
    IssuedKey {
        token: format!("tl_{id}_{secret}"),
        key: ApiKey {
            id,
            secret_hash: Hash::digest(secret.as_bytes()),
            scope: scope.as_str().into(),
            twin_prefix,
            label,
            created_at_ms: now_ms,
            revoked_at_ms: None,
        },
    }
}

/// Who is calling, once their key checked out.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's public id (logged; the secret never is).
    pub key_id: String,
    /// What it may do.
    pub scope: Scope,
    /// The twins it is limited to.
    pub twin_prefix: Option<String>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// No usable credentials (HTTP 401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the right (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
}

impl Caller {
    /// Whether this caller may act with `need` on `twin` (`None`: on the whole ledger).
    pub fn allows(&self, need: Scope, twin: Option<&TwinId>) -> Result<(), AccessError> {
        if self.scope < need {
            return Err(AccessError::Forbidden(format!(
                "key {} may only {}",
                self.key_id,
                self.scope.as_str()
            )));
        }
        match (&self.twin_prefix, twin) {
            (None, _) => Ok(()),
            (Some(p), Some(t)) if t.as_str().starts_with(p.as_str()) => Ok(()),
            (Some(p), _) => Err(AccessError::Forbidden(format!(
                "key {} is limited to twins whose id starts with {p:?}",
                self.key_id
            ))),
        }
    }
}

impl Ledger {
    /// Checks a bearer token against the stored keys.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, AccessError> {
        let bad = || AccessError::Unauthenticated("invalid API key".into());
        let rest = token.strip_prefix("tl_").ok_or_else(bad)?;
        let (id, secret) = rest.split_once('_').ok_or_else(bad)?;
        let id_owned = id.to_owned();
        let key = self
            .store()
            .api_key(&id_owned)
            .await
            .map_err(|e| AccessError::Unauthenticated(format!("cannot check the key: {e}")))?
            .ok_or_else(bad)?;
        if key.revoked_at_ms.is_some() {
            return Err(AccessError::Unauthenticated(format!(
                "API key {id} was revoked"
            )));
        }
        if Hash::digest(secret.as_bytes()) != key.secret_hash {
            return Err(bad());
        }
        let scope = Scope::parse(&key.scope).ok_or_else(bad)?;
        Ok(Caller {
            key_id: key.id,
            scope,
            twin_prefix: key.twin_prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scope: Scope, prefix: Option<&str>) -> Caller {
        Caller {
            key_id: "k".into(),
            scope,
            twin_prefix: prefix.map(Into::into),
        }
    }

    #[test]
    fn scopes_and_prefixes_limit_what_a_key_may_do() {
        let t = TwinId::new("plant-a-1").expect("id");
        assert!(
            caller(Scope::Write, None)
                .allows(Scope::Read, Some(&t))
                .is_ok()
        );
        assert!(
            caller(Scope::Read, None)
                .allows(Scope::Write, Some(&t))
                .is_err()
        );
        assert!(
            caller(Scope::Write, Some("plant-a"))
                .allows(Scope::Write, Some(&t))
                .is_ok()
        );
        assert!(
            caller(Scope::Write, Some("plant-b"))
                .allows(Scope::Write, Some(&t))
                .is_err()
        );
        assert!(
            caller(Scope::Read, Some("plant-a"))
                .allows(Scope::Read, None)
                .is_err()
        );
    }

    #[test]
    fn issued_tokens_carry_the_id_and_store_only_a_hash() {
        let k = issue_key(Scope::Read, None, "ci".into(), 1);
        assert!(k.token.starts_with(&format!("tl_{}_", k.key.id)));
        let secret = k.token.rsplit('_').next().expect("secret");
        assert_eq!(k.key.secret_hash, Hash::digest(secret.as_bytes()));
        assert!(!format!("{:?}", k.key).contains(secret));
    }
}
