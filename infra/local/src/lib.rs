//! The local runner: every function's routes merged into one axum app over the
//! embedded adapters (SQLite, files), served on one address, and the event functions
//! driven in-process (the import worker from the embedded queue, the schedules). Same
//! handlers, same code paths as in Lambda.

use anyhow::Context;
use api::{AccessTokens, Authenticator, ClientIp, TokenSettings};
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use domain::accounts::Email;
use domain::clock::{Clock, SystemClock};
use domain::mail::{Mailer, Sender};
use domain::portfolio::PortfolioService;
use domain::queue::{Queue, ReceiveRequest};
use domain::rates::RateService;
use domain::rates::feed::RateFeed;
use domain::retention::{RetentionPolicy, RetentionService};
use domain::sessions::SessionService;
use domain::store::Table;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Issuer and audience of locally issued tokens.
pub const LOCAL_ISSUER: &str = "http://leasedesk.local";
pub const AUDIENCE: &str = "leasedesk-api";

#[derive(Clone)]
pub struct Config {
    /// Folder for the database and the signing key; created if missing.
    pub data_dir: PathBuf,
    pub access_token_ttl: chrono::Duration,
    /// The rate sources polled by the scheduler and `leasedesk rates refresh`.
    pub feeds: Vec<Arc<dyn RateFeed>>,
    /// The address clients reach the runner at, for presigned upload URLs
    /// (`http://127.0.0.1:3000` unless set).
    pub public_url: String,
    /// Where Microsoft Entra ID is reached for single sign-on; tests point it at a
    /// provider on loopback.
    pub entra_authority: String,
    /// How long an organization may stay inactive before the retention job removes it.
    pub retention: RetentionPolicy,
    /// The name server that checks the TXT records proving organizations' domains
    /// (`LEASEDESK_DNS_SERVER`); the system's (`/etc/resolv.conf`) when unset.
    pub dns_server: Option<SocketAddr>,
    pub dns: adapters::dns::DnsSettings,
}

impl Config {
    /// The stack over `data_dir`, polling the public rate sources.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            access_token_ttl: chrono::Duration::minutes(15),
            feeds: Vec::new(),
            public_url: "http://127.0.0.1:3000".into(),
            entra_authority: domain::sso::ENTRA_AUTHORITY.into(),
            retention: RetentionPolicy::default(),
            dns_server: None,
            dns: adapters::dns::DnsSettings::default(),
        }
    }

    /// Asks `server` (a name server on loopback, in tests) instead of the system's.
    pub fn with_dns_server(mut self, server: SocketAddr) -> Self {
        self.dns_server = Some(server);
        self
    }

    pub fn with_dns_settings(mut self, settings: adapters::dns::DnsSettings) -> Self {
        self.dns = settings;
        self
    }

    pub fn with_entra_authority(mut self, authority: impl Into<String>) -> Self {
        self.entra_authority = authority.into();
        self
    }

    pub fn with_retention(mut self, policy: RetentionPolicy) -> Self {
        self.retention = policy;
        self
    }

    pub fn with_public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = url.into();
        self
    }

    pub fn with_feeds(mut self, feeds: Vec<Arc<dyn RateFeed>>) -> Self {
        self.feeds = feeds;
        self
    }
}

/// Who the local stack's mails come from.
pub const LOCAL_MAIL_FROM: &str = "no-reply@leasedesk.localhost";

/// The name of the import queue in `queue.sqlite3`, and of its dead-letter queue.
pub const IMPORT_QUEUE: &str = "imports";
pub const IMPORT_DEAD_LETTER_QUEUE: &str = "imports-dead-letter";

/// The assembled stack.
pub struct Stack {
    pub app: Router,
    pub table: Arc<dyn Table>,
    pub rates: Arc<RateService>,
    pub portfolio: Arc<PortfolioService>,
    /// Import jobs waiting for the worker (`queue.sqlite3` in the data folder).
    pub import_queue: Arc<dyn Queue>,
    pub import_worker: Arc<contracts::ImportWorker>,
    /// The daily retention job over the same table, files, secrets and outbox.
    pub retention: Arc<RetentionService>,
}

/// Opens the embedded stores in `config.data_dir` and builds the app.
pub fn build(config: &Config) -> anyhow::Result<Stack> {
    build_with_clock(config, Arc::new(SystemClock))
}

pub fn build_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Stack> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data folder {}", config.data_dir.display()))?;
    let table: Arc<dyn Table> = Arc::new(
        adapters::embedded::SqliteTable::open(&config.data_dir.join("leasedesk.sqlite3"))
            .context("opening the embedded table")?,
    );
    let secret = signing_secret(&config.data_dir)?;
    let blobs = Arc::new(
        adapters::embedded::FolderBlobs::open(&config.data_dir.join("blobs"), &config.public_url)
            .context("opening the embedded blob store")?,
    );
    let import_queue: Arc<dyn Queue> = Arc::new(
        adapters::embedded::SqliteQueue::open(
            &config.data_dir.join("queue.sqlite3"),
            IMPORT_QUEUE,
            Some(adapters::embedded::DeadLetter {
                queue: IMPORT_DEAD_LETTER_QUEUE.into(),
                max_receives: contracts::MAX_DELIVERIES,
            }),
        )
        .context("opening the embedded queue")?,
    );
    let rates = Arc::new(RateService::new(
        table.clone(),
        clock.clone(),
        config.feeds.clone(),
    ));
    let tokens = AccessTokens::new(
        &secret,
        TokenSettings {
            issuer: LOCAL_ISSUER.into(),
            audience: AUDIENCE.into(),
            access_ttl: config.access_token_ttl,
        },
        clock.clone(),
    )?;
    let auth = Arc::new(Authenticator::new(
        tokens,
        SessionService::new(table.clone(), clock.clone()),
        domain::modules::ModuleService::new(table.clone(), clock.clone()),
    ));

    // Mail goes into a maildir folder: open `outbox/new/*.eml` in any mail program.
    let sender = Sender::new(
        Email::parse(LOCAL_MAIL_FROM).map_err(|_| anyhow::anyhow!("the sender address"))?,
        Some("Leasedesk"),
    )?;
    let outbox: Arc<dyn Mailer> = Arc::new(
        adapters::embedded::Outbox::open(&config.data_dir.join("outbox"), sender)
            .context("opening the mail outbox")?,
    );

    // Single sign-on: client secrets in owner-only files; identity providers on
    // loopback may speak plain http here (a provider started for a test or a demo).
    // The relying party checks ID tokens against the real time: providers sign with it.
    let oidc = adapters::oidc::OidcRelyingParty::new(
        adapters::oidc::OidcSettings {
            entra_authority: config.entra_authority.clone(),
            allow_http_loopback: true,
            ..adapters::oidc::OidcSettings::default()
        },
        Arc::new(SystemClock),
    )?;
    let vault: Arc<dyn domain::secrets::SecretVault> = Arc::new(
        adapters::embedded::FolderSecrets::open(&config.data_dir.join("secrets"))
            .context("opening the secret folder")?,
    );
    // Domain verification asks the system's name servers, or the one configured.
    let dns = match config.dns_server {
        Some(server) => adapters::dns::HickoryDns::with_name_server(server, config.dns),
        None => adapters::dns::HickoryDns::from_system_conf(config.dns),
    }
    .context("setting up the DNS resolver (LEASEDESK_DNS_SERVER names a name server)")?;
    let sso = auth::SsoPorts {
        vault: vault.clone(),
        oidc: Arc::new(oidc),
        secret_prefix: String::new(),
        dns: Arc::new(dns),
    };

    let routes = Router::new()
        .merge(auth::router(auth::AuthState::new(
            table.clone(),
            auth.clone(),
            clock.clone(),
            outbox.clone(),
            &config.public_url,
            sso,
        )))
        .merge(contracts::router(
            contracts::ContractsState::new(table.clone(), auth.clone(), clock.clone())
                .with_import_jobs(blobs.clone(), import_queue.clone()),
        ))
        .merge(rates::router(rates::RatesState::new(rates.clone(), auth)))
        .merge(apidoc::router());
    // The presigned upload and download URLs. Their handler reads the body with its own
    // limit, so the API's 64 KiB limit for extracted bodies does not apply to them.
    let routes = routes.merge(adapters::embedded::blob_routes(
        blobs.clone(),
        contracts::MAX_IMPORT_BYTES,
    ));
    let app = api::service(routes).layer(middleware::from_fn(client_ip));
    let retention = Arc::new(RetentionService::new(
        table.clone(),
        clock.clone(),
        blobs.clone(),
        vault,
        outbox,
        Arc::new(api::mail::RetentionWarnings),
        config.retention,
    ));
    let import_worker = Arc::new(contracts::ImportWorker::new(
        table.clone(),
        clock.clone(),
        blobs,
    ));
    let portfolio = Arc::new(PortfolioService::new(
        table.clone(),
        clock,
        PortfolioService::standard_defaults(),
    ));
    Ok(Stack {
        app,
        table,
        rates,
        portfolio,
        import_queue,
        import_worker,
        retention,
    })
}

/// How long a job's message stays invisible while the worker runs it: longer than a
/// large import takes, so it is not delivered again meanwhile.
const IMPORT_VISIBILITY: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// When a job failed for now (the store was busy), how soon it is tried again.
const IMPORT_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Feeds the import worker from the embedded queue as SQS feeds the Lambda: the same
/// event shape and the same `contracts::handle`; messages that succeed are deleted, the
/// failures come back after [`IMPORT_RETRY_AFTER`] (and go to the dead-letter queue
/// after [`contracts::MAX_DELIVERIES`]). Ends when `stop` turns true (or is dropped); a
/// job cut off then is made visible again at once, and the next start resumes it.
pub fn spawn_import_worker(
    queue: Arc<dyn Queue>,
    worker: Arc<contracts::ImportWorker>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let request = ReceiveRequest::new(1, IMPORT_VISIBILITY, domain::queue::MAX_WAIT);
        while !*stop.borrow() {
            let received = tokio::select! {
                _ = stop.changed() => break,
                received = queue.receive(request) => received,
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "import worker: the queue failed; retrying");
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    }
                }
            };
            if messages.is_empty() {
                continue;
            }
            let event = contracts::SqsEvent {
                records: messages
                    .iter()
                    .map(|message| contracts::SqsMessage {
                        message_id: message.id.clone(),
                        receipt_handle: Some(message.receipt.clone()),
                        body: message.body.clone(),
                        attributes: [(
                            "ApproximateReceiveCount".to_owned(),
                            message.receive_count.to_string(),
                        )]
                        .into(),
                        event_source: Some("aws:sqs".into()),
                        event_source_arn: None,
                    })
                    .collect(),
            };
            let response = tokio::select! {
                _ = stop.changed() => {
                    for message in &messages {
                        let _ = queue.change_visibility(&message.receipt, std::time::Duration::ZERO).await;
                    }
                    break;
                }
                response = contracts::handle(event, &worker) => response,
            };
            for message in &messages {
                let failed = response
                    .batch_item_failures
                    .iter()
                    .any(|failure| failure.item_identifier == message.id);
                let settled = if failed {
                    queue
                        .change_visibility(&message.receipt, IMPORT_RETRY_AFTER)
                        .await
                } else {
                    queue.delete(&message.receipt).await
                };
                if let Err(error) = settled {
                    tracing::warn!(%error, message = %message.id, "import worker: could not settle a message");
                }
            }
        }
    })
}

/// Polls the rate sources now and then every `every`, as the schedule does in AWS.
/// Without a network each run logs one warning and the last known values stay.
pub fn spawn_rates_scheduler(
    rates: Arc<RateService>,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = rates::poll(&rates, None).await {
                tracing::warn!(%error, "rates: the poll failed; keeping the last known values");
            }
        }
    })
}

/// Moves every dashboard to the new day shortly after each midnight (UTC, the day the
/// figures are kept by), as the nightly schedule does in AWS. A dashboard read first on
/// a new day rolls itself anyway; this keeps that read fast.
pub fn spawn_portfolio_roll(portfolio: Arc<PortfolioService>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(until_tomorrow_at(0, 5)).await;
            match portfolio.roll_all().await {
                Ok(rolled) => tracing::info!(rolled, "portfolio: nightly roll"),
                Err(error) => tracing::warn!(%error, "portfolio: the nightly roll failed"),
            }
        }
    })
}

/// Runs the retention job every day at 03:00 UTC, as the schedule does in AWS (the run
/// logs what it did). A run cut off by a stop is finished by the next.
pub fn spawn_retention(retention: Arc<RetentionService>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(until_tomorrow_at(3, 0)).await;
            if let Err(error) =
                auth::retention::handle_schedule(&retention, &serde_json::Value::Null).await
            {
                tracing::warn!(%error, "retention: the daily run did not finish everything");
            }
        }
    })
}

/// How long until tomorrow's `hour:minute` UTC (at least a minute, so a clock that jumps
/// cannot make a loop spin).
fn until_tomorrow_at(hour: u32, minute: u32) -> std::time::Duration {
    let now = chrono::Utc::now();
    let next = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(hour, minute, 0)
        .map(|at| at.and_utc())
        .unwrap_or(now);
    let wait = (next - now).to_std().unwrap_or_default();
    wait.max(std::time::Duration::from_secs(60))
}

/// The key that signs local tokens: made once, kept in the data folder (owner-only), so
/// tokens survive a restart.
fn signing_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("jwt-signing-key");
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= AccessTokens::MIN_SECRET_BYTES => return Ok(secret),
        Ok(_) => anyhow::bail!(
            "{} is too short; delete it to make a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut secret = vec![0u8; 48];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, &secret)?;
    file.sync_all()?;
    Ok(secret)
}

/// Puts the socket's peer address on each request, as API Gateway does in Lambda.
async fn client_ip(mut request: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let ip = ClientIp(peer.ip().to_string());
        request.extensions_mut().insert(ip);
    }
    next.run(request).await
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight
/// finish. Every acknowledged write is already durable (SQLite commits synchronously).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// A stack running in the background on 127.0.0.1, with its import worker, for tests
/// and benchmarks.
pub struct Running {
    pub url: String,
    /// The retention job over this stack's data, for tests to run when they choose.
    pub retention: Arc<RetentionService>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_worker: tokio::sync::watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts the stack on a free port.
    pub async fn start(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let stack = build_with_clock(&config.clone().with_public_url(&url), clock)?;
        let (stop_worker, worker_stopped) = tokio::sync::watch::channel(false);
        let worker = spawn_import_worker(
            stack.import_queue.clone(),
            stack.import_worker.clone(),
            worker_stopped,
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, stack.app, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            url,
            retention: stack.retention,
            stop: Some(stop),
            task,
            stop_worker,
            worker,
        })
    }

    /// Stops the worker and accepting, finishes requests in flight and closes the
    /// stores.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop_worker.send(true);
        (&mut self.worker).await?;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.worker.abort();
        self.task.abort();
    }
}
