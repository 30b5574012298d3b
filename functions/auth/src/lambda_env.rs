//! The auth functions' outside connections in Lambda, from the environment: mail
//! through SES from `MAIL_FROM` (with `SES_CONFIGURATION_SET` when set) and, for the
//! retention job, the bucket of the organizations' files, `UPLOAD_BUCKET`.

use adapters::aws::{S3Blobs, SdkConfig, SesMailer};
use domain::accounts::Email;
use domain::mail::{MailError, Sender};

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("MAIL_FROM is not an e-mail address")]
    NotAnAddress,
    #[error(transparent)]
    Sender(#[from] MailError),
}

fn var(name: &'static str) -> Result<String, EnvError> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .ok_or(EnvError::Missing(name))
}

/// SES, sending as "Leasedesk" from `MAIL_FROM`.
pub fn mailer_from_env(config: &SdkConfig) -> Result<SesMailer, EnvError> {
    let from = Email::parse(&var("MAIL_FROM")?).map_err(|_| EnvError::NotAnAddress)?;
    let sender = Sender::new(from, Some("Leasedesk"))?;
    let mut mailer = SesMailer::from_config(config, sender);
    if let Ok(set) = var("SES_CONFIGURATION_SET") {
        mailer = mailer.with_configuration_set(set);
    }
    Ok(mailer)
}

/// The bucket named by `UPLOAD_BUCKET`.
pub fn blobs_from_env(config: &SdkConfig) -> Result<S3Blobs, EnvError> {
    Ok(S3Blobs::from_config(config, var("UPLOAD_BUCKET")?, false))
}
