//! The DNS adapter against a real name server on loopback (`testkit::DnsTestServer`,
//! UDP and TCP): records found, split records joined, absent names and types as
//! answers, and a failing or silent server as errors that say so.

use adapters::dns::{DnsSettings, HickoryDns};
use domain::dns::{DnsError, DnsResolver};
use std::time::{Duration, Instant};
use testkit::{DnsBehaviour, DnsTestServer};

fn resolver(server: &DnsTestServer, timeout: Duration) -> HickoryDns {
    HickoryDns::with_name_server(
        server.address(),
        DnsSettings {
            timeout,
            attempts: 2,
        },
    )
    .expect("a resolver for the loopback server")
}

const NAME: &str = "_leasedesk-challenge.nordlysfleet.se";

#[tokio::test]
async fn txt_records_are_found_and_absent_ones_are_an_empty_answer() {
    let server = DnsTestServer::start().await;
    let dns = resolver(&server, Duration::from_secs(2));

    // A name that does not exist is an answer: no records.
    assert_eq!(dns.txt_records(NAME).await, Ok(Vec::new()));

    server.publish(NAME, "leasedesk-domain-verification=4f0c");
    server.publish(NAME, "v=something-else");
    let mut found = dns.txt_records(NAME).await.unwrap();
    found.sort();
    assert_eq!(
        found,
        ["leasedesk-domain-verification=4f0c", "v=something-else"]
    );
    // Names are not case sensitive; a trailing dot changes nothing.
    assert_eq!(
        dns.txt_records("_LEASEDESK-Challenge.NordlysFleet.SE.")
            .await
            .unwrap()
            .len(),
        2
    );
    // Not cached: a record published or removed is seen by the next look-up.
    server.unpublish(NAME);
    assert_eq!(dns.txt_records(NAME).await, Ok(Vec::new()));
    server.publish(NAME, "leasedesk-domain-verification=5a1d");
    assert_eq!(
        dns.txt_records(NAME).await.unwrap(),
        ["leasedesk-domain-verification=5a1d"]
    );

    // A record of several character-strings reads as one text.
    server.publish_strings(
        "split.nordlysfleet.se",
        &["leasedesk-domain-", "verification=77"],
    );
    assert_eq!(
        dns.txt_records("split.nordlysfleet.se").await.unwrap(),
        ["leasedesk-domain-verification=77"]
    );
    let long = "x".repeat(600);
    server.publish("long.nordlysfleet.se", &long);
    assert_eq!(
        dns.txt_records("long.nordlysfleet.se").await.unwrap(),
        [long]
    );
    assert!(server.queries() >= 7, "every look-up reached the server");
}

#[tokio::test]
async fn a_failing_name_server_is_an_error_not_an_empty_answer() {
    let server = DnsTestServer::start().await;
    server.publish(NAME, "leasedesk-domain-verification=4f0c");
    let dns = resolver(&server, Duration::from_secs(2));
    server.set_behaviour(DnsBehaviour::ServerFailure);
    match dns.txt_records(NAME).await {
        Err(DnsError::Failed(reason)) => {
            assert!(
                reason.contains("SERVFAIL") || reason.contains("Server Failure"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    server.set_behaviour(DnsBehaviour::Answer);
    assert_eq!(dns.txt_records(NAME).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_silent_name_server_times_out_within_the_settings() {
    let server = DnsTestServer::start().await;
    server.set_behaviour(DnsBehaviour::Silent);
    let timeout = Duration::from_millis(300);
    let dns = resolver(&server, timeout);
    let started = Instant::now();
    assert_eq!(dns.txt_records(NAME).await, Err(DnsError::Timeout));
    let took = started.elapsed();
    assert!(took >= timeout, "gave up after {took:?}");
    // Two attempts of 300 ms and the adapter's one-second margin, with room for a
    // busy machine.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(server.queries() >= 1);
}

#[tokio::test]
async fn no_name_server_listening_is_an_error() {
    // A port that was free a moment ago: nothing answers there.
    let address = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let dns = HickoryDns::with_name_server(
        address,
        DnsSettings {
            timeout: Duration::from_millis(300),
            attempts: 1,
        },
    )
    .unwrap();
    assert!(dns.txt_records(NAME).await.is_err());
}
