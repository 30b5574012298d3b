//! The scheduled rates poll on AWS Lambda (EventBridge Scheduler, weekdays after the
//! morning and afternoon publications, Europe/Stockholm).

use domain::clock::{Clock, SystemClock};
use domain::rates::RateService;
use lambda_runtime::{LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    api::telemetry::init(true);
    // No HTTP, so no token settings: only the table and the feeds, from one SDK config.
    let config = adapters::aws::aws_config_from_env().await;
    let table = api::lambda::table_from_env(&config)?;
    let feeds = rates::lambda::feeds_from_env(&config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let service = Arc::new(RateService::new(table, clock.clone(), feeds));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let (service, clock) = (service.clone(), clock.clone());
        async move {
            let (report, metrics) = rates::handle_schedule(&service, &event.payload, clock.now())
                .await
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
            // Embedded-metric lines go to stdout as they are, for CloudWatch to read.
            for line in metrics {
                println!("{line}");
            }
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
