//! The embedded mailer: [`domain::mail::Mailer`] into a maildir-style outbox folder, for
//! the local runner, and the reader through which the local stack and its tests see
//! what was sent.
//!
//! Layout (maildir): `<folder>/tmp`, `<folder>/new`, `<folder>/cur`. Each mail is one
//! RFC 5322 message (the same bytes the SES adapter sends, see `crate::mime`) named
//! `<unix seconds>.<uuid v7>.leasedesk.eml`. It is written to `tmp/`, synced, renamed
//! into `new/`, and `new/` is synced: a reader, or a mail client pointed at the folder,
//! sees a whole message or none, and a mail `send` acknowledged survives a crash.
//! Mails carry one-time links, so files are owner-only (0600, folders 0700).
//!
//! Reading takes `new/` and `cur/` (where a mail client moves what it has shown) in the
//! order the mails were written; the name sorts by time, and UUIDv7 keeps mails of the
//! same second in the order they were made.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::accounts::Email;
use domain::mail::{Mail, MailError, Mailer, Sender, SentMail};
use mail_parser::{MessageParser, PartType};

use crate::mime;

/// What the outbox's file names end with (after the maildir host part).
const HOST: &str = "leasedesk";

/// [`Mailer`] into a maildir folder.
#[derive(Debug)]
pub struct Outbox {
    folder: PathBuf,
    from: Sender,
}

/// A mail read back from the outbox (or any message `crate::mime` wrote): its headers
/// decoded and its parts as text. Line breaks in the bodies are `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The `Message-ID` without angle brackets; the outbox returns it as
    /// [`SentMail::message_id`].
    pub message_id: String,
    pub date: DateTime<Utc>,
    pub from: String,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

impl ReceivedMail {
    /// Parses one RFC 5322 message. The text is the first `text/plain` part and the
    /// HTML the first `text/html` part; a message without a `Message-ID`, `Date`,
    /// `From`, `To`, subject or text part is not one of ours and is refused.
    pub fn parse(raw: &[u8]) -> Result<Self, MailError> {
        let invalid = |why: &str| MailError::Invalid(format!("not a mail from the outbox: {why}"));
        let message = MessageParser::default()
            .parse(raw)
            .ok_or_else(|| invalid("no RFC 5322 message"))?;
        let message_id = message
            .message_id()
            .ok_or_else(|| invalid("no Message-ID"))?
            .to_owned();
        let date = message
            .date()
            .and_then(|date| DateTime::<Utc>::from_timestamp(date.to_timestamp(), 0))
            .ok_or_else(|| invalid("no Date"))?;
        let from = message
            .from()
            .and_then(|from| from.first())
            .ok_or_else(|| invalid("no From"))?;
        let from_name = from.name().map(str::to_owned);
        let from = from
            .address()
            .ok_or_else(|| invalid("no From address"))?
            .to_owned();
        let to: Vec<String> = message
            .to()
            .map(|to| {
                to.iter()
                    .filter_map(|addr| addr.address())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if to.is_empty() {
            return Err(invalid("no To"));
        }
        let subject = message
            .subject()
            .ok_or_else(|| invalid("no Subject"))?
            .to_owned();
        let mut text = None;
        let mut html = None;
        for part in &message.parts {
            match &part.body {
                PartType::Text(body) if text.is_none() && is_plain(part) => {
                    text = Some(line_feeds(body));
                }
                PartType::Html(body) if html.is_none() => html = Some(line_feeds(body)),
                _ => {}
            }
        }
        Ok(Self {
            message_id,
            date,
            from,
            from_name,
            to,
            subject,
            text: text.ok_or_else(|| invalid("no text/plain part"))?,
            html,
        })
    }
}

/// A part without a content type is `text/plain` (RFC 2045).
fn is_plain(part: &mail_parser::MessagePart<'_>) -> bool {
    use mail_parser::MimeHeaders;
    part.content_type().is_none_or(|content_type| {
        content_type.ctype().eq_ignore_ascii_case("text")
            && content_type
                .subtype()
                .is_none_or(|subtype| subtype.eq_ignore_ascii_case("plain"))
    })
}

fn line_feeds(body: &str) -> String {
    body.replace("\r\n", "\n")
}

impl Outbox {
    /// Opens (creating if missing) the outbox in `folder`; mails go out from `from`.
    pub fn open(folder: &Path, from: Sender) -> Result<Self, MailError> {
        for sub in ["tmp", "new", "cur"] {
            let path = folder.join(sub);
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(&path)
                .map_err(|error| io_error("creating", &path, &error))?;
        }
        // The new folders' entries are durable before the first mail relies on them.
        sync_dir(folder).map_err(|error| io_error("syncing", folder, &error))?;
        Ok(Self {
            folder: folder.to_path_buf(),
            from,
        })
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Every mail in the outbox, oldest first.
    pub async fn messages(&self) -> Result<Vec<ReceivedMail>, MailError> {
        let folder = self.folder.clone();
        blocking(move || read_all(&folder)).await
    }

    /// The mails addressed to `to`, oldest first.
    pub async fn messages_to(&self, to: &Email) -> Result<Vec<ReceivedMail>, MailError> {
        let mut mails = self.messages().await?;
        mails.retain(|mail| {
            mail.to
                .iter()
                .any(|address| address.eq_ignore_ascii_case(to.as_str()))
        });
        Ok(mails)
    }
}

#[async_trait]
impl Mailer for Outbox {
    async fn send(&self, mail: &Mail) -> Result<SentMail, MailError> {
        let now = Utc::now();
        let message_id = mime::new_message_id(&self.from);
        let raw = mime::render(mail, &self.from, &message_id, now);
        // The id's local part is a UUID in hex: unique, and safe in a file name.
        let unique = message_id.split('@').next().unwrap_or_default();
        let name = format!("{}.{unique}.{HOST}.eml", now.timestamp());
        let folder = self.folder.clone();
        blocking(move || deliver(&folder, &name, &raw)).await?;
        tracing::info!(%message_id, "mail written to the outbox");
        Ok(SentMail { message_id })
    }
}

/// Writes one message into `tmp/`, then moves it into `new/` (see the module docs).
fn deliver(folder: &Path, name: &str, raw: &[u8]) -> Result<(), MailError> {
    let temporary = folder.join("tmp").join(name);
    let delivered = folder.join("new").join(name);
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(raw)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &delivered)?;
        sync_dir(&folder.join("new"))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(|error| io_error("writing", &delivered, &error))
}

fn read_all(folder: &Path) -> Result<Vec<ReceivedMail>, MailError> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        let dir = folder.join(sub);
        let entries = std::fs::read_dir(&dir).map_err(|error| io_error("listing", &dir, &error))?;
        for entry in entries {
            let entry = entry.map_err(|error| io_error("listing", &dir, &error))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Maildir: dot files are not messages; in `cur/` a client appends `:2,<flags>`.
            if name.starts_with('.') {
                continue;
            }
            let key = name.split(':').next().unwrap_or_default().to_owned();
            files.push((key, entry.path()));
        }
    }
    files.sort();
    let mut mails = Vec::with_capacity(files.len());
    for (_, path) in files {
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            // A mail client moved it from new/ to cur/ meanwhile; it is read next time.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(io_error("reading", &path, &error)),
        };
        let mail = ReceivedMail::parse(&raw)
            .map_err(|error| MailError::Unavailable(format!("{}: {error}", path.display())))?;
        mails.push(mail);
    }
    Ok(mails)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn io_error(what: &str, path: &Path, error: &std::io::Error) -> MailError {
    MailError::Unavailable(format!("{what} {}: {error}", path.display()))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, MailError> + Send + 'static,
) -> Result<T, MailError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| MailError::Unavailable(format!("outbox task failed: {error}")))?
}
