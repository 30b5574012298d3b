//! The nightly roll of every organization's dashboard to the new day, on AWS Lambda
//! (EventBridge Scheduler, just after midnight UTC, the day the figures are kept by).

use domain::clock::SystemClock;
use domain::portfolio::PortfolioService;
use lambda_runtime::{LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    api::telemetry::init(true);
    let config = adapters::aws::aws_config_from_env().await;
    let table = api::lambda::table_from_env(&config)?;
    let defaults = contracts::portfolio_defaults_from_env()?;
    let portfolio = Arc::new(PortfolioService::new(
        table,
        Arc::new(SystemClock),
        defaults,
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let portfolio = portfolio.clone();
        async move {
            contracts::handle_roll(&portfolio, &event.payload)
                .await
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))
        }
    }))
    .await
}
