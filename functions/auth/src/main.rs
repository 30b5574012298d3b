//! The auth function on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    api::telemetry::init(true);
    let env = api::lambda::Environment::load().await?;
    // Invitations and password resets go out through SES from `MAIL_FROM`; their links
    // point at the web app, `APP_URL`.
    let mailer = auth::lambda_env::mailer_from_env(&env.aws)?;
    let app_url = std::env::var("APP_URL").map_err(|_| "APP_URL is not set")?;
    let state = auth::AuthState::new(
        env.table,
        env.auth,
        env.clock,
        std::sync::Arc::new(mailer),
        &app_url,
    );
    api::lambda::run(api::service(auth::router(state))).await
}
