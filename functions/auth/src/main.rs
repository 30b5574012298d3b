//! The auth function on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    api::telemetry::init(true);
    let env = api::lambda::Environment::load().await?;
    // Invitations and password resets go out through SES from `MAIL_FROM`; their links
    // point at the web app, `APP_URL`.
    let from = std::env::var("MAIL_FROM").map_err(|_| "MAIL_FROM is not set")?;
    let from = domain::accounts::Email::parse(&from).map_err(|_| "MAIL_FROM is not an address")?;
    let sender = domain::mail::Sender::new(from, Some("Leasedesk"))?;
    let mut mailer = adapters::aws::SesMailer::from_config(&env.aws, sender);
    if let Ok(set) = std::env::var("SES_CONFIGURATION_SET") {
        mailer = mailer.with_configuration_set(set);
    }
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
