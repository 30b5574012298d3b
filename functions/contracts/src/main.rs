//! The contracts function on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    api::telemetry::init(true);
    let env = api::lambda::Environment::load().await?;
    let defaults = contracts::portfolio_defaults_from_env()?;
    let blobs = contracts::aws_env::blobs_from_env(&env.aws)?;
    let queue = contracts::aws_env::queue_from_env(&env.aws)?;
    let state = contracts::ContractsState::with_portfolio_defaults(
        env.table, env.auth, env.clock, defaults,
    )
    .with_import_jobs(blobs, queue)
    .with_import_transactions_in_flight(contracts::aws_env::IMPORT_TRANSACTIONS_IN_FLIGHT);
    api::lambda::run(api::service(contracts::router(state))).await
}
