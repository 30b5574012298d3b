//! Cold-start wiring of the rates functions on AWS Lambda.

use domain::rates::feed::RateFeed;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("secret {name} could not be read: {reason}")]
    Secret { name: &'static str, reason: String },
    #[error(transparent)]
    Feeds(#[from] adapters::feeds::FeedSetupError),
}

/// The public rate sources, with the optional API keys read once from the secrets
/// named by `FIXER_API_KEY_SECRET_ARN` and `RIKSBANK_SUBSCRIPTION_KEY_SECRET_ARN`.
pub async fn feeds_from_env(
    config: &adapters::aws::SdkConfig,
) -> Result<Vec<Arc<dyn RateFeed>>, SetupError> {
    let secrets = aws_sdk_secretsmanager::Client::new(config);
    let fixer_api_key = optional_secret(&secrets, "FIXER_API_KEY_SECRET_ARN").await?;
    let riksbank_subscription_key =
        optional_secret(&secrets, "RIKSBANK_SUBSCRIPTION_KEY_SECRET_ARN").await?;
    let settings = adapters::feeds::FeedSettings {
        fixer_api_key,
        riksbank_subscription_key,
        ..Default::default()
    };
    Ok(adapters::feeds::build_feeds(&settings)?)
}

async fn optional_secret(
    client: &aws_sdk_secretsmanager::Client,
    variable: &'static str,
) -> Result<Option<String>, SetupError> {
    let Some(arn) = std::env::var(variable)
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    adapters::aws::secrets::read_secret_string(client, &arn)
        .await
        .map(Some)
        .map_err(|e| SetupError::Secret {
            name: variable,
            reason: e.to_string(),
        })
}
