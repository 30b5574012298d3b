//! AWS adapters: the table port on DynamoDB, and reading secrets from Secrets Manager.

pub mod dynamodb;
pub mod secrets;

pub use aws_config::SdkConfig;
pub use dynamodb::DynamoTable;

/// The SDK configuration from the environment (region, credentials, and endpoint
/// overrides such as `AWS_ENDPOINT_URL_DYNAMODB`, which the SDK honours itself).
pub async fn aws_config_from_env() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}
