//! Who signs transactions.

use std::fmt;
use std::path::Path;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;

use crate::{ChainError, Result};

/// Who signs transactions: the node's unlocked account (dev chains, as the seed does) or a key
/// held by this process (what a real network needs).
#[derive(Clone)]
pub enum SignerConfig {
    /// `eth_sendTransaction` from an account the node unlocked; the first one unless given.
    Unlocked(Option<Address>),
    /// A local secp256k1 key; transactions are signed here and sent raw.
    Local(PrivateKeySigner),
}

impl fmt::Debug for SignerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unlocked(a) => f.debug_tuple("Unlocked").field(a).finish(),
            // The address only: the key never reaches a log.
            Self::Local(s) => f.debug_tuple("Local").field(&s.address()).finish(),
        }
    }
}

impl SignerConfig {
    /// Reads a hex private key (with or without `0x`, surrounding whitespace ignored) from a file.
    pub fn from_private_key_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ChainError::Signer(format!(
                "cannot read private key file {}: {e}",
                path.display()
            ))
        })?;
        let signer: PrivateKeySigner = text.trim().parse().map_err(|_| {
            ChainError::Signer(format!(
                "private key file {} does not hold a 32-byte hex key",
                path.display()
            ))
        })?;
        Ok(Self::Local(signer))
    }

    /// Decrypts an Ethereum JSON keystore with the password in `password_file` (trailing newline
    /// ignored).
    pub fn from_keystore(keystore: &Path, password_file: &Path) -> Result<Self> {
        let password = std::fs::read_to_string(password_file).map_err(|e| {
            ChainError::Signer(format!(
                "cannot read password file {}: {e}",
                password_file.display()
            ))
        })?;
        let password = password.trim_end_matches(['\n', '\r']);
        let signer = PrivateKeySigner::decrypt_keystore(keystore, password).map_err(|e| {
            ChainError::Signer(format!(
                "cannot decrypt keystore {}: {e}",
                keystore.display()
            ))
        })?;
        Ok(Self::Local(signer))
    }
}
