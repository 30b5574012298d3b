//! The auth function on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    api::telemetry::init(true);
    let env = api::lambda::Environment::load().await?;
    // Invitations and password resets go out through SES from `MAIL_FROM`; their links
    // point at the web app, `APP_URL`.
    let mailer = auth::lambda_env::mailer_from_env(&env.aws)?;
    let app_url = std::env::var("APP_URL").map_err(|_| "APP_URL is not set")?;
    // Organizations' SSO client secrets live in Secrets Manager under
    // `SSO_SECRET_PREFIX` (the stack's name and a slash), which the policy fences.
    let secret_prefix =
        std::env::var("SSO_SECRET_PREFIX").map_err(|_| "SSO_SECRET_PREFIX is not set")?;
    let oidc = adapters::oidc::OidcRelyingParty::new(
        adapters::oidc::OidcSettings::default(),
        env.clock.clone(),
    )?;
    // Organizations prove their single sign-on domains by TXT records, looked up through
    // the name servers of the Lambda environment (/etc/resolv.conf).
    let dns = adapters::dns::HickoryDns::from_system_conf(adapters::dns::DnsSettings::default())?;
    let sso = auth::SsoPorts {
        vault: std::sync::Arc::new(adapters::aws::SecretsManagerVault::new(
            aws_sdk_secretsmanager::Client::new(&env.aws),
        )),
        oidc: std::sync::Arc::new(oidc),
        secret_prefix,
        dns: std::sync::Arc::new(dns),
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
