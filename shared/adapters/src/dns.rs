//! The `domain::dns::DnsResolver` port over hickory-resolver: a stub resolver that asks
//! recursive name servers, over UDP (and TCP when an answer is truncated).
//!
//! In Lambda and, by default, in the local stack it uses the system's name servers
//! (`/etc/resolv.conf`); the local stack can be pointed at another one (a name server
//! on loopback in the tests). Answers are not cached here: a verification asked for
//! right after a record was published must see it, and the recursive server's own
//! cache (the negative TTL of the zone) is all the delay there is.
//!
//! A name that does not exist (NXDOMAIN) or has no TXT records is an answer (no
//! records). Only a look-up that got no usable answer — no reply in time, SERVFAIL,
//! REFUSED, no name server reachable — is an error, so that "the record is not there"
//! and "we could not ask" never read alike.

use async_trait::async_trait;
use domain::dns::{DnsError, DnsResolver};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as ProtocolError, NetError};
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::{Resolver, TokioResolver};
use std::net::SocketAddr;
use std::time::Duration;

/// How hard a look-up tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// For one query to one name server.
    pub timeout: Duration,
    /// Queries per look-up before it gives up.
    pub attempts: usize,
}

impl Default for DnsSettings {
    /// Three seconds, twice: a verification answers within about six seconds, well
    /// inside API Gateway's 29.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            attempts: 2,
        }
    }
}

/// The resolver could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("the DNS resolver cannot be set up: {0}")]
pub struct DnsSetupError(String);

/// A DNS stub resolver. One per process.
pub struct HickoryDns {
    resolver: TokioResolver,
    /// The most one look-up may take, whatever the resolver's retries do.
    deadline: Duration,
}

impl HickoryDns {
    /// The system's name servers, from `/etc/resolv.conf` (the search list is not used:
    /// every name asked is fully qualified).
    pub fn from_system_conf(settings: DnsSettings) -> Result<Self, DnsSetupError> {
        let builder = TokioResolver::builder_tokio()
            .map_err(|error| DnsSetupError(format!("reading /etc/resolv.conf: {error}")))?;
        Self::build(builder, settings)
    }

    /// One name server, at `server` (an address and port), over UDP and TCP.
    pub fn with_name_server(
        server: SocketAddr,
        settings: DnsSettings,
    ) -> Result<Self, DnsSetupError> {
        let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
            .into_iter()
            .map(|mut connection| {
                connection.port = server.port();
                connection
            })
            .collect();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
            server.ip(),
            true,
            connections,
        )]);
        Self::build(
            Resolver::builder_with_config(config, TokioRuntimeProvider::default()),
            settings,
        )
    }

    fn build(
        mut builder: hickory_resolver::ResolverBuilder<TokioRuntimeProvider>,
        settings: DnsSettings,
    ) -> Result<Self, DnsSetupError> {
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = settings.timeout;
        options.attempts = settings.attempts.max(1);
        // No cache: each verification asks again (see the module).
        options.cache_size = 0;
        options.positive_max_ttl = Some(Duration::ZERO);
        options.negative_max_ttl = Some(Duration::ZERO);
        // /etc/hosts knows no TXT records.
        options.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        let resolver = builder
            .build()
            .map_err(|error| DnsSetupError(error.to_string()))?;
        let attempts = u32::try_from(settings.attempts.max(1)).unwrap_or(u32::MAX);
        Ok(Self {
            resolver,
            deadline: settings.timeout.saturating_mul(attempts) + Duration::from_secs(1),
        })
    }
}

#[async_trait]
impl DnsResolver for HickoryDns {
    async fn txt_records(&self, name: &str) -> Result<Vec<String>, DnsError> {
        // Fully qualified, so no search domain is tried.
        let name = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
            .map_err(|error| DnsError::Failed(format!("not a DNS name: {error}")))?;
        let lookup = match tokio::time::timeout(self.deadline, self.resolver.txt_lookup(name)).await
        {
            Err(_elapsed) => return Err(DnsError::Timeout),
            Ok(Ok(lookup)) => lookup,
            Ok(Err(error)) if error.is_no_records_found() => return Ok(Vec::new()),
            Ok(Err(error)) => return Err(failure(&error)),
        };
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part))
                        .collect::<String>(),
                ),
                // The CNAMEs the answer went through.
                _ => None,
            })
            .collect())
    }
}

/// The port's error for a look-up that got no usable answer.
fn failure(error: &NetError) -> DnsError {
    match error {
        NetError::Timeout => DnsError::Timeout,
        NetError::Dns(ProtocolError::ResponseCode(code)) => {
            DnsError::Failed(format!("the name server answered {code}"))
        }
        other => DnsError::Failed(other.to_string()),
    }
}
