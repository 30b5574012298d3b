//! Reading a secret (for example the JWT signing key) from Secrets Manager at cold start.
//! Errors name the secret, never its value.

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};

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
