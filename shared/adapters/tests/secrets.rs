//! `read_secret_string` against Secrets Manager in `moto_server` on loopback.

mod support;

use adapters::aws::secrets::{SecretError, read_secret_string};

#[tokio::test]
async fn reads_a_string_secret() {
    let client = support::secrets_client();
    let name = support::unique("jwt-signing-key");
    client
        .create_secret()
        .name(&name)
        .secret_string("s3cr3t-signing-key")
        .send()
        .await
        .expect("create secret in moto");
    let value = read_secret_string(&client, &name).await.unwrap();
    assert_eq!(value, "s3cr3t-signing-key");
}

#[tokio::test]
async fn a_missing_secret_is_not_found_and_the_error_names_no_value() {
    let client = support::secrets_client();
    let name = support::unique("missing");
    let error = read_secret_string(&client, &name).await.unwrap_err();
    assert!(
        matches!(&error, SecretError::NotFound { secret_id } if *secret_id == name),
        "{error:?}"
    );
    assert!(error.to_string().contains(&name));
}

#[tokio::test]
async fn a_binary_secret_is_not_a_string() {
    let client = support::secrets_client();
    let name = support::unique("binary");
    client
        .create_secret()
        .name(&name)
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![1, 2, 3]))
        .send()
        .await
        .expect("create secret in moto");
    let error = read_secret_string(&client, &name).await.unwrap_err();
    assert!(matches!(error, SecretError::NotAString { .. }), "{error:?}");
}
