//! The local runner: every function's routes merged into one axum app over the
//! embedded adapters (SQLite, files), served on one address. Same handlers, same code
//! paths as in Lambda.

use anyhow::Context;
use api::{AccessTokens, ClientIp, TokenSettings};
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use domain::clock::{Clock, SystemClock};
use domain::portfolio::PortfolioService;
use domain::rates::RateService;
use domain::rates::feed::RateFeed;
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
}

impl Config {
    /// The stack over `data_dir`, polling the public rate sources.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            access_token_ttl: chrono::Duration::minutes(15),
            feeds: Vec::new(),
        }
    }

    pub fn with_feeds(mut self, feeds: Vec<Arc<dyn RateFeed>>) -> Self {
        self.feeds = feeds;
        self
    }
}

/// The assembled stack.
pub struct Stack {
    pub app: Router,
    pub table: Arc<dyn Table>,
    pub rates: Arc<RateService>,
    pub portfolio: Arc<PortfolioService>,
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
    let rates = Arc::new(RateService::new(
        table.clone(),
        clock.clone(),
        config.feeds.clone(),
    ));
    let tokens = Arc::new(AccessTokens::new(
        &secret,
        TokenSettings {
            issuer: LOCAL_ISSUER.into(),
            audience: AUDIENCE.into(),
            access_ttl: config.access_token_ttl,
        },
        clock.clone(),
    )?);

    let routes = Router::new()
        .merge(auth::router(auth::AuthState::new(
            table.clone(),
            tokens.clone(),
            clock.clone(),
        )))
        .merge(contracts::router(contracts::ContractsState::new(
            table.clone(),
            tokens.clone(),
            clock.clone(),
        )))
        .merge(rates::router(rates::RatesState::new(rates.clone(), tokens)))
        .merge(apidoc::router());
    let app = api::service(routes).layer(middleware::from_fn(client_ip));
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
            let now = chrono::Utc::now();
            let next = (now.date_naive() + chrono::Days::new(1))
                .and_hms_opt(0, 5, 0)
                .map(|at| at.and_utc())
                .unwrap_or(now);
            let wait = (next - now).to_std().unwrap_or_default();
            tokio::time::sleep(wait.max(std::time::Duration::from_secs(60))).await;
            match portfolio.roll_all().await {
                Ok(rolled) => tracing::info!(rolled, "portfolio: nightly roll"),
                Err(error) => tracing::warn!(%error, "portfolio: the nightly roll failed"),
            }
        }
    })
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

/// A stack running in the background on 127.0.0.1, for tests and benchmarks.
pub struct Running {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Starts the stack on a free port.
    pub async fn start(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let stack = build_with_clock(config, clock)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, stack.app, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            url,
            stop: Some(stop),
            task,
        })
    }

    /// Stops accepting, finishes requests in flight and closes the stores.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}
