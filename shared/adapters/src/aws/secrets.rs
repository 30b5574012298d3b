//! Secrets Manager: reading a secret (for example the JWT signing key) at cold start, and
//! the secret vault port (`domain::secrets`) for values the product stores itself, such
//! as an organization's SSO client secret. Errors name the secret, never its value.

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
use domain::secrets::{SecretVault, SecretVaultError, check_name};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {secret_id:?} does not exist")]
    NotFound { secret_id: String },
    #[error("secret {secret_id:?} holds no string value")]
    NotAString { secret_id: String },
    #[error("cannot read secret {secret_id:?}: {reason}")]
    Unavailable { secret_id: String, reason: String },
}

/// The current string value of the secret `secret_id` (a name or an ARN).
pub async fn read_secret_string(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<String, SecretError> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|error| match error.code() {
            Some("ResourceNotFoundException") => SecretError::NotFound {
                secret_id: secret_id.to_owned(),
            },
            _ => SecretError::Unavailable {
                secret_id: secret_id.to_owned(),
                reason: DisplayErrorContext(&error).to_string(),
            },
        })?;
    output.secret_string.ok_or_else(|| SecretError::NotAString {
        secret_id: secret_id.to_owned(),
    })
}

/// The secret vault over Secrets Manager. Each value is its own secret, named as given
/// (the caller puts its stack's prefix in front); the function's policy allows only
/// names under that prefix.
pub struct SecretsManagerVault {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerVault {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }
}

fn vault_error<E>(error: aws_sdk_secretsmanager::error::SdkError<E>) -> SecretVaultError
where
    E: std::error::Error + Send + Sync + 'static,
{
    SecretVaultError::Unavailable(DisplayErrorContext(&error).to_string())
}

#[async_trait::async_trait]
impl SecretVault for SecretsManagerVault {
    async fn put(&self, name: &str, value: &str) -> Result<(), SecretVaultError> {
        check_name(name)?;
        let created = self
            .client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await;
        let error = match created {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        match error.code() {
            // It exists: a new version replaces the value.
            Some("ResourceExistsException") => {}
            // It is scheduled for deletion (removed outside of us, with a recovery
            // window): bring it back, then replace the value.
            Some("InvalidRequestException") => {
                self.client
                    .restore_secret()
                    .secret_id(name)
                    .send()
                    .await
                    .map_err(vault_error)?;
            }
            _ => return Err(vault_error(error)),
        }
        self.client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .map_err(vault_error)?;
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<String>, SecretVaultError> {
        check_name(name)?;
        match read_secret_string(&self.client, name).await {
            Ok(value) => Ok(Some(value)),
            Err(SecretError::NotFound { .. }) => Ok(None),
            Err(error) => Err(SecretVaultError::Unavailable(error.to_string())),
        }
    }

    async fn delete(&self, name: &str) -> Result<(), SecretVaultError> {
        check_name(name)?;
        // Without a recovery window: the configuration that named it is gone, and a
        // new configuration may want the same name at once.
        match self
            .client
            .delete_secret()
            .secret_id(name)
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(error) => Err(vault_error(error)),
        }
    }
}
