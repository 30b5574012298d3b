//! The wire form of a [`Mail`]: the one RFC 5322 message both mail adapters send, so
//! what a user receives from SES is what the local outbox shows.
//!
//! Non-ASCII survives as RFC 2047 encoded words in headers and quoted-printable or
//! base64 UTF-8 bodies (mail-builder picks the shorter per part), so the message is
//! plain 7-bit ASCII with CRLF line ends and fits any transport. A mail with an HTML
//! body is `multipart/alternative`, text first, so clients that show HTML prefer it.

use chrono::{DateTime, Utc};
use domain::mail::{Mail, Sender};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;

/// A new `Message-ID` (without angle brackets) in the sender's domain: a UUIDv7, so ids
/// are unique across processes and sort by the time they were made.
pub(crate) fn new_message_id(from: &Sender) -> String {
    let domain = from
        .address()
        .as_str()
        .rsplit_once('@')
        .map(|(_, domain)| domain)
        .unwrap_or("localhost");
    format!("{}@{domain}", uuid::Uuid::now_v7().simple())
}

/// The message for `mail` from `from`, with the given `Message-ID` (no angle brackets)
/// and `Date`.
pub(crate) fn render(mail: &Mail, from: &Sender, message_id: &str, date: DateTime<Utc>) -> Vec<u8> {
    let sender = Address::new_address(from.name(), from.address().as_str());
    let mut message = MessageBuilder::new()
        .from(sender)
        .to(mail.to().as_str())
        .subject(mail.subject())
        .date(Date::new(date.timestamp()))
        .message_id(message_id)
        // RFC 3834: a machine sent this, so vacation responders and the like stay quiet.
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .text_body(crlf(mail.text()));
    if let Some(html) = mail.html() {
        message = message.html_body(crlf(html));
    }
    let mut raw = Vec::new();
    message.serialize(&mut raw);
    raw
}

/// Text in its MIME canonical form (RFC 2046 4.1.1): every line break CRLF, which a
/// base64-encoded part keeps as it is given.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::accounts::Email;

    fn email(address: &str) -> Email {
        Email::parse(address).unwrap()
    }

    fn sender() -> Sender {
        Sender::new(email("no-reply@leasedesk.se"), Some("Leasedesk Åbo")).unwrap()
    }

    fn headers(raw: &str) -> &str {
        raw.split("\r\n\r\n").next().unwrap()
    }

    #[test]
    fn the_message_is_seven_bit_with_encoded_headers() {
        let mail = Mail::new(
            email("asa@example.se"),
            "Välkommen, Åsa – Jūsų kvietimas į Ģērķis SIA",
            "Hej Åsa!\nKlicka på länken.\n",
        )
        .unwrap()
        .with_html("<p>Hej Åsa!</p>")
        .unwrap();
        let date = DateTime::parse_from_rfc3339("2026-11-21T13:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let raw = render(&mail, &sender(), "abc@leasedesk.se", date);
        let text = String::from_utf8(raw).unwrap();
        assert!(text.is_ascii(), "{text}");
        // Every line ends in CRLF and stays within RFC 5322's 78-character advice.
        for line in text.split("\r\n") {
            assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
            assert!(line.len() <= 78, "{line:?}");
        }
        let head = headers(&text);
        assert!(head.contains("Subject: =?utf-8?"), "{head}");
        assert!(head.contains("From: =?utf-8?"), "{head}");
        assert!(head.contains("<no-reply@leasedesk.se>"), "{head}");
        assert!(head.contains("To: <asa@example.se>") || head.contains("To: asa@example.se"));
        assert!(head.contains("Message-ID: <abc@leasedesk.se>"), "{head}");
        assert!(
            head.contains("Date: Sat, 21 Nov 2026 13:05:00 +0000"),
            "{head}"
        );
        assert!(head.contains("MIME-Version: 1.0"), "{head}");
        assert!(head.contains("Auto-Submitted: auto-generated"), "{head}");
        assert!(head.contains("multipart/alternative"), "{head}");
        assert!(
            text.contains("text/plain; charset=\"utf-8\"")
                || text.contains("text/plain; charset=utf-8")
        );
        assert!(text.contains("text/html"));
    }

    #[test]
    fn a_text_only_mail_is_a_single_part() {
        let mail = Mail::new(email("anna@example.se"), "Plain", "Just text.").unwrap();
        let raw =
            String::from_utf8(render(&mail, &sender(), "x@leasedesk.se", Utc::now())).unwrap();
        assert!(!raw.contains("multipart"), "{raw}");
        assert!(headers(&raw).contains("Content-Type: text/plain"), "{raw}");
    }

    /// Decoded, each text part's line breaks are CRLF, however the mail wrote them.
    #[cfg(feature = "embedded")]
    #[test]
    fn bodies_are_in_canonical_form() {
        let mail = Mail::new(email("anna@example.se"), "Rader", "Ett\nTvå\r\nTre åäö\n")
            .unwrap()
            .with_html("<p>Ett</p>\n<p>Två</p>\n")
            .unwrap();
        let raw = render(&mail, &sender(), "x@leasedesk.se", Utc::now());
        let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let bodies: Vec<String> = message
            .parts
            .iter()
            .filter_map(|part| part.text_contents().map(str::to_owned))
            .collect();
        assert_eq!(
            bodies,
            ["Ett\r\nTvå\r\nTre åäö\r\n", "<p>Ett</p>\r\n<p>Två</p>\r\n"]
        );
    }

    #[test]
    fn message_ids_are_unique_and_in_the_senders_domain() {
        let a = new_message_id(&sender());
        let b = new_message_id(&sender());
        assert_ne!(a, b);
        assert!(a.ends_with("@leasedesk.se"), "{a}");
        assert!(!a.contains(['<', '>', ' ']));
    }
}
