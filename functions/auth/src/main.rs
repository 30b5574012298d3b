//! The auth function on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    api::telemetry::init(true);
    let env = api::lambda::Environment::load().await?;
    let state = auth::AuthState::new(env.table, env.tokens, env.clock);
    api::lambda::run(api::service(auth::router(state))).await
}
