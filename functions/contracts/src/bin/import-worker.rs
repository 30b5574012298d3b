//! The import worker on AWS Lambda: SQS batches of import jobs, partial failures
//! reported (`ReportBatchItemFailures`).

use domain::clock::SystemClock;
use lambda_runtime::{LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    api::telemetry::init(true);
    let config = adapters::aws::aws_config_from_env().await;
    let table = api::lambda::table_from_env(&config)?;
    let blobs = contracts::aws_env::blobs_from_env(&config)?;
    let worker = Arc::new(
        contracts::ImportWorker::new(table, Arc::new(SystemClock), blobs)
            .with_import_transactions_in_flight(contracts::aws_env::IMPORT_TRANSACTIONS_IN_FLIGHT),
    );
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<contracts::SqsEvent>| {
            let worker = worker.clone();
            async move {
                Ok::<_, lambda_runtime::Error>(contracts::handle(event.payload, &worker).await)
            }
        },
    ))
    .await
}
