//! The secret vault port's conformance suite: each test is written once against a
//! [`SecretVault`] and run on both adapters, the folder of the local stack and Secrets
//! Manager (the real SDK against `moto_server` on loopback).

mod support;

use adapters::aws::SecretsManagerVault;
use adapters::embedded::FolderSecrets;
use domain::secrets::{SecretVault, SecretVaultError};

async fn round_trip_replace_and_delete(vault: &dyn SecretVault) {
    let name = format!("leasedesk/sso/{}", support::unique_name("tenant"));
    assert_eq!(vault.get(&name).await.unwrap(), None);
    vault.put(&name, "första-hemligheten").await.unwrap();
    assert_eq!(
        vault.get(&name).await.unwrap().as_deref(),
        Some("första-hemligheten")
    );
    vault.put(&name, "second secret").await.unwrap();
    assert_eq!(
        vault.get(&name).await.unwrap().as_deref(),
        Some("second secret")
    );
    vault.delete(&name).await.unwrap();
    assert_eq!(vault.get(&name).await.unwrap(), None);
    // Deleting what is gone is fine, and the name can be used again at once.
    vault.delete(&name).await.unwrap();
    vault.put(&name, "third").await.unwrap();
    assert_eq!(vault.get(&name).await.unwrap().as_deref(), Some("third"));
}

async fn names_are_kept_apart(vault: &dyn SecretVault) {
    let base = support::unique_name("apart");
    let (a, b) = (format!("{base}/a"), format!("{base}-a"));
    vault.put(&a, "value a").await.unwrap();
    vault.put(&b, "value b").await.unwrap();
    assert_eq!(vault.get(&a).await.unwrap().as_deref(), Some("value a"));
    assert_eq!(vault.get(&b).await.unwrap().as_deref(), Some("value b"));
}

async fn bad_names_are_refused_without_echoing_values(vault: &dyn SecretVault) {
    for name in ["", "a b", "../etc/passwd\0"] {
        let error = vault.put(name, "the-value").await.unwrap_err();
        assert!(
            matches!(error, SecretVaultError::InvalidName(_)),
            "{error:?}"
        );
        assert!(!error.to_string().contains("the-value"));
        assert!(vault.get(name).await.is_err());
    }
}

fn folder() -> (tempfile::TempDir, FolderSecrets) {
    let dir = tempfile::tempdir().unwrap();
    let vault = FolderSecrets::open(&dir.path().join("secrets")).unwrap();
    (dir, vault)
}

fn secrets_manager() -> SecretsManagerVault {
    SecretsManagerVault::new(support::secrets_client())
}

#[tokio::test]
async fn folder_round_trip_replace_and_delete() {
    let (_dir, vault) = folder();
    round_trip_replace_and_delete(&vault).await;
}

#[tokio::test]
async fn secrets_manager_round_trip_replace_and_delete() {
    round_trip_replace_and_delete(&secrets_manager()).await;
}

#[tokio::test]
async fn folder_names_are_kept_apart() {
    let (_dir, vault) = folder();
    names_are_kept_apart(&vault).await;
}

#[tokio::test]
async fn secrets_manager_names_are_kept_apart() {
    names_are_kept_apart(&secrets_manager()).await;
}

#[tokio::test]
async fn folder_refuses_bad_names() {
    let (_dir, vault) = folder();
    bad_names_are_refused_without_echoing_values(&vault).await;
}

#[tokio::test]
async fn secrets_manager_refuses_bad_names() {
    bad_names_are_refused_without_echoing_values(&secrets_manager()).await;
}

#[cfg(unix)]
#[tokio::test]
async fn folder_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, vault) = folder();
    vault.put("leasedesk/sso/x", "value").await.unwrap();
    let folder = dir.path().join("secrets");
    assert_eq!(
        std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for entry in std::fs::read_dir(&folder).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
