//! Test support: one `moto_server` per test binary (DynamoDB, Secrets Manager, S3, SQS
//! and SES on loopback), SDK clients pointed at it, fresh tables and unique keys.
//!
//! Finding moto: `$MOTO_SERVER`, else `moto_server` on `$PATH`, else
//! `<workspace>/.venv/bin/moto_server`. A missing moto fails the test with install
//! instructions; it never skips.
//!
//! No orphans: the server is spawned with `PR_SET_PDEATHSIG(SIGKILL)` from a keeper
//! thread that lives as long as the test process (the signal fires when the *thread*
//! that forked the child ends, so it must not be a test thread), so the kernel kills it
//! however the test binary ends, panics and `kill -9` included.

#![allow(dead_code)]

use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const REGION: &str = "eu-north-1";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Moto {
    pub endpoint: String,
    pub log: PathBuf,
}

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();

/// The shared server, started on first use.
pub fn moto() -> &'static Moto {
    match MOTO.get_or_init(start_moto) {
        Ok(moto) => moto,
        Err(message) => panic!("{message}"),
    }
}

fn install_hint(looked_at: &str) -> String {
    format!(
        "moto_server is needed for the tests against AWS peers and was not found ({looked_at}).\n\
         Install it with:  pip install 'moto[server,dynamodb,secretsmanager,s3,sqs,ses]'\n\
         or into the workspace:  python3 -m venv .venv && .venv/bin/pip install 'moto[server,dynamodb,secretsmanager,s3,sqs,ses]'\n\
         or point MOTO_SERVER at the binary."
    )
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn find_moto() -> Result<PathBuf, String> {
    if let Some(explicit) = std::env::var_os("MOTO_SERVER") {
        let path = PathBuf::from(explicit);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(install_hint(&format!(
                "MOTO_SERVER={} is not a file",
                path.display()
            )))
        };
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("moto_server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let venv = workspace_root().join(".venv/bin/moto_server");
    if venv.is_file() {
        return Ok(venv);
    }
    Err(install_hint(&format!(
        "looked at $MOTO_SERVER, $PATH and {}",
        venv.display()
    )))
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|error| format!("cannot bind a loopback port: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| error.to_string())
}

enum KeeperEvent {
    Spawned,
    Failed(io::Error),
    Exited(String),
}

/// Spawns moto from a thread that outlives every test (see the module docs).
fn spawn_keeper(
    binary: PathBuf,
    port: u16,
    log: &Path,
) -> Result<mpsc::Receiver<KeeperEvent>, String> {
    let stdout = std::fs::File::create(log)
        .map_err(|error| format!("cannot create {}: {error}", log.display()))?;
    let stderr = stdout.try_clone().map_err(|error| error.to_string())?;
    let (events, receiver) = mpsc::channel();
    let parent = std::process::id();
    std::thread::Builder::new()
        .name(format!("moto-keeper-{port}"))
        .spawn(move || {
            let mut command = Command::new(&binary);
            command
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr);
            // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // The parent may have died before prctl took effect.
                    if libc::getppid() as u32 != parent {
                        return Err(io::Error::other("test process already gone"));
                    }
                    Ok(())
                });
            }
            match command.spawn() {
                Ok(mut child) => {
                    let _ = events.send(KeeperEvent::Spawned);
                    let status = child
                        .wait()
                        .map(|status| status.to_string())
                        .unwrap_or_else(|error| error.to_string());
                    let _ = events.send(KeeperEvent::Exited(status));
                }
                Err(error) => {
                    let _ = events.send(KeeperEvent::Failed(error));
                }
            }
        })
        .map_err(|error| format!("cannot start the moto keeper thread: {error}"))?;
    Ok(receiver)
}

fn log_tail(log: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        let length = file.metadata().map(|meta| meta.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(length.saturating_sub(2000)));
        let _ = file.read_to_string(&mut text);
    }
    text
}

fn start_moto() -> Result<Moto, String> {
    let binary = find_moto()?;
    let mut failures = Vec::new();
    // The free port may be taken between probing and moto binding it: retry.
    for _ in 0..3 {
        let port = free_port()?;
        let log =
            std::env::temp_dir().join(format!("leasedesk-moto-{}-{port}.log", std::process::id()));
        let events = spawn_keeper(binary.clone(), port, &log)?;
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(KeeperEvent::Spawned) => {}
            Ok(KeeperEvent::Failed(error)) => {
                return Err(format!("cannot run {}: {error}", binary.display()));
            }
            Ok(KeeperEvent::Exited(status)) => {
                failures.push(format!("moto exited at once ({status})"));
                continue;
            }
            Err(_) => return Err("moto keeper thread did not report".into()),
        }
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let ready = loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                break Ok(());
            }
            if let Ok(KeeperEvent::Exited(status)) = events.try_recv() {
                break Err(format!("moto exited ({status}): {}", log_tail(&log)));
            }
            if Instant::now() > deadline {
                break Err(format!(
                    "moto did not listen on {address} within {STARTUP_TIMEOUT:?}: {}",
                    log_tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        match ready {
            Ok(()) => {
                return Ok(Moto {
                    endpoint: format!("http://{address}"),
                    log,
                });
            }
            Err(failure) => failures.push(failure),
        }
    }
    Err(format!(
        "moto_server ({}) would not start:\n{}",
        binary.display(),
        failures.join("\n")
    ))
}

/// A DynamoDB client for the shared moto. Make one per test: a client must not outlive
/// the tokio runtime (one per `#[tokio::test]`) its connections were made in.
#[cfg(feature = "aws")]
pub fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, timeout::TimeoutConfig};
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(&moto().endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

#[cfg(feature = "aws")]
pub fn secrets_client() -> aws_sdk_secretsmanager::Client {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(&moto().endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// The one table every DynamoDB test of this binary shares (tests use unique keys).
#[cfg(feature = "aws")]
pub async fn dynamo_table() -> adapters::aws::DynamoTable {
    static CREATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let table = adapters::aws::DynamoTable::new(dynamodb_client(), "leasedesk-conformance");
    CREATED
        .get_or_init(|| async {
            if let Err(error) = table.create_table_if_missing().await {
                panic!(
                    "cannot create the test table in moto ({}): {error}",
                    moto().log.display()
                );
            }
        })
        .await;
    table
}

/// A partition key no other test (or earlier run against the same server) uses.
pub fn unique(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "T#{label}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An S3 client for the shared moto, addressing buckets in the path as a loopback
/// peer needs.
#[cfg(feature = "aws")]
pub fn s3_client() -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(&moto().endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[cfg(feature = "aws")]
pub fn sqs_client() -> aws_sdk_sqs::Client {
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(&moto().endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// An SES (v2) client for the shared moto.
#[cfg(feature = "aws")]
pub fn sesv2_client() -> aws_sdk_sesv2::Client {
    aws_sdk_sesv2::Client::from_conf(sesv2_config(&moto().endpoint).build())
}

/// An SES (v2) client for `endpoint` that does not retry, so a test of an unreachable
/// endpoint fails at once rather than after the SDK's back-off.
#[cfg(feature = "aws")]
pub fn sesv2_client_without_retries(endpoint: &str) -> aws_sdk_sesv2::Client {
    use aws_sdk_sesv2::config::retry::RetryConfig;
    let config = sesv2_config(endpoint).retry_config(RetryConfig::disabled());
    aws_sdk_sesv2::Client::from_conf(config.build())
}

#[cfg(feature = "aws")]
fn sesv2_config(endpoint: &str) -> aws_sdk_sesv2::config::Builder {
    use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_sesv2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
}

/// A name for a bucket or queue that no other test uses (lower case, digits, dashes).
pub fn unique_name(label: &str) -> String {
    unique(label)
        .trim_start_matches("T#")
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}
