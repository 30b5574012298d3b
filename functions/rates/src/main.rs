//! The rates API on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    api::telemetry::init(true);
    let env = api::lambda::Environment::load().await?;
    let feeds = rates::lambda::feeds_from_env(&env.aws).await?;
    let service = std::sync::Arc::new(domain::rates::RateService::new(env.table, env.clock, feeds));
    let state = rates::RatesState::new(service, env.auth);
    api::lambda::run(api::service(rates::router(state))).await
}
