//! The auth function's state over embedded adapters in a test's data folder, as the
//! handler tests share it.

use domain::clock::Clock;
use domain::store::Table;
use std::path::Path;
use std::sync::Arc;

/// The state with a maildir outbox and a folder secret vault under `data`.
pub fn state(
    data: &Path,
    table: Arc<dyn Table>,
    auth: Arc<api::Authenticator>,
    clock: Arc<dyn Clock>,
) -> auth::AuthState {
    let outbox = Arc::new(
        adapters::embedded::Outbox::open(
            &data.join("outbox"),
            domain::mail::Sender::new(
                domain::accounts::Email::parse("no-reply@leasedesk.se").unwrap(),
                None,
            )
            .unwrap(),
        )
        .unwrap(),
    );
    let sso = auth::SsoPorts {
        vault: Arc::new(adapters::embedded::FolderSecrets::open(&data.join("secrets")).unwrap()),
        oidc: Arc::new(
            adapters::oidc::OidcRelyingParty::new(
                adapters::oidc::OidcSettings::default(),
                clock.clone(),
            )
            .unwrap(),
        ),
        secret_prefix: String::new(),
        // No name server listens there: the handler tests verify no domain.
        dns: Arc::new(
            adapters::dns::HickoryDns::with_name_server(
                std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
                adapters::dns::DnsSettings::default(),
            )
            .unwrap(),
        ),
    };
    auth::AuthState::new(table, auth, clock, outbox, "https://app.leasedesk.se", sso)
}
