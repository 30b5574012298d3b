//! The API description function on AWS Lambda.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    api::telemetry::init(true);
    api::lambda::run(api::service(apidoc::router())).await
}
