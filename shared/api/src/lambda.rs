//! Running a function's router on AWS Lambda behind an API Gateway HTTP API.

use crate::caller::ClientIp;
use axum::Router;
use axum::extract::Request;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

/// Serves `routes` (already wrapped by [`crate::service`]) as a Lambda function. API
/// Gateway's request id and the client's address go on each request first, where the
/// local runner would put its own.
pub async fn run(routes: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(app(routes)).await
}

/// `routes` as Lambda serves them: with API Gateway's request id and client address
/// moved onto the request.
pub fn app(routes: Router) -> Router {
    routes.layer(axum::middleware::map_request(from_api_gateway))
}

/// Parses an API Gateway event (JSON) into the request Lambda would hand the router,
/// with `{{name}}` placeholders replaced first. For handler tests and tools.
pub fn request_from_event(
    event: &str,
    placeholders: &[(&str, &str)],
) -> Result<Request, lambda_http::Error> {
    let mut event = event.to_owned();
    for (name, value) in placeholders {
        event = event.replace(&format!("{{{{{name}}}}}"), value);
    }
    let request = lambda_http::request::from_str(&event)?;
    Ok(request.map(axum::body::Body::new))
}

async fn from_api_gateway(mut request: Request) -> Request {
    if let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref().cloned() {
        if let Some(ip) = context.http.source_ip {
            request.extensions_mut().insert(ClientIp(ip));
        }
        if let Some(id) = context.request_id
            && let Ok(value) = id.parse()
        {
            request
                .headers_mut()
                .insert(crate::REQUEST_ID_HEADER, value);
        }
    }
    request
}

/// What every data-serving function builds once per cold start.
pub struct Environment {
    /// The AWS SDK configuration, loaded once, for any further clients the function needs.
    pub aws: adapters::aws::SdkConfig,
    pub table: std::sync::Arc<dyn domain::store::Table>,
    /// Access tokens and sessions: who each request's caller is.
    pub auth: std::sync::Arc<crate::Authenticator>,
    pub clock: std::sync::Arc<dyn domain::clock::Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {0} is not valid: {1}")]
    Invalid(&'static str, String),
    #[error("the JWT signing secret could not be read: {0}")]
    Secret(String),
    #[error(transparent)]
    Token(#[from] crate::tokens::TokenError),
}

fn var(name: &'static str) -> Result<String, EnvironmentError> {
    std::env::var(name).map_err(|_| EnvironmentError::Missing(name))
}

/// The table named by `TABLE_NAME`.
pub fn table_from_env(
    config: &adapters::aws::SdkConfig,
) -> Result<std::sync::Arc<dyn domain::store::Table>, EnvironmentError> {
    Ok(std::sync::Arc::new(adapters::aws::DynamoTable::new(
        aws_sdk_dynamodb::Client::new(config),
        var("TABLE_NAME")?,
    )))
}

impl Environment {
    /// Reads `TABLE_NAME`, `JWT_SECRET_ARN`, `TOKEN_ISSUER`, `TOKEN_AUDIENCE` and
    /// `ACCESS_TOKEN_TTL_SECONDS` (default 900), and fetches the signing secret.
    pub async fn load() -> Result<Self, EnvironmentError> {
        let secret_id = var("JWT_SECRET_ARN")?;
        let ttl_seconds = match std::env::var("ACCESS_TOKEN_TTL_SECONDS") {
            Ok(text) => text
                .parse::<i64>()
                .ok()
                .filter(|s| (60..=3600).contains(s))
                .ok_or_else(|| {
                    EnvironmentError::Invalid("ACCESS_TOKEN_TTL_SECONDS", "60..=3600".into())
                })?,
            Err(_) => 900,
        };
        let settings = crate::TokenSettings {
            issuer: var("TOKEN_ISSUER")?,
            audience: var("TOKEN_AUDIENCE")?,
            access_ttl: chrono::Duration::seconds(ttl_seconds),
        };
        let config = adapters::aws::aws_config_from_env().await;
        let secrets = aws_sdk_secretsmanager::Client::new(&config);
        let secret = adapters::aws::secrets::read_secret_string(&secrets, &secret_id)
            .await
            .map_err(|e| EnvironmentError::Secret(e.to_string()))?;
        let clock: std::sync::Arc<dyn domain::clock::Clock> =
            std::sync::Arc::new(domain::clock::SystemClock);
        let tokens = crate::AccessTokens::new(secret.as_bytes(), settings, clock.clone())?;
        let table = table_from_env(&config)?;
        let sessions = domain::sessions::SessionService::new(table.clone(), clock.clone());
        let modules = domain::modules::ModuleService::new(table.clone(), clock.clone());
        Ok(Self {
            table,
            aws: config,
            auth: std::sync::Arc::new(crate::Authenticator::new(tokens, sessions, modules)),
            clock,
        })
    }
}

/// What handler tests need: tokens signed like production's, and a way to send a
/// sample event through a router and read the answer.
pub mod testing {
    use super::request_from_event;
    use crate::{AccessTokens, Authenticator, TokenSettings};
    use axum::Router;
    use axum::body::to_bytes;
    use axum::http::{HeaderMap, StatusCode};
    use domain::accounts::AccountService;
    use domain::clock::Clock;
    use domain::ids::TenantId;
    use domain::sessions::SessionService;
    use domain::store::Table;
    use std::sync::Arc;
    use tower::ServiceExt;

    /// Access tokens as the deployed functions issue them (issuer, audience, 15 minutes),
    /// with sessions in `table`.
    pub fn authenticator(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Arc<Authenticator> {
        let tokens = AccessTokens::new(
            b"handler-test-secret-handler-test-secret",
            TokenSettings {
                issuer: "https://api.leasedesk.se".into(),
                audience: "leasedesk-api".into(),
                access_ttl: chrono::Duration::minutes(15),
            },
            clock.clone(),
        )
        .unwrap_or_else(|e| panic!("test tokens: {e}"));
        Arc::new(Authenticator::new(
            tokens,
            SessionService::new(table.clone(), clock.clone()),
            domain::modules::ModuleService::new(table, clock),
        ))
    }

    /// Signs up an organization in `table` and signs its owner in: an access token and
    /// the organization.
    pub async fn owner_token(
        auth: &Authenticator,
        table: Arc<dyn Table>,
        clock: Arc<dyn Clock>,
    ) -> (String, TenantId) {
        let accounts = AccountService::new(table, clock);
        let (organization, user) = accounts
            .sign_up(
                serde_json::from_value(serde_json::json!({
                    "organizationName": "Handler Test AB",
                    "organizationNumber": "556074-3089",
                    "name": "Anna Lind",
                    "email": "anna.lind@handlertest.se",
                    "password": "Vinterljus-over-Kiruna-2026",
                }))
                .unwrap_or_else(|e| panic!("sign-up: {e}")),
                Default::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("sign-up: {e}"));
        let session = auth
            .sessions()
            .open(&user, "password", &Default::default())
            .await
            .unwrap_or_else(|e| panic!("session: {e}"));
        let token = auth
            .tokens()
            .issue(user.id, organization.id, user.role, session.session)
            .unwrap_or_else(|e| panic!("token: {e}"))
            .token;
        (token, organization.id)
    }

    /// A new member of `tenant` with `role`, invited by `owner` and joined through the
    /// domain's invitation flow, signed in: their access token.
    pub async fn member_token(
        auth: &Authenticator,
        table: Arc<dyn Table>,
        clock: Arc<dyn Clock>,
        (tenant, owner): (TenantId, domain::ids::UserId),
        role: domain::access::Role,
    ) -> String {
        let members = domain::members::MemberService::new(table, clock);
        let owner = domain::audit::Actor {
            tenant,
            user: owner,
            role: domain::access::Role::Owner,
            request: Default::default(),
        };
        let email = format!("{}@handlertest.se", role.as_str());
        let invited = members
            .invite(&owner, &email, role)
            .await
            .unwrap_or_else(|e| panic!("invitation: {e}"));
        let user = members
            .accept(
                serde_json::from_value(serde_json::json!({
                    "token": invited.token,
                    "name": "Erik Berg",
                    "password": "Vinterljus-over-Kiruna-2026",
                }))
                .unwrap_or_else(|e| panic!("acceptance: {e}")),
                &Default::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("acceptance: {e}"));
        let session = auth
            .sessions()
            .open(&user, "invitation", &Default::default())
            .await
            .unwrap_or_else(|e| panic!("session: {e}"));
        auth.tokens()
            .issue(user.id, tenant, role, session.session)
            .unwrap_or_else(|e| panic!("token: {e}"))
            .token
    }

    /// Sends the event at `events/<path>` (placeholders filled) through `router`, which
    /// should already be wrapped as Lambda serves it ([`super::app`]).
    pub async fn send_event(
        router: &Router,
        path: &str,
        placeholders: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, serde_json::Value) {
        let file = format!("{}/../../events/{path}", env!("CARGO_MANIFEST_DIR"));
        let event = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let request = request_from_event(&event, placeholders)
            .unwrap_or_else(|e| panic!("{path} is not an API Gateway event: {e}"));
        let response = router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, 1 << 20)
            .await
            .unwrap_or_else(|e| panic!("response body: {e}"));
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }
}
