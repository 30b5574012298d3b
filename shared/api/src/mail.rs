//! The mails Leasedesk sends, in the recipient's language: a [`MailTemplate`] and a
//! [`Lang`] become a [`domain::mail::Mail`] with a plain-text body and an HTML
//! alternative saying the same.
//!
//! The texts live in `locales/mail/<lang>.json`, flat catalogs compiled in; a unit test
//! holds every language to the English keys and placeholders and refuses English left
//! standing in another language. Rendering never falls back to English: a text missing
//! from a catalog is an error, which that test keeps from ever shipping.
//!
//! Interpolated values (names, links, dates) are filled in one pass, so a value that
//! looks like `{link}` stays text, and every value is HTML-escaped in the HTML body.
//! Dates are written the way each language writes them, in UTC, and say so.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use domain::accounts::Email;
use domain::mail::{Mail, MailError};

use crate::i18n::Lang;

/// The longest a name may be inside a subject; longer ones are cut with an ellipsis so
/// the subject stays readable (the body carries the name in full).
const MAX_NAME_IN_SUBJECT: usize = 80;
/// The longest link a mail carries.
const MAX_LINK_BYTES: usize = 2048;
/// Signed under every mail, in every language.
const PRODUCT: &str = "Leasedesk";

/// A mail Leasedesk sends, with what varies from one sending to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailTemplate {
    /// Someone in an organization invites a new user.
    Invite {
        organization_name: String,
        inviter_name: String,
        /// Where the invitation is accepted (carries the one-time token).
        link: String,
        expires_at: DateTime<Utc>,
    },
    /// A user asked to choose a new password.
    PasswordReset {
        /// Where the new password is chosen (carries the one-time token).
        link: String,
        expires_at: DateTime<Utc>,
    },
    /// An organization's owners are told its data will be deleted when the retention
    /// period ends.
    RetentionWarning {
        organization_name: String,
        deletion_date: NaiveDate,
    },
}

/// One mail's content before it becomes text and HTML: paragraphs, an optional call to
/// action (a label and a link), and more paragraphs.
struct Content {
    subject: String,
    before: Vec<String>,
    action: Option<(String, String)>,
    after: Vec<String>,
}

impl MailTemplate {
    /// The mail to `to` in `lang`.
    pub fn render(&self, lang: Lang, to: Email) -> Result<Mail, MailError> {
        let texts = Texts::of(lang);
        let content = match self {
            MailTemplate::Invite {
                organization_name,
                inviter_name,
                link,
                expires_at,
            } => {
                check_link(link)?;
                let names = |limit: Option<usize>| {
                    [
                        ("organization_name", one_line(organization_name, limit)),
                        ("inviter_name", one_line(inviter_name, limit)),
                    ]
                };
                let expires_at = texts.date_time(*expires_at)?;
                Content {
                    subject: texts.fill("invite.subject", &names(Some(MAX_NAME_IN_SUBJECT)))?,
                    before: vec![texts.fill("invite.intro", &names(None))?],
                    action: Some((texts.get("invite.action")?.to_owned(), link.clone())),
                    after: vec![
                        texts.fill("invite.expiry", &[("expires_at", expires_at)])?,
                        texts.get("invite.ignore")?.to_owned(),
                    ],
                }
            }
            MailTemplate::PasswordReset { link, expires_at } => {
                check_link(link)?;
                let expires_at = texts.date_time(*expires_at)?;
                Content {
                    subject: texts.get("password_reset.subject")?.to_owned(),
                    before: vec![texts.get("password_reset.intro")?.to_owned()],
                    action: Some((texts.get("password_reset.action")?.to_owned(), link.clone())),
                    after: vec![
                        texts.fill("password_reset.expiry", &[("expires_at", expires_at)])?,
                        texts.get("password_reset.ignore")?.to_owned(),
                    ],
                }
            }
            MailTemplate::RetentionWarning {
                organization_name,
                deletion_date,
            } => {
                let deletion_date = texts.date(*deletion_date)?;
                let values = |limit: Option<usize>| {
                    [
                        ("organization_name", one_line(organization_name, limit)),
                        ("deletion_date", deletion_date.clone()),
                    ]
                };
                Content {
                    subject: texts.fill(
                        "retention_warning.subject",
                        &values(Some(MAX_NAME_IN_SUBJECT)),
                    )?,
                    before: vec![
                        texts.fill("retention_warning.intro", &values(None))?,
                        texts.get("retention_warning.detail")?.to_owned(),
                        texts.get("retention_warning.keep")?.to_owned(),
                    ],
                    action: None,
                    after: Vec::new(),
                }
            }
        };
        let text = plain_text(&texts, &content)?;
        let html = html(&texts, &content)?;
        Mail::new(to, content.subject, text)?.with_html(html)
    }
}

/// The retention job's warning ([`domain::retention::WarningMail`]) with the product's
/// texts: in the language the owner chose, or English when they chose none (the job has
/// no request whose `Accept-Language` could say).
#[derive(Clone, Copy, Debug, Default)]
pub struct RetentionWarnings;

impl domain::retention::WarningMail for RetentionWarnings {
    fn retention_warning(
        &self,
        owner: &domain::accounts::User,
        organization: &domain::organization::Organization,
        deletion_date: NaiveDate,
    ) -> Result<Mail, MailError> {
        let lang = owner
            .language
            .as_deref()
            .and_then(Lang::from_code)
            .unwrap_or_default();
        MailTemplate::RetentionWarning {
            organization_name: organization.name.clone(),
            deletion_date,
        }
        .render(lang, owner.email.clone())
    }
}

fn plain_text(texts: &Texts, content: &Content) -> Result<String, MailError> {
    let mut blocks = vec![texts.get("common.greeting")?.to_owned()];
    blocks.extend(content.before.iter().cloned());
    if let Some((label, link)) = &content.action {
        blocks.push(format!("{label}:\n{link}"));
    }
    blocks.extend(content.after.iter().cloned());
    blocks.push(format!("{}\n{PRODUCT}", texts.get("common.sign_off")?));
    blocks.push(format!("-- \n{}", texts.get("common.automated")?));
    Ok(blocks.join("\n\n") + "\n")
}

fn html(texts: &Texts, content: &Content) -> Result<String, MailError> {
    let paragraph = |text: &str| format!("<p style=\"margin:0 0 16px\">{}</p>\n", escape(text));
    let mut body = paragraph(texts.get("common.greeting")?);
    for text in &content.before {
        body.push_str(&paragraph(text));
    }
    if let Some((label, link)) = &content.action {
        let link = escape(link);
        body.push_str(&format!(
            "<p style=\"margin:24px 0\"><a href=\"{link}\" style=\"display:inline-block;\
             padding:12px 20px;background:#0b5cad;color:#ffffff;text-decoration:none;\
             border-radius:4px;font-weight:600\">{}</a></p>\n\
             <p style=\"margin:0 0 16px;font-size:13px;color:#52606d\">{}<br>\
             <a href=\"{link}\" style=\"color:#0b5cad;word-break:break-all\">{link}</a></p>\n",
            escape(label),
            escape(texts.get("common.open_link")?),
        ));
    }
    for text in &content.after {
        body.push_str(&paragraph(text));
    }
    body.push_str(&format!(
        "<p style=\"margin:24px 0 16px\">{}<br>{PRODUCT}</p>\n\
         <hr style=\"border:none;border-top:1px solid #d9e2ec;margin:24px 0\">\n\
         <p style=\"margin:0;font-size:12px;color:#7b8794\">{}</p>\n",
        escape(texts.get("common.sign_off")?),
        escape(texts.get("common.automated")?),
    ));
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n</head>\n\
         <body style=\"margin:0;padding:24px;background:#ffffff;color:#1f2933;\
         font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;\
         font-size:15px;line-height:1.5\">\n\
         <div style=\"max-width:560px;margin:0 auto\">\n{body}</div>\n</body>\n</html>\n",
        lang = texts.lang.code(),
        title = escape(&content.subject),
    ))
}

/// Text made safe for HTML element content and double- or single-quoted attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A name as it goes into a mail: control characters (a line break in an organization's
/// name would fake a paragraph, or a header in the subject) become spaces, runs of
/// spaces one, and with a `limit` a long name is cut with an ellipsis.
fn one_line(value: &str, limit: Option<usize>) -> String {
    let spaced: String = value
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let cleaned = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    match limit {
        Some(limit) if cleaned.chars().count() > limit => {
            let cut: String = cleaned.chars().take(limit.saturating_sub(1)).collect();
            format!("{}…", cut.trim_end())
        }
        _ => cleaned,
    }
}

/// A link a mail may carry: an absolute `https` URL (`http` for the local runner)
/// without whitespace, controls or characters that end a URL in plain text.
fn check_link(link: &str) -> Result<(), MailError> {
    let scheme_ok = link.starts_with("https://") || link.starts_with("http://");
    let host_ok = link
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
        .is_some_and(|host| !host.is_empty());
    let chars_ok = !link
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`'));
    if scheme_ok && host_ok && chars_ok && link.len() <= MAX_LINK_BYTES {
        Ok(())
    } else {
        Err(MailError::Invalid(
            "a mail's link is an absolute http(s) URL without spaces".into(),
        ))
    }
}

type Catalog = HashMap<String, String>;

fn catalog_source(lang: Lang) -> &'static str {
    match lang {
        Lang::En => include_str!("../locales/mail/en.json"),
        Lang::Sv => include_str!("../locales/mail/sv.json"),
        Lang::Da => include_str!("../locales/mail/da.json"),
        Lang::Nb => include_str!("../locales/mail/nb.json"),
        Lang::Fi => include_str!("../locales/mail/fi.json"),
        Lang::Lt => include_str!("../locales/mail/lt.json"),
        Lang::Lv => include_str!("../locales/mail/lv.json"),
        Lang::Et => include_str!("../locales/mail/et.json"),
    }
}

/// One language's mail texts.
struct Texts {
    lang: Lang,
    catalog: &'static Catalog,
}

impl Texts {
    fn of(lang: Lang) -> Self {
        static CATALOGS: OnceLock<HashMap<Lang, Catalog>> = OnceLock::new();
        let catalogs = CATALOGS.get_or_init(|| {
            Lang::ALL
                .into_iter()
                .map(|lang| {
                    // Compiled in and parsed by the tests; an unreadable catalog leaves
                    // every lookup failing loudly rather than mailing English.
                    let catalog = serde_json::from_str(catalog_source(lang)).unwrap_or_default();
                    (lang, catalog)
                })
                .collect()
        });
        static EMPTY: OnceLock<Catalog> = OnceLock::new();
        let catalog = catalogs
            .get(&lang)
            .unwrap_or_else(|| EMPTY.get_or_init(Catalog::new));
        Self { lang, catalog }
    }

    fn get(&self, key: &str) -> Result<&'static str, MailError> {
        self.catalog.get(key).map(String::as_str).ok_or_else(|| {
            MailError::Invalid(format!(
                "the mail text {key:?} is missing in {}",
                self.lang.code()
            ))
        })
    }

    /// The text under `key` with its `{name}` placeholders filled from `values`.
    fn fill(&self, key: &str, values: &[(&str, String)]) -> Result<String, MailError> {
        fill(self.get(key)?, values).map_err(|name| {
            MailError::Invalid(format!(
                "the mail text {key:?} in {} names {{{name}}}, which is not given",
                self.lang.code()
            ))
        })
    }

    /// A calendar date as this language writes it.
    fn date(&self, date: NaiveDate) -> Result<String, MailError> {
        self.fill(
            "format.date",
            &[
                ("year", format!("{:04}", date.year())),
                ("month", format!("{:02}", date.month())),
                ("day", format!("{:02}", date.day())),
            ],
        )
    }

    /// A moment as this language writes a date and time, in UTC (and saying so).
    fn date_time(&self, at: DateTime<Utc>) -> Result<String, MailError> {
        let date = self.date(at.date_naive())?;
        self.fill(
            "format.date_time",
            &[
                ("date", date),
                ("hour", format!("{:02}", at.hour())),
                ("minute", format!("{:02}", at.minute())),
            ],
        )
    }
}

/// Fills `{name}` placeholders in one pass (what a value contains is never read as a
/// placeholder). A placeholder without a value is an error naming it.
fn fill(template: &str, values: &[(&str, String)]) -> Result<String, String> {
    let mut filled = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        filled.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            filled.push_str(&rest[start..]);
            return Ok(filled);
        };
        let name = &after[..end];
        let value = values
            .iter()
            .find(|(given, _)| *given == name)
            .map(|(_, value)| value)
            .ok_or_else(|| name.to_owned())?;
        filled.push_str(value);
        rest = &after[end + 1..];
    }
    filled.push_str(rest);
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::catalog_checks::placeholders;

    fn email() -> Email {
        Email::parse("asa.oberg@example.se").unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn parsed(lang: Lang) -> Catalog {
        serde_json::from_str(catalog_source(lang))
            .unwrap_or_else(|e| panic!("locales/mail/{}.json: {e}", lang.code()))
    }

    fn invite() -> MailTemplate {
        MailTemplate::Invite {
            organization_name: "Skåne Leasing AB".into(),
            inviter_name: "Örjan Ängström".into(),
            link: "https://app.leasedesk.se/invite?token=abc123&lang=sv".into(),
            expires_at: at("2026-11-28T14:05:00Z"),
        }
    }

    fn reset() -> MailTemplate {
        MailTemplate::PasswordReset {
            link: "https://app.leasedesk.se/reset?token=xyz789".into(),
            expires_at: at("2026-11-21T09:30:00Z"),
        }
    }

    fn retention() -> MailTemplate {
        MailTemplate::RetentionWarning {
            organization_name: "Ģērķu Līzings SIA".into(),
            deletion_date: NaiveDate::from_ymd_opt(2027, 1, 5).unwrap(),
        }
    }

    fn templates() -> [MailTemplate; 3] {
        [invite(), reset(), retention()]
    }

    #[test]
    fn every_language_has_every_english_text_with_its_placeholders() {
        crate::i18n::catalog_checks::assert_complete(parsed);
    }

    /// Every sentence is translated: only the date patterns may read as in English
    /// (Swedish and Lithuanian write ISO dates too).
    #[test]
    fn no_language_falls_back_to_english() {
        let english = parsed(Lang::En);
        for lang in Lang::ALL.into_iter().filter(|lang| *lang != Lang::En) {
            let catalog = parsed(lang);
            for (key, text) in &english {
                if key.starts_with("format.") {
                    continue;
                }
                assert_ne!(&catalog[key], text, "{key} is English in {}", lang.code());
            }
            for template in templates() {
                let mail = template.render(lang, email()).unwrap();
                let in_english = template.render(Lang::En, email()).unwrap();
                assert_ne!(mail.subject(), in_english.subject(), "{}", lang.code());
                assert_ne!(mail.text(), in_english.text(), "{}", lang.code());
            }
        }
    }

    #[test]
    fn every_template_renders_in_every_language() {
        for lang in Lang::ALL {
            for template in templates() {
                let mail = template
                    .render(lang, email())
                    .unwrap_or_else(|e| panic!("{template:?} in {}: {e}", lang.code()));
                let html = mail.html().unwrap();
                assert_eq!(mail.to(), &email());
                for output in [mail.subject(), mail.text(), html] {
                    assert!(placeholders(output).is_empty(), "unfilled in {output}");
                }
                assert!(html.contains(&format!("<html lang=\"{}\">", lang.code())));
                assert!(mail.text().contains(PRODUCT));
                match &template {
                    MailTemplate::Invite { link, .. }
                    | MailTemplate::PasswordReset { link, .. } => {
                        assert!(mail.text().contains(link.as_str()), "{}", mail.text());
                        let escaped = escape(link);
                        assert!(html.contains(&format!("href=\"{escaped}\"")), "{html}");
                        assert!(html.contains(&format!(">{escaped}</a>")), "{html}");
                    }
                    MailTemplate::RetentionWarning { .. } => {
                        assert!(!html.contains("href="), "{html}");
                    }
                }
            }
        }
    }

    #[test]
    fn names_and_dates_appear_as_each_language_writes_them() {
        let sv = invite().render(Lang::Sv, email()).unwrap();
        assert_eq!(
            sv.subject(),
            "Örjan Ängström har bjudit in dig till Skåne Leasing AB i Leasedesk"
        );
        assert!(
            sv.text()
                .starts_with("Hej!\n\nÖrjan Ängström har bjudit in dig")
        );
        assert!(
            sv.text()
                .contains("Inbjudan gäller till 2026-11-28 kl. 14.05 UTC.")
        );

        let en = reset().render(Lang::En, email()).unwrap();
        assert!(
            en.text().contains("valid until 2026-11-21 at 09:30 UTC."),
            "{}",
            en.text()
        );
        let fi = reset().render(Lang::Fi, email()).unwrap();
        assert!(
            fi.text().contains("21.11.2026 klo 09.30 UTC"),
            "{}",
            fi.text()
        );
        let da = reset().render(Lang::Da, email()).unwrap();
        assert!(
            da.text().contains("21.11.2026 kl. 09.30 UTC"),
            "{}",
            da.text()
        );
        let et = reset().render(Lang::Et, email()).unwrap();
        assert!(
            et.text().contains("21.11.2026 kell 09.30 UTC"),
            "{}",
            et.text()
        );

        let lv = retention().render(Lang::Lv, email()).unwrap();
        assert!(
            lv.subject().contains("„Ģērķu Līzings SIA“"),
            "{}",
            lv.subject()
        );
        assert!(lv.subject().contains("05.01.2027."), "{}", lv.subject());
        let lt = retention().render(Lang::Lt, email()).unwrap();
        assert!(lt.text().contains("2027-01-05"), "{}", lt.text());
        let nb = retention().render(Lang::Nb, email()).unwrap();
        assert!(nb.text().contains("05.01.2027"), "{}", nb.text());
    }

    #[test]
    fn interpolated_values_are_escaped_in_html_and_never_read_as_placeholders() {
        let template = MailTemplate::Invite {
            organization_name: "<script>alert(1)</script> & \"Söner\" {link}".into(),
            inviter_name: "O'Brien\r\nBcc: victim@example.com".into(),
            link: "https://app.leasedesk.se/invite?token=a&b=\"c\"".replace('"', "%22"),
            expires_at: at("2026-11-28T14:05:00Z"),
        };
        let mail = template.render(Lang::En, email()).unwrap();
        let html = mail.html().unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Söner&quot;"));
        assert!(html.contains("O&#39;Brien"), "{html}");
        assert!(html.contains("href=\"https://app.leasedesk.se/invite?token=a&amp;b=%22c%22\""));
        // The value `{link}` is text, not the link.
        assert!(mail.text().contains("\"Söner\" {link}"), "{}", mail.text());
        // A line break in a name becomes a space, in the subject and the body.
        assert!(mail.subject().contains("O'Brien Bcc: victim@example.com"));
        assert!(!mail.text().contains("O'Brien\r") && !mail.text().contains("O'Brien\n"));
    }

    #[test]
    fn the_retention_job_writes_in_each_owners_language() {
        use domain::retention::WarningMail;
        let organization = domain::organization::Organization {
            id: domain::ids::TenantId::generate(),
            name: "Ģērķu Līzings SIA".into(),
            organization_number: domain::organization::OrganizationNumber::parse("556074-3089")
                .unwrap(),
            created_at: at("2021-01-01T00:00:00Z"),
            require_two_factor: false,
        };
        let owner = |language: Option<&str>| domain::accounts::User {
            id: domain::ids::UserId::generate(),
            tenant_id: organization.id,
            name: "Åsa Öberg".into(),
            email: email(),
            role: domain::access::Role::Owner,
            created_at: at("2021-01-01T00:00:00Z"),
            language: language.map(str::to_owned),
        };
        let deletion_date = NaiveDate::from_ymd_opt(2027, 1, 5).unwrap();
        for (language, lang) in [
            (Some("lv"), Lang::Lv),
            (Some("sv"), Lang::Sv),
            (None, Lang::En),
        ] {
            let mail = RetentionWarnings
                .retention_warning(&owner(language), &organization, deletion_date)
                .unwrap();
            let expected = MailTemplate::RetentionWarning {
                organization_name: organization.name.clone(),
                deletion_date,
            }
            .render(lang, email())
            .unwrap();
            assert_eq!(mail, expected, "{language:?}");
        }
        let latvian = RetentionWarnings
            .retention_warning(&owner(Some("lv")), &organization, deletion_date)
            .unwrap();
        assert!(
            latvian.subject().contains("05.01.2027."),
            "{}",
            latvian.subject()
        );
    }

    #[test]
    fn long_names_are_cut_in_the_subject_only() {
        let long = "Nordiska Leasing- och Finansieringsaktiebolaget i Skåne, Halland och Blekinge med dotterbolag AB";
        let template = MailTemplate::RetentionWarning {
            organization_name: long.into(),
            deletion_date: NaiveDate::from_ymd_opt(2027, 1, 5).unwrap(),
        };
        let mail = template.render(Lang::Sv, email()).unwrap();
        assert!(!mail.subject().contains(long));
        assert!(mail.subject().contains('…'), "{}", mail.subject());
        assert!(mail.text().contains(long));
    }

    #[test]
    fn links_must_be_absolute_http_urls() {
        for bad in [
            "",
            "app.leasedesk.se/reset",
            "javascript:alert(1)",
            "https://",
            "https:///path",
            "https://app.leasedesk.se/reset?token=a b",
            "https://app.leasedesk.se/\"><script>",
            "ftp://app.leasedesk.se/",
        ] {
            let template = MailTemplate::PasswordReset {
                link: bad.into(),
                expires_at: at("2026-11-21T09:30:00Z"),
            };
            assert!(
                matches!(
                    template.render(Lang::En, email()),
                    Err(MailError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        let local = MailTemplate::PasswordReset {
            link: "http://127.0.0.1:3000/reset?token=x".into(),
            expires_at: at("2026-11-21T09:30:00Z"),
        };
        assert!(local.render(Lang::En, email()).is_ok());
    }

    #[test]
    fn filling_is_one_pass_and_strict() {
        let values = [("a", "{b}".to_owned()), ("b", "B".to_owned())];
        assert_eq!(fill("x {a} y {b} z", &values).unwrap(), "x {b} y B z");
        assert_eq!(fill("{missing}", &values), Err("missing".to_owned()));
        assert_eq!(fill("no placeholders", &[]).unwrap(), "no placeholders");
        assert_eq!(fill("open { brace", &[]).unwrap(), "open { brace");
    }
}
