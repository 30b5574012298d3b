//! The scheduled rates poll on AWS Lambda (EventBridge Scheduler, weekdays after the
//! morning and afternoon publications, Europe/Stockholm).

use domain::clock::{Clock, SystemClock};
use domain::rates::RateService;
use lambda_runtime::{LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    api::telemetry::init(true);
    let table = rates::lambda::table_from_env().await?;
    let feeds = rates::lambda::feeds_from_env().await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let service = Arc::new(RateService::new(table, clock.clone(), feeds));
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let (service, clock) = (service.clone(), clock.clone());
        async move {
            let report = rates::poll(&service, None)
                .await
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
            // Embedded-metric lines go to stdout as they are, for CloudWatch to read.
            for line in rates::staleness_metrics(&report, clock.now()) {
                println!("{line}");
            }
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(rates::PollView::from(report))?)
        }
    }))
    .await
}
