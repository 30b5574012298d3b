//! The mail port: one transactional e-mail (an invitation, a password reset, a retention
//! warning) to one recipient, sent through whatever delivers mail.
//!
//! Two adapters implement it: Amazon SES (`adapters::aws`) and a maildir-style outbox
//! folder (`adapters::embedded`) that the local stack and its end-to-end tests read;
//! `adapters/tests/mail_conformance.rs` holds them to the same behaviour.
//!
//! A [`Mail`] that exists can be sent: its parts are checked when it is built, so no
//! adapter has to guard against a subject that would start a new header line.

use async_trait::async_trait;
use std::fmt;

use crate::accounts::Email;

/// The longest subject, in characters. Mail clients show about 60; this leaves room for
/// an organization's name without letting a subject grow into a paragraph.
pub const MAX_SUBJECT_CHARS: usize = 250;
/// The largest body (text or HTML), in bytes. Transactional mails are a few KiB; SES
/// takes up to 40 MB, so this is a sanity bound rather than the provider's.
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// The longest display name of a sender, in characters.
pub const MAX_SENDER_NAME_CHARS: usize = 100;

/// An e-mail to one recipient: a subject, a plain-text body and, optionally, an HTML
/// body with the same content (sent as `multipart/alternative`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    to: Email,
    subject: String,
    text: String,
    html: Option<String>,
}

impl Mail {
    /// A plain-text mail. The subject must be one line (no control characters) of 1 to
    /// [`MAX_SUBJECT_CHARS`] characters; the body must not be blank. The address must
    /// be deliverable without SMTPUTF8 (see [`check_address`]).
    pub fn new(
        to: Email,
        subject: impl Into<String>,
        text: impl Into<String>,
    ) -> Result<Self, MailError> {
        check_address(&to)?;
        let subject = subject.into();
        check_subject(&subject)?;
        let text = text.into();
        check_body("text body", &text)?;
        Ok(Self {
            to,
            subject,
            text,
            html: None,
        })
    }

    /// The same mail with an HTML alternative to its text body.
    pub fn with_html(mut self, html: impl Into<String>) -> Result<Self, MailError> {
        let html = html.into();
        check_body("HTML body", &html)?;
        self.html = Some(html);
        Ok(self)
    }

    pub fn to(&self) -> &Email {
        &self.to
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn html(&self) -> Option<&str> {
        self.html.as_deref()
    }
}

/// Who mail comes from: an address (on AWS, an identity verified in SES) and an
/// optional display name such as "Leasedesk".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    name: Option<String>,
    address: Email,
}

impl Sender {
    /// A sender. The name, when given, is one line of 1 to [`MAX_SENDER_NAME_CHARS`]
    /// characters (it may be non-ASCII: it is encoded in the header).
    pub fn new(address: Email, name: Option<&str>) -> Result<Self, MailError> {
        check_address(&address)?;
        let name = match name.map(str::trim) {
            None | Some("") => None,
            Some(name) => {
                if name.chars().count() > MAX_SENDER_NAME_CHARS || !one_line(name) {
                    return Err(MailError::Invalid(format!(
                        "a sender name is one line of at most {MAX_SENDER_NAME_CHARS} characters"
                    )));
                }
                Some(name.to_owned())
            }
        };
        Ok(Self { name, address })
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn address(&self) -> &Email {
        &self.address
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} <{}>", self.address.as_str()),
            None => f.write_str(self.address.as_str()),
        }
    }
}

/// What the provider reports for a mail it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMail {
    /// The provider's id of the message (SES's `MessageId`; the outbox's `Message-ID`
    /// without its angle brackets), for tracing a mail through bounces and logs.
    pub message_id: String,
}

/// Why a mail was not sent. [`MailError::is_retryable`] tells a queue consumer whether
/// to try again later or to give up on the mail.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The mail or its address is malformed, or the provider found the request invalid.
    /// Sending it again unchanged fails again.
    #[error("invalid mail: {0}")]
    Invalid(String),
    /// The provider refused the mail: an unverified sender, a recipient on a
    /// suppression list, content it will not send, or sending paused on the account.
    /// Sending it again fails until someone changes the configuration.
    #[error("mail rejected: {0}")]
    Rejected(String),
    /// The provider could not be reached, failed, or asked us to slow down.
    #[error("mail service unavailable: {0}")]
    Unavailable(String),
}

impl MailError {
    /// Whether the same mail may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, MailError::Unavailable(_))
    }
}

/// The mail port. One instance sends from one configured [`Sender`].
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Hands `mail` to the provider. `Ok` means the provider accepted it for delivery
    /// (not that it reached the inbox: bounces arrive later, if at all).
    async fn send(&self, mail: &Mail) -> Result<SentMail, MailError>;
}

/// Checks that an address can be written in a header and delivered without SMTPUTF8:
/// an ASCII local part of RFC 5322 `dot-atom` characters and an ASCII domain of letters,
/// digits, hyphens and dots (an internationalized domain in its punycode form). SES
/// accepts only such addresses, and they cannot break out of an address header.
pub fn check_address(address: &Email) -> Result<(), MailError> {
    let invalid = |why: &str| Err(MailError::Invalid(format!("{:?}: {why}", address.as_str())));
    let Some((local, domain)) = address.as_str().rsplit_once('@') else {
        return invalid("an address has a local part and a domain");
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = |part: &str| {
        !part.is_empty()
            && part
                .split('.')
                .all(|atom| !atom.is_empty() && atom.chars().all(atext))
    };
    if !dot_atom(local) {
        return invalid(
            "the local part must be plain ASCII letters, digits, dots and !#$%&'*+-/=?^_`{|}~",
        );
    }
    let label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if domain.len() > 253 || !domain.contains('.') || !domain.split('.').all(label) {
        return invalid("the domain must be ASCII labels (punycode for international names)");
    }
    Ok(())
}

/// No control characters and no Unicode line or paragraph separators: text that stays
/// on one header line whatever a client makes of it.
fn one_line(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
}

fn check_subject(subject: &str) -> Result<(), MailError> {
    if subject.trim().is_empty() {
        return Err(MailError::Invalid("a mail needs a subject".into()));
    }
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(MailError::Invalid(format!(
            "a subject holds at most {MAX_SUBJECT_CHARS} characters"
        )));
    }
    if !one_line(subject) {
        return Err(MailError::Invalid(
            "a subject is one line without control characters".into(),
        ));
    }
    Ok(())
}

fn check_body(what: &str, body: &str) -> Result<(), MailError> {
    if body.trim().is_empty() {
        return Err(MailError::Invalid(format!("the {what} is empty")));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(MailError::Invalid(format!(
            "the {what} holds at most {MAX_BODY_BYTES} bytes"
        )));
    }
    // Line breaks and tabs belong in a body; other control characters (NUL above all)
    // are mangled or refused on the way.
    if body
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(MailError::Invalid(format!(
            "the {what} holds control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(address: &str) -> Email {
        Email::parse(address).unwrap()
    }

    #[test]
    fn a_mail_keeps_what_it_was_built_from() {
        let mail = Mail::new(
            email("Asa.Oberg@Example.SE"),
            "Välkommen till Leasedesk",
            "Hej Åsa!\n",
        )
        .unwrap()
        .with_html("<p>Hej Åsa!</p>")
        .unwrap();
        assert_eq!(mail.to().as_str(), "asa.oberg@example.se");
        assert_eq!(mail.subject(), "Välkommen till Leasedesk");
        assert_eq!(mail.text(), "Hej Åsa!\n");
        assert_eq!(mail.html(), Some("<p>Hej Åsa!</p>"));
        let plain = Mail::new(email("a@b.se"), "S", "T").unwrap();
        assert_eq!(plain.html(), None);
    }

    #[test]
    fn subjects_are_one_line() {
        let to = || email("anna@example.se");
        for bad in [
            "",
            "   ",
            "Hello\r\nBcc: victim@example.com",
            "Hello\nWorld",
            "Tab\there",
            "NUL\0",
            "line\u{2028}separator",
            "next line\u{85}",
        ] {
            assert!(
                matches!(Mail::new(to(), bad, "body"), Err(MailError::Invalid(_))),
                "{bad:?}"
            );
        }
        let longest = "ä".repeat(MAX_SUBJECT_CHARS);
        assert!(Mail::new(to(), longest.as_str(), "body").is_ok());
        let too_long = format!("{longest}a");
        assert!(Mail::new(to(), too_long, "body").is_err());
        // Non-ASCII is welcome.
        assert!(Mail::new(to(), "Slaptažodžio atkūrimas – Paroles atiestatīšana", "b").is_ok());
    }

    #[test]
    fn bodies_are_not_blank_and_hold_no_control_characters() {
        let to = || email("anna@example.se");
        assert!(Mail::new(to(), "S", " \n ").is_err());
        assert!(Mail::new(to(), "S", "a\0b").is_err());
        assert!(Mail::new(to(), "S", "a\u{1b}[31mred").is_err());
        assert!(Mail::new(to(), "S", "line one\r\nline two\n\tindented").is_ok());
        assert!(Mail::new(to(), "S", "x".repeat(MAX_BODY_BYTES + 1)).is_err());
        let mail = Mail::new(to(), "S", "text").unwrap();
        assert!(mail.clone().with_html("").is_err());
        assert!(mail.clone().with_html("<p>\0</p>").is_err());
        assert!(mail.with_html("<p>ok</p>").is_ok());
    }

    #[test]
    fn addresses_must_be_deliverable_without_smtputf8() {
        for good in [
            "anna@example.se",
            "anna.lind+leasedesk@mail.example.co.uk",
            "o'brien@xn--bcher-kva.example",
            "a_b-c@sub-domain.example.com",
        ] {
            assert!(check_address(&email(good)).is_ok(), "{good}");
        }
        // Each of these is an `Email` (the account rules are looser) but not an
        // address a mail can go to.
        for bad in [
            "åsa@example.se",
            "anna@exämple.se",
            "a<b@example.se",
            "a,b@example.se",
            "\"quoted\"@example.se",
            "a..b@example.se",
            ".a@example.se",
            "anna@-example.se",
            "anna@example_.se",
            "anna@[127.0.0.1]",
        ] {
            let address = email(bad);
            assert!(
                matches!(check_address(&address), Err(MailError::Invalid(_))),
                "{bad}"
            );
            assert!(Mail::new(address, "S", "T").is_err(), "{bad}");
        }
    }

    #[test]
    fn senders() {
        let sender = Sender::new(email("no-reply@leasedesk.se"), Some("  Leasedesk  ")).unwrap();
        assert_eq!(sender.name(), Some("Leasedesk"));
        assert_eq!(sender.to_string(), "Leasedesk <no-reply@leasedesk.se>");
        let bare = Sender::new(email("no-reply@leasedesk.se"), Some(" ")).unwrap();
        assert_eq!(bare.name(), None);
        assert_eq!(bare.to_string(), "no-reply@leasedesk.se");
        assert!(Sender::new(email("no-reply@leasedesk.se"), Some("Lease\r\ndesk")).is_err());
        assert!(Sender::new(email("no-reply@leasedesk.se"), Some(&"x".repeat(101))).is_err());
        assert!(Sender::new(email("nö@leasedesk.se"), None).is_err());
        assert!(Sender::new(email("no-reply@leasedesk.se"), Some("Leasedesk Åbo")).is_ok());
    }

    #[test]
    fn only_unavailability_is_worth_a_retry() {
        assert!(MailError::Unavailable("throttled".into()).is_retryable());
        assert!(!MailError::Rejected("unverified sender".into()).is_retryable());
        assert!(!MailError::Invalid("subject".into()).is_retryable());
    }
}
