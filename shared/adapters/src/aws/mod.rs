//! AWS adapters: the table port on DynamoDB, blobs on S3, the queue on SQS, mail through
//! SES, and reading secrets from Secrets Manager.

pub mod dynamodb;
pub mod s3;
pub mod secrets;
pub mod ses;
pub mod sqs;

pub use aws_config::SdkConfig;
pub use dynamodb::DynamoTable;
pub use s3::{S3Blobs, s3_client};
pub use secrets::SecretsManagerVault;
pub use ses::SesMailer;
pub use sqs::SqsQueue;

/// The SDK configuration from the environment (region, credentials, and endpoint
/// overrides such as `AWS_ENDPOINT_URL_DYNAMODB`, which the SDK honours itself).
pub async fn aws_config_from_env() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}
