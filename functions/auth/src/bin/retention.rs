//! The daily retention job on AWS Lambda (EventBridge Scheduler): organizations inactive
//! for `RETENTION_INACTIVE_DAYS` are warned, then removed (`domain::retention`).

use domain::clock::SystemClock;
use domain::retention::RetentionService;
use lambda_runtime::{LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    api::telemetry::init(true);
    // No HTTP, so no token settings: the table, the bucket, the vault and the mail service.
    let config = adapters::aws::aws_config_from_env().await;
    let table = api::lambda::table_from_env(&config)?;
    let blobs = auth::lambda_env::blobs_from_env(&config)?;
    let mailer = auth::lambda_env::mailer_from_env(&config)?;
    let policy = auth::retention::policy_from_env()?;
    // Organizations' single sign-on client secrets go with them.
    let vault =
        adapters::aws::SecretsManagerVault::new(aws_sdk_secretsmanager::Client::new(&config));
    let retention = Arc::new(RetentionService::new(
        table,
        Arc::new(SystemClock),
        Arc::new(blobs),
        Arc::new(vault),
        Arc::new(mailer),
        Arc::new(api::mail::RetentionWarnings),
        policy,
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let retention = retention.clone();
        async move {
            let report = auth::retention::handle_schedule(&retention, &event.payload)
                .await
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
