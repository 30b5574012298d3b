//! [`domain::mail::Mailer`] on Amazon SES (API v2).
//!
//! Mails go out as raw MIME (`crate::mime`), not as SES "simple" content: the message is
//! then byte for byte what the local outbox keeps, and headers such as
//! `Auto-Submitted` reach the recipient. SES replaces the `Message-ID` with its own and
//! returns that id, which bounce and complaint notifications refer to.
//!
//! The sender must be an identity verified in SES (the address or its domain). An
//! optional configuration set routes SES's sending events (bounces, complaints,
//! deliveries) to where operations watch them.

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use chrono::Utc;
use domain::mail::{Mail, MailError, Mailer, Sender, SentMail};

use crate::mime;

/// [`Mailer`] through SES, from one sender.
#[derive(Clone, Debug)]
pub struct SesMailer {
    client: Client,
    from: Sender,
    configuration_set: Option<String>,
}

impl SesMailer {
    pub fn new(client: Client, from: Sender) -> Self {
        Self {
            client,
            from,
            configuration_set: None,
        }
    }

    /// A mailer with a client from the shared SDK configuration (which honours
    /// `AWS_ENDPOINT_URL_SESV2` for a loopback peer).
    pub fn from_config(config: &aws_config::SdkConfig, from: Sender) -> Self {
        Self::new(Client::new(config), from)
    }

    /// Sends every mail with the SES configuration set `name`.
    pub fn with_configuration_set(mut self, name: impl Into<String>) -> Self {
        self.configuration_set = Some(name.into());
        self
    }

    pub fn sender(&self) -> &Sender {
        &self.from
    }
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: &Mail) -> Result<SentMail, MailError> {
        let message_id = mime::new_message_id(&self.from);
        let raw = mime::render(mail, &self.from, &message_id, Utc::now());
        let content = EmailContent::builder()
            .raw(
                RawMessage::builder()
                    .data(Blob::new(raw))
                    .build()
                    .map_err(|error| MailError::Invalid(error.to_string()))?,
            )
            .build();
        let output = self
            .client
            .send_email()
            // The bare address: SES authorizes the sending identity by it; the display
            // name travels in the message's From header.
            .from_email_address(self.from.address().as_str())
            .destination(
                Destination::builder()
                    .to_addresses(mail.to().as_str())
                    .build(),
            )
            .content(content)
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(mail_error)?;
        let message_id = output.message_id.unwrap_or(message_id);
        tracing::info!(%message_id, "mail sent through SES");
        Ok(SentMail { message_id })
    }
}

fn mail_error(error: SdkError<SendEmailError, HttpResponse>) -> MailError {
    let detail = DisplayErrorContext(&error).to_string();
    match &error {
        // The request could not even be built: our input, not the service.
        SdkError::ConstructionFailure(_) => MailError::Invalid(detail),
        SdkError::ServiceError(service) => {
            classify(service.err(), Some(service.raw().status().as_u16()), detail)
        }
        // Timeouts, connection failures, unreadable answers: try again later.
        _ => MailError::Unavailable(detail),
    }
}

/// Sorts an SES refusal into the port's errors: what retrying cannot fix is `Invalid`
/// (the request) or `Rejected` (the account, sender or recipient); what may pass later
/// is `Unavailable`.
fn classify(error: &SendEmailError, status: Option<u16>, detail: String) -> MailError {
    match error {
        SendEmailError::BadRequestException(_) | SendEmailError::NotFoundException(_) => {
            MailError::Invalid(detail)
        }
        SendEmailError::MessageRejected(_)
        | SendEmailError::MailFromDomainNotVerifiedException(_)
        | SendEmailError::AccountSuspendedException(_)
        | SendEmailError::SendingPausedException(_) => MailError::Rejected(detail),
        // Sending rate or daily quota reached: the next second or day has room again.
        SendEmailError::TooManyRequestsException(_) | SendEmailError::LimitExceededException(_) => {
            MailError::Unavailable(detail)
        }
        other => classify_code(other.code(), status, detail),
    }
}

/// Errors the SDK does not model for `SendEmail`, by their code and HTTP status.
fn classify_code(code: Option<&str>, status: Option<u16>, detail: String) -> MailError {
    const TRANSIENT: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        // Credentials rotated under us (Lambda refreshes them).
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    ];
    const INVALID: &[&str] = &[
        "InvalidParameterValue",
        "ValidationException",
        "SerializationException",
    ];
    match (code, status) {
        (Some(code), _) if TRANSIENT.contains(&code) => MailError::Unavailable(detail),
        (Some(code), _) if INVALID.contains(&code) => MailError::Invalid(detail),
        (_, Some(status)) if status == 429 || status >= 500 => MailError::Unavailable(detail),
        (None, None) => MailError::Unavailable(detail),
        // Any other refusal (access denied, an unknown 4xx) needs someone to act.
        _ => MailError::Rejected(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sesv2::error::ErrorMetadata;
    use aws_sdk_sesv2::types::error::{
        AccountSuspendedException, BadRequestException, LimitExceededException,
        MailFromDomainNotVerifiedException, MessageRejected, NotFoundException,
        SendingPausedException, TooManyRequestsException,
    };

    fn kind(error: MailError) -> &'static str {
        match error {
            MailError::Invalid(_) => "invalid",
            MailError::Rejected(_) => "rejected",
            MailError::Unavailable(_) => "unavailable",
        }
    }

    fn modelled(error: SendEmailError, status: u16) -> &'static str {
        kind(classify(&error, Some(status), String::new()))
    }

    fn unmodelled(code: Option<&str>, status: Option<u16>) -> &'static str {
        let mut meta = ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code);
        }
        kind(classify(
            &SendEmailError::generic(meta.build()),
            status,
            String::new(),
        ))
    }

    #[test]
    fn modelled_refusals() {
        use SendEmailError as E;
        assert_eq!(
            modelled(E::MessageRejected(MessageRejected::builder().build()), 400),
            "rejected"
        );
        assert_eq!(
            modelled(
                E::MailFromDomainNotVerifiedException(
                    MailFromDomainNotVerifiedException::builder().build()
                ),
                400
            ),
            "rejected"
        );
        assert_eq!(
            modelled(
                E::AccountSuspendedException(AccountSuspendedException::builder().build()),
                400
            ),
            "rejected"
        );
        assert_eq!(
            modelled(
                E::SendingPausedException(SendingPausedException::builder().build()),
                400
            ),
            "rejected"
        );
        assert_eq!(
            modelled(
                E::BadRequestException(BadRequestException::builder().build()),
                400
            ),
            "invalid"
        );
        assert_eq!(
            modelled(
                E::NotFoundException(NotFoundException::builder().build()),
                404
            ),
            "invalid"
        );
        assert_eq!(
            modelled(
                E::TooManyRequestsException(TooManyRequestsException::builder().build()),
                429
            ),
            "unavailable"
        );
        assert_eq!(
            modelled(
                E::LimitExceededException(LimitExceededException::builder().build()),
                400
            ),
            "unavailable"
        );
    }

    #[test]
    fn unmodelled_refusals_by_code_then_status() {
        assert_eq!(
            unmodelled(Some("ThrottlingException"), Some(400)),
            "unavailable"
        );
        assert_eq!(
            unmodelled(Some("ExpiredTokenException"), Some(400)),
            "unavailable"
        );
        assert_eq!(
            unmodelled(Some("InternalFailure"), Some(500)),
            "unavailable"
        );
        assert_eq!(unmodelled(Some("Whatever"), Some(503)), "unavailable");
        assert_eq!(unmodelled(None, Some(502)), "unavailable");
        assert_eq!(unmodelled(None, Some(429)), "unavailable");
        assert_eq!(
            unmodelled(Some("InvalidParameterValue"), Some(400)),
            "invalid"
        );
        assert_eq!(
            unmodelled(Some("AccessDeniedException"), Some(403)),
            "rejected"
        );
        assert_eq!(
            unmodelled(Some("UnrecognizedClientException"), Some(403)),
            "rejected"
        );
        assert_eq!(unmodelled(None, Some(400)), "rejected");
    }
}
