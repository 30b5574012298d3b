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
    // Organizations' SSO client secrets live in Secrets Manager under
    // `SSO_SECRET_PREFIX` (the stack's name and a slash), which the policy fences.
    let secret_prefix =
        std::env::var("SSO_SECRET_PREFIX").map_err(|_| "SSO_SECRET_PREFIX is not set")?;
    let oidc = adapters::oidc::OidcRelyingParty::new(
        adapters::oidc::OidcSettings::default(),
        env.clock.clone(),
    )?;
    let sso = auth::SsoPorts {
        vault: std::sync::Arc::new(adapters::aws::SecretsManagerVault::new(
            aws_sdk_secretsmanager::Client::new(&env.aws),
        )),
        oidc: std::sync::Arc::new(oidc),
        secret_prefix,
    };
    let state = auth::AuthState::new(
        env.table,
        env.auth,
        env.clock,
        std::sync::Arc::new(mailer),
        &app_url,
        sso,
    );
    api::lambda::run(api::service(auth::router(state))).await
}
