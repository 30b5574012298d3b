//! The mail port's conformance suite: every test is written once against a [`Mailer`]
//! and what it delivered, and run against both adapters — the maildir outbox (read back
//! from its folder) and SES (the real SDK against a shared `moto_server` on loopback;
//! what SES received is read from moto's model dump, `GET /moto-api/data.json`, whose
//! `ses.RawMessage` entries hold each accepted message as sent).
//!
//! Both adapters send the same MIME message, so both are parsed with
//! [`ReceivedMail::parse`] and held to the same expectations: subjects, bodies and the
//! sender's name in Swedish, Lithuanian, Latvian, Estonian, Finnish, Danish and Norwegian
//! come back exactly as given.

mod support;

use std::sync::Arc;

use adapters::aws::SesMailer;
use adapters::embedded::{Outbox, ReceivedMail};
use async_trait::async_trait;
use domain::accounts::Email;
use domain::mail::{Mail, MailError, Mailer, Sender, SentMail};
use support::unique_name;

fn email(address: &str) -> Email {
    Email::parse(address).unwrap()
}

/// An address no other test (or earlier run against the same moto) sends to.
fn recipient(label: &str) -> Email {
    email(&format!("{}@example.se", unique_name(label)))
}

const SENDER_NAME: &str = "Leasedesk Göteborg";

fn sender(address: &str) -> Sender {
    Sender::new(email(address), Some(SENDER_NAME)).unwrap()
}

/// What a mailer delivered for one [`SentMail`]: the message as it arrived, and the
/// recipients it was delivered to.
struct Delivered {
    raw: Vec<u8>,
    recipients: Vec<String>,
}

impl Delivered {
    fn mail(&self) -> ReceivedMail {
        ReceivedMail::parse(&self.raw).unwrap()
    }
}

/// A mailer under test and the way to look into what it delivered.
#[async_trait]
trait Harness: Send + Sync {
    fn mailer(&self) -> &dyn Mailer;
    fn sender(&self) -> &Sender;
    /// The message `sent` to `to`; panics if it was not delivered to `to`.
    async fn delivered(&self, sent: &SentMail, to: &Email) -> Delivered;
    /// The same kind of mailer with its backend out of reach.
    async fn unreachable(&self) -> Arc<dyn Mailer>;
}

async fn send(harness: &dyn Harness, mail: &Mail) -> (SentMail, ReceivedMail, Delivered) {
    let sent = harness
        .mailer()
        .send(mail)
        .await
        .unwrap_or_else(|error| panic!("sending {:?}: {error}", mail.subject()));
    let delivered = harness.delivered(&sent, mail.to()).await;
    (sent, delivered.mail(), delivered)
}

// ---------------------------------------------------------------------------------------
// The tests

async fn a_non_ascii_text_mail_arrives_intact(harness: &dyn Harness) {
    let to = recipient("swedish");
    let subject = "Välkommen till Leasedesk, Åsa Öberg – din inbjudan från Skåne Leasing AB";
    let text = "Hej Åsa!\n\n\
                Örjan Ängström har bjudit in dig till Skåne Leasing AB i Leasedesk.\n\
                Tacka ja här: https://app.leasedesk.se/invite?token=abc123&lang=sv\n\n\
                Hälsningar\nLeasedesk\n";
    let mail = Mail::new(to.clone(), subject, text).unwrap();
    let (_, received, delivered) = send(harness, &mail).await;
    assert_eq!(received.subject, subject);
    assert_eq!(received.text, text);
    assert_eq!(received.html, None);
    assert_eq!(received.to, vec![to.as_str().to_owned()]);
    assert!(
        delivered
            .recipients
            .iter()
            .all(|address| address.contains(to.as_str())),
        "{:?}",
        delivered.recipients
    );
    assert_eq!(received.from, harness.sender().address().as_str());
    assert_eq!(received.from_name.as_deref(), Some(SENDER_NAME));
    let age = chrono::Utc::now() - received.date;
    assert!(age.num_seconds().abs() < 120, "Date {}", received.date);
}

async fn an_html_mail_carries_both_parts(harness: &dyn Harness) {
    let to = recipient("baltic");
    let subject = "Slaptažodžio atkūrimas – Paroles atiestatīšana – Parooli lähtestamine";
    let text = "Sveiki,\n\nnorėdami pasirinkti naują slaptažodį, atidarykite šią nuorodą:\n\
                https://app.leasedesk.se/reset?token=ž-ų-ė\n\n\
                Labdien! Ģimenes uzņēmums ķēdē: ļoti ņipri.\nTere! Jõulud, šokolaad, žürii.\n";
    let html = "<!DOCTYPE html><html lang=\"lt\"><body>\
                <p>Sveiki,</p><p><a href=\"https://app.leasedesk.se/reset?token=1&amp;lang=lt\">\
                Pasirinkite naują slaptažodį</a></p><p>Ģimenes uzņēmums ķēdē &lt;SIA&gt;</p>\
                </body></html>";
    let mail = Mail::new(to.clone(), subject, text)
        .unwrap()
        .with_html(html)
        .unwrap();
    let (_, received, delivered) = send(harness, &mail).await;
    assert_eq!(received.subject, subject);
    assert_eq!(received.text, text);
    assert_eq!(received.html.as_deref(), Some(html));
    let raw = String::from_utf8(delivered.raw).unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: multipart/alternative"),
        "{head}"
    );
}

/// Long subjects are folded over several encoded words; none may lose or split a
/// character, whatever the language.
async fn long_subjects_in_every_language_survive_folding(harness: &dyn Harness) {
    let subjects = [
        "Påminnelse: Skåne Leasing AB:s avtal för truckar och släpvagnar löper ut – förläng före årsskiftet, annars återlämnas fordonen",
        "Påmindelse: Ærø Finans ApS' aftale om gaffeltrucks udløber – forlæng før årsskiftet, ellers skal køretøjerne afleveres på Ærø",
        "Påminnelse: Tromsø Leasing AS sin avtale for gaffeltrucker løper ut – forleng før nyttår, ellers må kjøretøyene leveres tilbake",
        "Muistutus: Äänekosken Leasing Oy:n trukkisopimus päättyy – jatka ennen vuodenvaihdetta, muuten ajoneuvot palautetaan Jyväskylään",
        "Priminimas: UAB „Šiaulių lizingas“ krautuvų sutartis baigiasi – pratęskite iki metų pabaigos, kitaip transporto priemonės grąžinamos",
        "Atgādinājums: SIA „Ģērķu Līzings“ autoiekrāvēju līgums beidzas – pagariniet līdz gada beigām, citādi transportlīdzekļi jāatdod",
        "Meeldetuletus: Pärnu Liising OÜ tõstukite leping lõpeb – pikendage enne aastavahetust, muidu tuleb sõidukid tagastada Tõrvas",
        "Quotes \"and\" =?utf-8?q?not_an_encoded_word?= <b>not html</b> & 100% ASCII-only, yet long enough to need folding somewhere here",
    ];
    let to = recipient("folding");
    for subject in subjects {
        let mail = Mail::new(to.clone(), subject, format!("{subject}\n")).unwrap();
        let (_, received, _) = send(harness, &mail).await;
        assert_eq!(received.subject, subject);
        assert_eq!(received.text, format!("{subject}\n"));
    }
}

/// The message on the wire is 7-bit ASCII with CRLF line ends and the headers every
/// receiving server expects.
async fn the_message_is_plain_rfc5322(harness: &dyn Harness) {
    let to = recipient("wire");
    let mail = Mail::new(to.clone(), "Ąžuolas ir ąžuolėlis", "Šaltinis: ūkis.\n")
        .unwrap()
        .with_html("<p>Šaltinis: ūkis.</p>")
        .unwrap();
    let (_, _, delivered) = send(harness, &mail).await;
    assert!(delivered.raw.is_ascii(), "the message is not 7-bit");
    let raw = String::from_utf8(delivered.raw).unwrap();
    assert!(
        !raw.replace("\r\n", "").contains(['\r', '\n']),
        "bare CR or LF"
    );
    assert!(
        raw.split("\r\n").all(|line| line.len() <= 998),
        "line over 998"
    );
    let head = raw.split("\r\n\r\n").next().unwrap();
    let names: Vec<String> = head
        .split("\r\n")
        .filter(|line| !line.starts_with([' ', '\t']))
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    for required in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "auto-submitted",
    ] {
        assert_eq!(
            names.iter().filter(|name| *name == required).count(),
            1,
            "{required} in {head}"
        );
    }
    assert!(head.contains("=?utf-8?"), "no encoded words in {head}");
}

async fn each_mail_is_delivered_once_under_its_own_id(harness: &dyn Harness) {
    let to = recipient("several");
    let mut ids = Vec::new();
    for number in 1..=3 {
        let subject = format!("Avtal {number} av 3 – förfaller");
        let mail = Mail::new(
            to.clone(),
            subject.as_str(),
            format!("Avtal nummer {number}."),
        )
        .unwrap();
        let (sent, received, _) = send(harness, &mail).await;
        assert!(!sent.message_id.trim().is_empty());
        assert_eq!(received.subject, subject);
        ids.push(sent.message_id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
}

async fn an_unreachable_backend_is_unavailable(harness: &dyn Harness) {
    let mailer = harness.unreachable().await;
    let mail = Mail::new(recipient("unreachable"), "Nobody home", "Nobody home.").unwrap();
    match mailer.send(&mail).await {
        Err(error @ MailError::Unavailable(_)) => assert!(error.is_retryable()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The adapters

struct OutboxHarness {
    dir: tempfile::TempDir,
    outbox: Outbox,
}

fn outbox() -> OutboxHarness {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), outbox_sender().clone()).unwrap();
    OutboxHarness { dir, outbox }
}

/// Every message file in the outbox's `new/` and `cur/`.
fn outbox_files(folder: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = ["new", "cur"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(folder.join(sub)).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[async_trait]
impl Harness for OutboxHarness {
    fn mailer(&self) -> &dyn Mailer {
        &self.outbox
    }

    fn sender(&self) -> &Sender {
        outbox_sender()
    }

    async fn delivered(&self, sent: &SentMail, to: &Email) -> Delivered {
        let for_recipient = self.outbox.messages_to(to).await.unwrap();
        let matching: Vec<_> = for_recipient
            .iter()
            .filter(|mail| mail.message_id == sent.message_id)
            .collect();
        assert_eq!(matching.len(), 1, "{} delivered to {to:?}", sent.message_id);
        let raw = outbox_files(self.dir.path())
            .into_iter()
            .map(|path| std::fs::read(path).unwrap())
            .find(|raw| ReceivedMail::parse(raw).unwrap().message_id == sent.message_id)
            .unwrap();
        Delivered {
            raw,
            recipients: matching[0].to.clone(),
        }
    }

    async fn unreachable(&self) -> Arc<dyn Mailer> {
        // An outbox whose `new/` became a file: the rename that delivers a mail fails.
        let dir = self.dir.path().join("broken");
        let outbox = Outbox::open(&dir, outbox_sender().clone()).unwrap();
        std::fs::remove_dir(dir.join("new")).unwrap();
        std::fs::write(dir.join("new"), b"not a folder").unwrap();
        Arc::new(outbox)
    }
}

fn outbox_sender() -> &'static Sender {
    static SENDER: std::sync::OnceLock<Sender> = std::sync::OnceLock::new();
    SENDER.get_or_init(|| sender("no-reply@leasedesk.se"))
}

struct SesHarness {
    mailer: SesMailer,
}

const SES_SENDER: &str = "no-reply@mail.leasedesk.se";

/// An SES mailer whose sender moto knows as verified (the identity is created once per
/// test binary through the SES v2 API, as an operator would verify it).
async fn ses() -> SesHarness {
    static VERIFIED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    VERIFIED
        .get_or_init(|| async {
            support::sesv2_client()
                .create_email_identity()
                .email_identity(SES_SENDER)
                .send()
                .await
                .unwrap_or_else(|e| panic!("verifying the sender in moto: {e:?}"));
        })
        .await;
    SesHarness {
        mailer: SesMailer::new(support::sesv2_client(), sender(SES_SENDER)),
    }
}

/// One message SES (moto) accepted, as its model dump shows it.
#[derive(serde::Deserialize)]
struct MotoRawMessage {
    id: String,
    destinations: Vec<String>,
    raw_data: String,
}

/// Every raw message moto's SES accepted, from `GET /moto-api/data.json`.
async fn moto_raw_messages() -> Vec<MotoRawMessage> {
    let url = format!("{}/moto-api/data.json", support::moto().endpoint);
    let dump: serde_json::Value = reqwest::get(&url)
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_value(dump["ses"]["RawMessage"].clone())
        .unwrap_or_else(|e| panic!("moto's ses.RawMessage dump: {e}"))
}

#[async_trait]
impl Harness for SesHarness {
    fn mailer(&self) -> &dyn Mailer {
        &self.mailer
    }

    fn sender(&self) -> &Sender {
        self.mailer.sender()
    }

    async fn delivered(&self, sent: &SentMail, to: &Email) -> Delivered {
        let message = moto_raw_messages()
            .await
            .into_iter()
            .find(|message| message.id == sent.message_id)
            .unwrap_or_else(|| panic!("SES has no message {}", sent.message_id));
        assert!(
            message
                .destinations
                .iter()
                .any(|address| address.contains(to.as_str())),
            "{:?} not among {:?}",
            to,
            message.destinations
        );
        Delivered {
            raw: message.raw_data.into_bytes(),
            recipients: message.destinations,
        }
    }

    async fn unreachable(&self) -> Arc<dyn Mailer> {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = support::sesv2_client_without_retries(&format!("http://127.0.0.1:{port}"));
        Arc::new(SesMailer::new(client, sender(SES_SENDER)))
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod outbox {
            $(
                #[tokio::test]
                async fn $name() {
                    let harness = super::outbox();
                    super::$name(&harness).await;
                }
            )*
        }
        mod ses {
            $(
                #[tokio::test]
                async fn $name() {
                    let harness = super::ses().await;
                    super::$name(&harness).await;
                }
            )*
        }
    };
}

conformance!(
    a_non_ascii_text_mail_arrives_intact,
    an_html_mail_carries_both_parts,
    long_subjects_in_every_language_survive_folding,
    the_message_is_plain_rfc5322,
    each_mail_is_delivered_once_under_its_own_id,
    an_unreachable_backend_is_unavailable,
);

// ---------------------------------------------------------------------------------------
// SES's own refusals

#[tokio::test]
async fn ses_rejects_a_sender_that_is_not_verified() {
    let harness = ses().await;
    let mailer = SesMailer::new(
        support::sesv2_client(),
        sender(&format!("{}@unverified.example.se", unique_name("nobody"))),
    );
    let to = recipient("unverified");
    let mail = Mail::new(to.clone(), "Från okänd avsändare", "Hej!").unwrap();
    match mailer.send(&mail).await {
        Err(error @ MailError::Rejected(_)) => {
            assert!(!error.is_retryable());
            // moto: "Did not have authority to send from email …" (SES: "Email
            // address is not verified").
            assert!(
                error.to_string().contains("unverified.example.se"),
                "{error}"
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    let kept = moto_raw_messages().await.into_iter().any(|message| {
        message
            .destinations
            .iter()
            .any(|address| address.contains(to.as_str()))
    });
    assert!(!kept, "SES kept a rejected mail");
    // The verified sender still gets through.
    let (_, received, _) = send(
        &harness,
        &Mail::new(recipient("verified"), "Hej", "Hej!").unwrap(),
    )
    .await;
    assert_eq!(received.subject, "Hej");
}

// ---------------------------------------------------------------------------------------
// The outbox's own guarantees

/// A mail written is on disk, owner-only, in `new/` under a maildir name, and still
/// there after the outbox is reopened; nothing is left in `tmp/`.
#[tokio::test]
async fn outbox_keeps_mail_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let to = recipient("restart");
    let sent = {
        let outbox = Outbox::open(dir.path(), outbox_sender().clone()).unwrap();
        let mail = Mail::new(to.clone(), "Lösenordsåterställning", "Länk: https://x.se/r").unwrap();
        outbox.send(&mail).await.unwrap()
    };
    let outbox = Outbox::open(dir.path(), outbox_sender().clone()).unwrap();
    let mails = outbox.messages_to(&to).await.unwrap();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].message_id, sent.message_id);
    assert_eq!(mails[0].subject, "Lösenordsåterställning");

    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    let files = outbox_files(dir.path());
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    let unique = sent.message_id.split('@').next().unwrap();
    let parts: Vec<&str> = name.split('.').collect();
    assert_eq!(parts.len(), 4, "{name}");
    assert!(parts[0].parse::<i64>().is_ok(), "{name}");
    assert_eq!((parts[1], parts[2], parts[3]), (unique, "leasedesk", "eml"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

/// The reader sorts by sending order, finds mails a client moved to `cur/`, keeps
/// recipients apart, and skips maildir dot files.
#[tokio::test]
async fn outbox_reader_follows_maildir() {
    let harness = outbox();
    let anna = recipient("anna");
    let bo = recipient("bo");
    for (to, subject) in [
        (&anna, "Första"),
        (&bo, "Till Bo"),
        (&anna, "Andra"),
        (&anna, "Tredje"),
    ] {
        harness
            .outbox
            .send(&Mail::new(to.clone(), subject, "Text.").unwrap())
            .await
            .unwrap();
    }
    let subjects = |mails: Vec<ReceivedMail>| -> Vec<String> {
        mails.into_iter().map(|mail| mail.subject).collect()
    };
    assert_eq!(
        subjects(harness.outbox.messages_to(&anna).await.unwrap()),
        ["Första", "Andra", "Tredje"]
    );
    assert_eq!(
        subjects(harness.outbox.messages_to(&bo).await.unwrap()),
        ["Till Bo"]
    );
    assert!(
        harness
            .outbox
            .messages_to(&recipient("nobody"))
            .await
            .unwrap()
            .is_empty()
    );

    // A mail client marks the first mail seen: it moves to cur/ with flags.
    let dir = harness.dir.path();
    let first = outbox_files(dir).into_iter().next().unwrap();
    let name = first.file_name().unwrap().to_str().unwrap().to_owned();
    std::fs::rename(&first, dir.join("cur").join(format!("{name}:2,S"))).unwrap();
    std::fs::write(dir.join("new/.hidden"), b"not a mail").unwrap();
    assert_eq!(
        subjects(harness.outbox.messages().await.unwrap()),
        ["Första", "Till Bo", "Andra", "Tredje"]
    );
}

#[tokio::test]
async fn outbox_reader_refuses_a_file_that_is_not_a_mail() {
    let harness = outbox();
    std::fs::write(harness.dir.path().join("new/1.x.host"), b"\x00\x01 garbage").unwrap();
    assert!(matches!(
        harness.outbox.messages().await,
        Err(MailError::Unavailable(_))
    ));
}
