//! `leasedesk`: runs the whole stack locally.

use anyhow::Context;
use clap::{Parser, Subcommand};
use domain::rates::Source;
use domain::retention::RetentionPolicy;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "leasedesk",
    version,
    about = "Leasedesk, locally: every function in one process on embedded storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve(ServeArgs),
    /// Interest and exchange rates.
    Rates {
        #[command(subcommand)]
        command: RatesCommand,
    },
    /// The data-retention job: inactive organizations are warned, then removed.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Run the job once now and print what it did.
    Run {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        retention: RetentionArgs,
    },
}

#[derive(clap::Args, Clone)]
struct RetentionArgs {
    /// Days without a sign-in after which an organization is removed (its owners are
    /// warned 30 days before).
    #[arg(
        long = "retention-inactive-days",
        value_name = "DAYS",
        default_value_t = domain::retention::DEFAULT_INACTIVE_DAYS,
        env = "RETENTION_INACTIVE_DAYS",
        value_parser = parse_inactive_days
    )]
    inactive_days: u32,
}

impl RetentionArgs {
    fn policy(&self) -> RetentionPolicy {
        // Checked by the parser.
        RetentionPolicy::new(self.inactive_days).unwrap_or_default()
    }
}

fn parse_inactive_days(text: &str) -> Result<u32, String> {
    RetentionPolicy::parse(text)
        .map(RetentionPolicy::inactive_days)
        .map_err(|error| error.to_string())
}

#[derive(Subcommand)]
enum RatesCommand {
    /// Poll the rate sources once and print what was stored.
    Refresh {
        /// Only this source.
        #[arg(long, value_parser = ["riksbank", "ecb", "fixer"])]
        source: Option<String>,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        feeds: FeedArgs,
    },
}

#[derive(clap::Args, Clone)]
struct DataArgs {
    /// Folder for the data; created if missing.
    #[arg(long, default_value = "./.data", env = "LEASEDESK_DATA_DIR")]
    data_dir: PathBuf,
}

#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "LEASEDESK_ADDR")]
    addr: SocketAddr,
    #[command(flatten)]
    data: DataArgs,
    /// Minutes between rate polls (the first runs at start).
    #[arg(long, default_value_t = 360, env = "LEASEDESK_RATES_EVERY_MINUTES")]
    rates_every_minutes: u64,
    /// Do not poll the rate sources.
    #[arg(long, env = "LEASEDESK_NO_RATES_POLLING")]
    no_rates_polling: bool,
    #[command(flatten)]
    feeds: FeedArgs,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Do not run the daily retention job (03:00 UTC).
    #[arg(long, env = "LEASEDESK_NO_RETENTION")]
    no_retention: bool,
    /// The name server that looks up the TXT records proving organizations' single
    /// sign-on domains, as ADDRESS:PORT (default: the system's, from /etc/resolv.conf).
    #[arg(long, value_name = "ADDRESS:PORT", env = "LEASEDESK_DNS_SERVER")]
    dns_server: Option<SocketAddr>,
}

/// Where the rate sources are (the public ones unless overridden, e.g. for tests).
#[derive(clap::Args, Clone)]
struct FeedArgs {
    #[arg(long, env = "LEASEDESK_RIKSBANK_SWEA_URL", hide = true)]
    riksbank_swea_url: Option<String>,
    #[arg(long, env = "LEASEDESK_RIKSBANK_SWESTR_URL", hide = true)]
    riksbank_swestr_url: Option<String>,
    #[arg(long, env = "LEASEDESK_ECB_URL", hide = true)]
    ecb_url: Option<String>,
    #[arg(long, env = "LEASEDESK_FIXER_URL", hide = true)]
    fixer_url: Option<String>,
    /// Riksbanken API subscription key (optional: raises the rate limit).
    #[arg(long, env = "RIKSBANK_SUBSCRIPTION_KEY", hide_env_values = true)]
    riksbank_subscription_key: Option<String>,
    /// Fixer API key; Fixer is polled only when it is set.
    #[arg(long, env = "FIXER_API_KEY", hide_env_values = true)]
    fixer_api_key: Option<String>,
}

impl FeedArgs {
    fn feeds(&self) -> anyhow::Result<Vec<Arc<dyn domain::rates::feed::RateFeed>>> {
        let settings = adapters::feeds::FeedSettings {
            riksbank_swea_url: self.riksbank_swea_url.clone(),
            riksbank_swestr_url: self.riksbank_swestr_url.clone(),
            riksbank_subscription_key: self.riksbank_subscription_key.clone(),
            ecb_url: self.ecb_url.clone(),
            fixer_url: self.fixer_url.clone(),
            fixer_api_key: self.fixer_api_key.clone(),
            retry: None,
        };
        adapters::feeds::build_feeds(&settings).context("configuring the rate sources")
    }
}

/// glibc's allocator serializes the store's writer thread and the request threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    api::telemetry::init(false);
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Serve(args)) => serve(args).await,
        None => serve(cli.serve).await,
        Some(Command::Rates {
            command:
                RatesCommand::Refresh {
                    source,
                    data,
                    feeds,
                },
        }) => refresh_rates(source.as_deref().and_then(Source::parse), data, feeds).await,
        Some(Command::Retention {
            command: RetentionCommand::Run { data, retention },
        }) => run_retention(data, retention).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let addr = listener.local_addr()?;
    let config = leasedesk::Config::new(&args.data.data_dir)
        .with_feeds(args.feeds.feeds()?)
        .with_public_url(format!("http://{addr}"))
        .with_retention(args.retention.policy());
    let config = match args.dns_server {
        Some(server) => config.with_dns_server(server),
        None => config,
    };
    let stack = leasedesk::build(&config)?;
    println!(
        "Leasedesk is listening on http://{addr} (data in {})",
        args.data.data_dir.display()
    );
    println!("API description: http://{addr}/openapi.json");
    let scheduler = (!args.no_rates_polling).then(|| {
        leasedesk::spawn_rates_scheduler(
            stack.rates.clone(),
            std::time::Duration::from_secs(args.rates_every_minutes.max(1) * 60),
        )
    });
    let roll = leasedesk::spawn_portfolio_roll(stack.portfolio.clone());
    let retention =
        (!args.no_retention).then(|| leasedesk::spawn_retention(stack.retention.clone()));
    let (stop_worker, worker_stopped) = tokio::sync::watch::channel(false);
    let worker = leasedesk::spawn_import_worker(
        stack.import_queue.clone(),
        stack.import_worker.clone(),
        worker_stopped,
    );
    leasedesk::serve(listener, stack.app, shutdown_signal()).await?;
    // A job cut off here is resumed at the next start.
    let _ = stop_worker.send(true);
    let _ = worker.await;
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    roll.abort();
    if let Some(retention) = retention {
        retention.abort();
    }
    drop(stack.table);
    println!("Leasedesk stopped");
    Ok(())
}

async fn refresh_rates(
    only: Option<Source>,
    data: DataArgs,
    feeds: FeedArgs,
) -> anyhow::Result<()> {
    let config = leasedesk::Config::new(&data.data_dir).with_feeds(feeds.feeds()?);
    let stack = leasedesk::build(&config)?;
    let report = rates::poll(&stack.rates, only)
        .await
        .map_err(|e| anyhow::anyhow!("the poll failed: {e}"))?;
    for series in &report.series {
        let last = series
            .last_observation_date
            .map(|d| d.to_string())
            .unwrap_or_else(|| "-".into());
        let note = match (&series.error, series.closed) {
            (Some(error), _) => format!("error: {error}"),
            (None, true) => "closed: no longer published".into(),
            (None, false) => String::new(),
        };
        println!(
            "{:<22} {:<9} stored {:>5}  last {:<10}  {note}",
            series.series.to_string(),
            series.source.as_str(),
            series.stored,
            last
        );
    }
    for (source, error) in &report.unreachable {
        println!("{source}: unreachable ({error}); last known values kept");
    }
    println!(
        "stored {} observations; {} contracts repriced",
        report.stored(),
        report.contracts_repriced
    );
    Ok(())
}

async fn run_retention(data: DataArgs, retention: RetentionArgs) -> anyhow::Result<()> {
    let config = leasedesk::Config::new(&data.data_dir).with_retention(retention.policy());
    let stack = leasedesk::build(&config)?;
    let result = auth::retention::handle_schedule(&stack.retention, &serde_json::Value::Null).await;
    let report = match &result {
        Ok(report) | Err(auth::retention::RetentionRunError::Incomplete(report)) => report,
        Err(error) => anyhow::bail!("the retention job could not run: {error}"),
    };
    println!(
        "retention after {} days: organizations {}, warned {}, mails sent {}, \
         warnings cleared {}, removed {}, registered {}, kept by a sign-in {}, failed {}",
        retention.inactive_days,
        report.organizations,
        report.warned,
        report.mails_sent,
        report.cleared,
        report.deleted,
        report.registered,
        report.kept_by_activity,
        report.failed
    );
    result
        .map(drop)
        .context("some organizations are left for the next run (see the log)")
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
