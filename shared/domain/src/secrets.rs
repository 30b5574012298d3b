//! The secret vault port: where values that must never be stored beside ordinary data
//! are kept, such as an organization's single sign-on client secret. Items in the table
//! name a secret; only the code that needs its value reads it.
//!
//! Adapters: AWS Secrets Manager (`adapters::aws::SecretsManagerVault`) and a folder of
//! owner-only files for the local stack (`adapters::embedded::FolderSecrets`). Neither
//! ever puts a value into an error or a log line.

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretVaultError {
    /// Names are 1 to 512 characters of `A-Z a-z 0-9 / _ + = . @ -` (what Secrets
    /// Manager accepts).
    #[error("{0:?} is not a valid secret name")]
    InvalidName(String),
    #[error("the secret store is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait SecretVault: Send + Sync {
    /// Stores `value` under `name`, replacing what was there.
    async fn put(&self, name: &str, value: &str) -> Result<(), SecretVaultError>;
    /// The value under `name`, if there is one.
    async fn get(&self, name: &str) -> Result<Option<String>, SecretVaultError>;
    /// Removes the value under `name`; removing a missing one is not an error.
    async fn delete(&self, name: &str) -> Result<(), SecretVaultError>;
}

/// Refuses names the vaults cannot hold, before any of them is asked.
pub fn check_name(name: &str) -> Result<(), SecretVaultError> {
    let valid = (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(SecretVaultError::InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_what_secrets_manager_accepts() {
        for good in ["leasedesk/sso/4f1c", "a", "x+y=z.w@v-u_t"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "a b", "../x\0", "ä", &"x".repeat(513)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
