//! The rate-feed adapters against a real HTTP server on 127.0.0.1 (wiremock) with the
//! real reqwest client: what `fetch` returns and which requests it makes.

use adapters::feeds::{
    EcbConfig, EcbFeed, FixerConfig, FixerFeed, RetryPolicy, RiksbankConfig, RiksbankFeed,
};
use chrono::NaiveDate;
use domain::money::Currency;
use domain::rates::feed::{FeedError, FetchRequest, RateFeed, SeriesFetch};
use domain::rates::{SeriesId, SeriesKind, Source};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

// ---- helpers ------------------------------------------------------------------------

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn id(text: &str) -> SeriesId {
    SeriesId::parse(text).unwrap()
}

fn currency(code: &str) -> Currency {
    Currency::parse(code).unwrap()
}

/// Retries in milliseconds so the tests stay fast.
fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
    }
}

fn request(today: &str, backfill_from: &str, last_stored: &[(&SeriesId, &str)]) -> FetchRequest {
    FetchRequest {
        today: day(today),
        backfill_from: day(backfill_from),
        last_stored: last_stored
            .iter()
            .map(|(series, date)| ((*series).clone(), day(date)))
            .collect(),
    }
}

fn json(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.to_owned(), "application/json")
}

fn xml(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.to_owned(), "text/xml")
}

async fn get(server: &MockServer, at: &str, answer: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(answer)
        .mount(server)
        .await;
}

/// The paths (with query) the server was asked for, in order.
async fn requested(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| match r.url.query() {
            Some(query) => format!("{}?{query}", r.url.path()),
            None => r.url.path().to_owned(),
        })
        .collect()
}

fn by_id(fetched: Vec<SeriesFetch>) -> HashMap<String, SeriesFetch> {
    fetched
        .into_iter()
        .map(|f| (f.series.id.as_str().to_owned(), f))
        .collect()
}

/// `(date, value)` as text, to compare decimals digit for digit.
fn values(fetch: &SeriesFetch) -> Vec<(String, String)> {
    fetch
        .observations
        .as_ref()
        .unwrap_or_else(|e| panic!("{}: {e:?}", fetch.series.id))
        .iter()
        .map(|o| (o.date.to_string(), o.value.to_string()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ---- Riksbanken ---------------------------------------------------------------------

fn riksbank_config(server_uri: &str, series: &[&str]) -> RiksbankConfig {
    let mut config = RiksbankConfig::new(
        format!("{server_uri}/swea/v1"),
        format!("{server_uri}/swestr/v1"),
    );
    config.series = series.iter().map(|s| id(s)).collect();
    config.follow_swestr = false;
    config.retry = fast_retries();
    config
}

fn riksbank(server: &MockServer, series: &[&str]) -> RiksbankFeed {
    RiksbankFeed::new(riksbank_config(&server.uri(), series)).unwrap()
}

const CATALOGUE: &str = r#"[
  {"seriesId": "SECBREPOEFF", "source": "Sveriges riksbank", "shortDescription": "Policy rate",
   "midDescription": "Riksbank policy rate", "longDescription": "The Riksbank's policy rate",
   "groupId": 2, "observationMinDate": "1994-06-01", "observationMaxDate": "2024-05-20", "seriesClosed": false},
  {"seriesId": "SEDP3MSTIBORDELAYC", "shortDescription": "STIBOR 3M", "midDescription": null,
   "observationMaxDate": "2024-05-20", "seriesClosed": false},
  {"seriesId": "SEKEURPMI", "shortDescription": "EUR", "midDescription": "1 EUR in SEK",
   "observationMinDate": null, "observationMaxDate": "2024-05-20", "seriesClosed": false},
  {"seriesId": "SEKDEMPMI", "midDescription": "1 DEM in SEK", "observationMaxDate": "2001-12-28", "seriesClosed": true},
  {"seriesId": "SECBDISCEFF", "midDescription": "Discount rate", "observationMaxDate": "2002-06-30", "seriesClosed": true},
  {"seriesId": "SEGVB10YC", "midDescription": "SE GVB 10Y", "observationMaxDate": "2024-05-20", "seriesClosed": false}
]"#;

async fn catalogue(server: &MockServer) {
    get(server, "/swea/v1/Series", json(CATALOGUE)).await;
}

#[tokio::test]
async fn riksbank_happy_path_with_exact_decimals_and_swestr() {
    let server = MockServer::start().await;
    catalogue(&server).await;
    get(
        &server,
        "/swea/v1/Observations/SECBREPOEFF/2024-05-17/2024-05-20",
        json(r#"[{"date": "2024-05-17", "value": 3.75}, {"date": "2024-05-20", "value": 3.75}]"#),
    )
    .await;
    get(
        &server,
        "/swea/v1/Observations/SEDP3MSTIBORDELAYC/2024-05-13/2024-05-20",
        json(
            r#"[{"date": "2024-05-16", "value": 4.0155}, {"date": "2024-05-15", "value": 4.0200}]"#,
        ),
    )
    .await;
    get(
        &server,
        "/swea/v1/Observations/SEKEURPMI/2024-05-13/2024-05-20",
        json(r#"[{"date": "2024-05-13", "value": 11.6405}, {"date": "2024-05-14", "value": 0.1}]"#),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/swestr/v1/all/SWESTR"))
        .and(query_param("fromDate", "2024-05-13"))
        .and(query_param("toDate", "2024-05-20"))
        .respond_with(json(
            r#"[{"rate": 3.904, "date": "2024-05-16", "pctl12_5": 3.85, "pctl87_5": 3.95, "volume": 41234,
                 "alternativeCalculation": false, "alternativeCalculationReason": null,
                 "publicationTime": "2024-05-17T09:00:00Z", "republication": false,
                 "numberOfTransactions": 120, "numberOfAgents": 9}]"#,
        ))
        .mount(&server)
        .await;

    let mut config = riksbank_config(
        &server.uri(),
        &["SECBREPOEFF", "SEDP3MSTIBORDELAYC", "SEKEURPMI"],
    );
    config.follow_swestr = true;
    let feed = RiksbankFeed::new(config).unwrap();
    assert_eq!(feed.source(), Source::Riksbank);
    let repo = id("SECBREPOEFF");
    let fetched = feed
        .fetch(&request(
            "2024-05-20",
            "2024-05-13",
            &[(&repo, "2024-05-16")],
        ))
        .await
        .unwrap();

    let order: Vec<_> = fetched.iter().map(|f| f.series.id.to_string()).collect();
    assert_eq!(
        order,
        ["SECBREPOEFF", "SEDP3MSTIBORDELAYC", "SEKEURPMI", "SWESTR"]
    );
    let fetched = by_id(fetched);
    let repo = &fetched["SECBREPOEFF"];
    assert_eq!(
        values(repo),
        pairs(&[("2024-05-17", "3.75"), ("2024-05-20", "3.75")])
    );
    assert_eq!(repo.series.description, "Riksbank policy rate");
    assert_eq!(repo.series.kind, SeriesKind::InterestRate);
    assert!(!repo.series.closed);
    assert_eq!(repo.series.observation_max_date, Some(day("2024-05-20")));
    let stibor = &fetched["SEDP3MSTIBORDELAYC"];
    assert_eq!(
        values(stibor),
        pairs(&[("2024-05-15", "4.0200"), ("2024-05-16", "4.0155")])
    );
    // midDescription is null: the short one stands in.
    assert_eq!(stibor.series.description, "STIBOR 3M");
    let eur = &fetched["SEKEURPMI"];
    assert_eq!(
        values(eur),
        pairs(&[("2024-05-13", "11.6405"), ("2024-05-14", "0.1")])
    );
    assert_eq!(
        eur.series.kind,
        SeriesKind::ExchangeRate {
            base: currency("EUR"),
            quote: currency("SEK")
        }
    );
    let swestr = &fetched["SWESTR"];
    assert_eq!(values(swestr), pairs(&[("2024-05-16", "3.904")]));
    assert_eq!(swestr.series.kind, SeriesKind::InterestRate);

    assert_eq!(
        requested(&server).await,
        [
            "/swea/v1/Series",
            "/swea/v1/Observations/SECBREPOEFF/2024-05-17/2024-05-20",
            "/swea/v1/Observations/SEDP3MSTIBORDELAYC/2024-05-13/2024-05-20",
            "/swea/v1/Observations/SEKEURPMI/2024-05-13/2024-05-20",
            "/swestr/v1/all/SWESTR?fromDate=2024-05-13&toDate=2024-05-20",
        ]
    );
    let first = &server.received_requests().await.unwrap()[0];
    let agent = first.headers.get("user-agent").unwrap().to_str().unwrap();
    assert!(agent.starts_with("leasedesk-rates/"), "{agent}");
    assert!(first.headers.get("ocp-apim-subscription-key").is_none());
}

#[tokio::test]
async fn riksbank_no_content_means_no_observations() {
    let server = MockServer::start().await;
    catalogue(&server).await;
    get(
        &server,
        "/swea/v1/Observations/SEGVB10YC/2024-05-18/2024-05-20",
        ResponseTemplate::new(204),
    )
    .await;
    let series = id("SEGVB10YC");
    let fetched = riksbank(&server, &["SEGVB10YC"])
        .fetch(&request(
            "2024-05-20",
            "2024-01-01",
            &[(&series, "2024-05-17")],
        ))
        .await
        .unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].observations, Ok(Vec::new()));
}

#[tokio::test]
async fn riksbank_retries_after_429_with_retry_after() {
    let server = MockServer::start().await;
    catalogue(&server).await;
    let at = "/swea/v1/Observations/SECBREPOEFF/2024-05-20/2024-05-20";
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_raw(
                    r#"{"statusCode": 429, "message": "Rate limit is exceeded. Try again in 1 seconds."}"#,
                    "application/json",
                ),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    get(
        &server,
        at,
        json(r#"[{"date": "2024-05-20", "value": 3.75}]"#),
    )
    .await;

    let series = id("SECBREPOEFF");
    let started = Instant::now();
    let fetched = riksbank(&server, &["SECBREPOEFF"])
        .fetch(&request(
            "2024-05-20",
            "2024-01-01",
            &[(&series, "2024-05-19")],
        ))
        .await
        .unwrap();
    assert_eq!(values(&fetched[0]), pairs(&[("2024-05-20", "3.75")]));
    // It waited as told, not its own 5 ms backoff.
    assert!(started.elapsed() >= Duration::from_millis(950));
    let asked = requested(&server).await;
    assert_eq!(asked.iter().filter(|p| *p == at).count(), 2);
}

#[tokio::test]
async fn riksbank_persistent_429_gives_up_rate_limited() {
    let server = MockServer::start().await;
    // The source asks for more than the cap: give up at once, passing its wish on.
    Mock::given(method("GET"))
        .and(path("/swea/v1/Series"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .mount(&server)
        .await;
    let mut config = riksbank_config(&server.uri(), &["SECBREPOEFF"]);
    config.retry.max_delay = Duration::from_millis(50);
    let started = Instant::now();
    let error = RiksbankFeed::new(config)
        .unwrap()
        .fetch(&request("2024-05-20", "2024-01-01", &[]))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        FeedError::RateLimited {
            retry_after: Some(Duration::from_secs(1))
        }
    );
    assert!(started.elapsed() < Duration::from_millis(900));
    assert_eq!(requested(&server).await.len(), 1);

    // Without Retry-After: our own backoff, then give up after the retries.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429))
        .mount(&server)
        .await;
    let error = riksbank(&server, &["SECBREPOEFF"])
        .fetch(&request("2024-05-20", "2024-01-01", &[]))
        .await
        .unwrap_err();
    assert_eq!(error, FeedError::RateLimited { retry_after: None });
    assert_eq!(requested(&server).await.len(), 4);
}

#[tokio::test]
async fn riksbank_rate_limit_on_one_series_spares_the_source_the_rest() {
    let server = MockServer::start().await;
    catalogue(&server).await;
    Mock::given(method("GET"))
        .and(path(
            "/swea/v1/Observations/SECBREPOEFF/2024-05-20/2024-05-20",
        ))
        .respond_with(ResponseTemplate::new(429))
        .mount(&server)
        .await;
    let repo = id("SECBREPOEFF");
    let bond = id("SEGVB10YC");
    let fetched = riksbank(&server, &["SECBREPOEFF", "SEGVB10YC"])
        .fetch(&request(
            "2024-05-20",
            "2024-01-01",
            &[(&repo, "2024-05-19"), (&bond, "2024-05-19")],
        ))
        .await
        .unwrap();
    let limited = FeedError::RateLimited { retry_after: None };
    assert_eq!(fetched[0].observations, Err(limited.clone()));
    assert_eq!(fetched[1].observations, Err(limited));
    let asked = requested(&server).await;
    assert!(!asked.iter().any(|p| p.contains("SEGVB10YC")), "{asked:?}");
}

#[tokio::test]
async fn riksbank_retries_server_errors() {
    let server = MockServer::start().await;
    catalogue(&server).await;
    let at = "/swea/v1/Observations/SECBREPOEFF/2024-05-20/2024-05-20";
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream hiccup"))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    get(
        &server,
        at,
        json(r#"[{"date": "2024-05-20", "value": 3.5}]"#),
    )
    .await;
    let series = id("SECBREPOEFF");
    let fetched = riksbank(&server, &["SECBREPOEFF"])
        .fetch(&request(
            "2024-05-20",
            "2024-01-01",
            &[(&series, "2024-05-19")],
        ))
        .await
        .unwrap();
    assert_eq!(values(&fetched[0]), pairs(&[("2024-05-20", "3.5")]));
    let asked = requested(&server).await;
    assert_eq!(asked.iter().filter(|p| *p == at).count(), 3);
}

#[tokio::test]
async fn riksbank_closed_series_are_reported_closed_without_asking_past_their_end() {
    let server = MockServer::start().await;
    catalogue(&server).await;
    // Stored until 2001-12-20; the series ended 2001-12-28: ask exactly up to there.
    get(
        &server,
        "/swea/v1/Observations/SEKDEMPMI/2001-12-21/2001-12-28",
        json(r#"[{"date": "2001-12-27", "value": 4.6937}]"#),
    )
    .await;
    let dem = id("SEKDEMPMI");
    let discount = id("SECBDISCEFF");
    let fetched = by_id(
        riksbank(&server, &["SEKDEMPMI", "SECBDISCEFF"])
            .fetch(&request(
                "2024-05-20",
                "2024-01-01",
                &[(&dem, "2001-12-20"), (&discount, "2002-06-30")],
            ))
            .await
            .unwrap(),
    );
    let dem = &fetched["SEKDEMPMI"];
    assert!(dem.series.closed);
    assert_eq!(dem.series.observation_max_date, Some(day("2001-12-28")));
    assert_eq!(values(dem), pairs(&[("2001-12-27", "4.6937")]));
    // Fully stored up to its end: closed, nothing new, no request at all.
    let discount = &fetched["SECBDISCEFF"];
    assert!(discount.series.closed);
    assert_eq!(discount.series.description, "Discount rate");
    assert_eq!(discount.observations, Ok(Vec::new()));
    assert_eq!(
        requested(&server).await,
        [
            "/swea/v1/Series",
            "/swea/v1/Observations/SEKDEMPMI/2001-12-21/2001-12-28"
        ]
    );
}

#[tokio::test]
async fn riksbank_closed_series_never_stored_is_not_asked_for() {
    let server = MockServer::start().await;
    catalogue(&server).await;
    let fetched = riksbank(&server, &["SECBDISCEFF"])
        .fetch(&request("2024-05-20", "2020-01-01", &[]))
        .await
        .unwrap();
    assert!(fetched[0].series.closed);
    assert_eq!(fetched[0].observations, Ok(Vec::new()));
    assert_eq!(requested(&server).await, ["/swea/v1/Series"]);
}

#[tokio::test]
async fn riksbank_malformed_observations_fail_only_their_series() {
    let server = MockServer::start().await;
    catalogue(&server).await;
    get(
        &server,
        "/swea/v1/Observations/SECBREPOEFF/2024-05-20/2024-05-20",
        json(r#"{"unexpected": "shape"}"#),
    )
    .await;
    get(
        &server,
        "/swea/v1/Observations/SEGVB10YC/2024-05-20/2024-05-20",
        json(r#"[{"date": "2024-05-20", "value": 2.312}]"#),
    )
    .await;
    let repo = id("SECBREPOEFF");
    let bond = id("SEGVB10YC");
    let fetched = by_id(
        riksbank(&server, &["SECBREPOEFF", "SEGVB10YC"])
            .fetch(&request(
                "2024-05-20",
                "2024-01-01",
                &[(&repo, "2024-05-19"), (&bond, "2024-05-19")],
            ))
            .await
            .unwrap(),
    );
    match &fetched["SECBREPOEFF"].observations {
        Err(FeedError::Malformed(reason)) => assert!(reason.contains("SECBREPOEFF"), "{reason}"),
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert_eq!(
        values(&fetched["SEGVB10YC"]),
        pairs(&[("2024-05-20", "2.312")])
    );
}

#[tokio::test]
async fn riksbank_unknown_series_is_refused_with_the_sources_message() {
    let server = MockServer::start().await;
    catalogue(&server).await;
    get(
        &server,
        "/swea/v1/Observations/SENOSUCH/2024-05-01/2024-05-20",
        ResponseTemplate::new(404).set_body_raw(
            r#"{"statusCode": 404, "message": "Series SENOSUCH not found"}"#,
            "application/json",
        ),
    )
    .await;
    let fetched = riksbank(&server, &["SENOSUCH"])
        .fetch(&request("2024-05-20", "2024-05-01", &[]))
        .await
        .unwrap();
    assert_eq!(
        fetched[0].observations,
        Err(FeedError::Refused(
            "HTTP 404 Not Found: Series SENOSUCH not found".to_owned()
        ))
    );
    // Not in the catalogue: our own description, not closed.
    assert!(!fetched[0].series.closed);
    assert_eq!(fetched[0].series.observation_max_date, None);
    // A 404 is not retried.
    assert_eq!(requested(&server).await.len(), 2);
}

#[tokio::test]
async fn riksbank_sends_the_subscription_key_and_never_shows_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/swea/v1/Series"))
        .and(header("Ocp-Apim-Subscription-Key", "rb-secret-123"))
        .respond_with(json(CATALOGUE))
        .mount(&server)
        .await;
    // The source echoes the key back in its refusal.
    Mock::given(method("GET"))
        .and(path(
            "/swea/v1/Observations/SECBREPOEFF/2024-05-20/2024-05-20",
        ))
        .and(header("Ocp-Apim-Subscription-Key", "rb-secret-123"))
        .respond_with(ResponseTemplate::new(403).set_body_raw(
            r#"{"message": "Key rb-secret-123 may not read this series"}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    let mut config = riksbank_config(&server.uri(), &["SECBREPOEFF"]);
    config.subscription_key = Some("rb-secret-123".to_owned());
    assert!(!format!("{config:?}").contains("rb-secret-123"));
    let series = id("SECBREPOEFF");
    let fetched = RiksbankFeed::new(config)
        .unwrap()
        .fetch(&request(
            "2024-05-20",
            "2024-01-01",
            &[(&series, "2024-05-19")],
        ))
        .await
        .unwrap();
    // The catalogue answered (so the header was there): the description is the source's.
    assert_eq!(fetched[0].series.description, "Riksbank policy rate");
    match &fetched[0].observations {
        Err(FeedError::Refused(reason)) => {
            assert!(!reason.contains("rb-secret-123"), "{reason}");
            assert!(reason.contains("[redacted]"), "{reason}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn riksbank_backfills_from_the_day_after_the_last_stored() {
    let server = MockServer::start().await;
    catalogue(&server).await;
    get(
        &server,
        "/swea/v1/Observations/SECBREPOEFF/2024-05-11/2024-05-20",
        json(r#"[{"date": "2024-05-13", "value": 3.75}, {"date": "2024-05-20", "value": 3.75}]"#),
    )
    .await;
    let series = id("SECBREPOEFF");
    let fetched = riksbank(&server, &["SECBREPOEFF"])
        .fetch(&request(
            "2024-05-20",
            "2020-01-01",
            &[(&series, "2024-05-10")],
        ))
        .await
        .unwrap();
    assert_eq!(values(&fetched[0]).len(), 2);
    assert_eq!(
        requested(&server).await,
        [
            "/swea/v1/Series",
            "/swea/v1/Observations/SECBREPOEFF/2024-05-11/2024-05-20"
        ]
    );
}

#[tokio::test]
async fn riksbank_up_to_date_asks_for_no_observations() {
    let server = MockServer::start().await;
    catalogue(&server).await;
    let repo = id("SECBREPOEFF");
    let eur = id("SEKEURPMI");
    let fetched = riksbank(&server, &["SECBREPOEFF", "SEKEURPMI"])
        .fetch(&request(
            "2024-05-20",
            "2020-01-01",
            &[(&repo, "2024-05-20"), (&eur, "2024-05-20")],
        ))
        .await
        .unwrap();
    assert!(fetched.iter().all(|f| f.observations == Ok(Vec::new())));
    assert_eq!(requested(&server).await, ["/swea/v1/Series"]);
}

#[tokio::test]
async fn riksbank_refused_catalogue_fails_every_series_without_more_requests() {
    let server = MockServer::start().await;
    get(
        &server,
        "/swea/v1/Series",
        ResponseTemplate::new(401).set_body_raw(
            r#"{"statusCode": 401, "message": "Access denied due to invalid subscription key."}"#,
            "application/json",
        ),
    )
    .await;
    let fetched = riksbank(&server, &["SECBREPOEFF", "SEKEURPMI"])
        .fetch(&request("2024-05-20", "2024-05-01", &[]))
        .await
        .unwrap();
    assert_eq!(fetched.len(), 2);
    for fetch in &fetched {
        match &fetch.observations {
            Err(FeedError::Refused(reason)) => assert!(reason.contains("invalid subscription key")),
            other => panic!("expected Refused, got {other:?}"),
        }
    }
    assert_eq!(requested(&server).await, ["/swea/v1/Series"]);
}

#[tokio::test]
async fn riksbank_unreachable_is_a_fast_top_level_error() {
    let uri = format!("http://127.0.0.1:{}", closed_port());
    let feed = RiksbankFeed::new(riksbank_config(&uri, &["SECBREPOEFF"])).unwrap();
    let started = Instant::now();
    let error = feed
        .fetch(&request("2024-05-20", "2024-05-01", &[]))
        .await
        .unwrap_err();
    assert!(matches!(error, FeedError::Unavailable(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

// ---- ECB ----------------------------------------------------------------------------

fn ecb(server: &MockServer, currencies: &[&str]) -> EcbFeed {
    let mut config = EcbConfig::new(format!("{}/stats/eurofxref", server.uri()));
    config.currencies = currencies.iter().map(|c| currency(c)).collect();
    config.retry = fast_retries();
    EcbFeed::new(config).unwrap()
}

fn ecb_id(code: &str) -> SeriesId {
    SeriesId::fx(Source::Ecb, currency("EUR"), currency(code))
}

/// A reference-rate document with the given days, newest first as the ECB writes them.
fn ecb_document(days: &[(&str, &[(&str, &str)])]) -> String {
    let mut cubes = String::new();
    for (time, rates) in days {
        cubes.push_str(&format!("    <Cube time='{time}'>\n"));
        for (code, rate) in *rates {
            cubes.push_str(&format!("      <Cube currency='{code}' rate='{rate}'/>\n"));
        }
        cubes.push_str("    </Cube>\n");
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <gesmes:subject>Reference rates</gesmes:subject>
  <gesmes:Sender>
    <gesmes:name>European Central Bank</gesmes:name>
  </gesmes:Sender>
  <Cube>
{cubes}  </Cube>
</gesmes:Envelope>
"#
    )
}

#[tokio::test]
async fn ecb_daily_document_when_only_today_is_missing() {
    let server = MockServer::start().await;
    get(
        &server,
        "/stats/eurofxref/eurofxref-daily.xml",
        xml(&ecb_document(&[(
            "2024-05-08",
            &[("USD", "1.0750"), ("JPY", "167.12"), ("SEK", "11.6405")],
        )])),
    )
    .await;
    let (sek, usd) = (ecb_id("SEK"), ecb_id("USD"));
    let fetched = by_id(
        ecb(&server, &["SEK", "USD"])
            .fetch(&request(
                "2024-05-08",
                "2024-01-01",
                &[(&sek, "2024-05-07"), (&usd, "2024-05-07")],
            ))
            .await
            .unwrap(),
    );
    assert_eq!(fetched.len(), 2);
    let sek = &fetched["ECB.EUR.SEK"];
    assert_eq!(values(sek), pairs(&[("2024-05-08", "11.6405")]));
    assert_eq!(
        sek.series.description,
        "ECB euro reference rate: SEK per EUR"
    );
    assert_eq!(
        sek.series.kind,
        SeriesKind::ExchangeRate {
            base: currency("EUR"),
            quote: currency("SEK")
        }
    );
    assert_eq!(sek.series.observation_max_date, Some(day("2024-05-08")));
    assert_eq!(
        values(&fetched["ECB.EUR.USD"]),
        pairs(&[("2024-05-08", "1.0750")])
    );
    assert_eq!(
        requested(&server).await,
        ["/stats/eurofxref/eurofxref-daily.xml"]
    );
}

#[tokio::test]
async fn ecb_90_day_document_for_a_gap_of_days_keeping_only_newer_dates() {
    let server = MockServer::start().await;
    get(
        &server,
        "/stats/eurofxref/eurofxref-hist-90d.xml",
        xml(&ecb_document(&[
            ("2024-05-08", &[("USD", "1.0750"), ("SEK", "11.6405")]),
            ("2024-05-07", &[("USD", "1.0765"), ("SEK", "11.6520")]),
            ("2024-05-06", &[("USD", "1.0772"), ("SEK", "11.6380")]),
            ("2024-05-03", &[("USD", "1.0760"), ("SEK", "11.6095")]),
            ("2024-05-02", &[("USD", "1.0723"), ("SEK", "11.6370")]),
        ])),
    )
    .await;
    let (sek, usd) = (ecb_id("SEK"), ecb_id("USD"));
    let fetched = by_id(
        ecb(&server, &["SEK", "USD"])
            .fetch(&request(
                "2024-05-08",
                "2024-01-01",
                &[(&sek, "2024-05-03"), (&usd, "2024-05-06")],
            ))
            .await
            .unwrap(),
    );
    assert_eq!(
        values(&fetched["ECB.EUR.SEK"]),
        pairs(&[
            ("2024-05-06", "11.6380"),
            ("2024-05-07", "11.6520"),
            ("2024-05-08", "11.6405")
        ])
    );
    assert_eq!(
        values(&fetched["ECB.EUR.USD"]),
        pairs(&[("2024-05-07", "1.0765"), ("2024-05-08", "1.0750")])
    );
    assert_eq!(
        requested(&server).await,
        ["/stats/eurofxref/eurofxref-hist-90d.xml"]
    );
}

#[tokio::test]
async fn ecb_full_history_for_a_currency_never_stored() {
    let server = MockServer::start().await;
    get(
        &server,
        "/stats/eurofxref/eurofxref-hist.xml",
        xml(&ecb_document(&[
            ("2024-05-08", &[("PLN", "4.3183"), ("SEK", "11.6405")]),
            ("1999-01-04", &[("PLN", "4.0712"), ("SEK", "9.4696")]),
        ])),
    )
    .await;
    let sek = ecb_id("SEK");
    let fetched = by_id(
        ecb(&server, &["SEK", "PLN"])
            .fetch(&request(
                "2024-05-08",
                "1999-01-01",
                &[(&sek, "2024-05-07")],
            ))
            .await
            .unwrap(),
    );
    assert_eq!(
        values(&fetched["ECB.EUR.PLN"]),
        pairs(&[("1999-01-04", "4.0712"), ("2024-05-08", "4.3183")])
    );
    assert_eq!(
        values(&fetched["ECB.EUR.SEK"]),
        pairs(&[("2024-05-08", "11.6405")])
    );
    assert_eq!(
        requested(&server).await,
        ["/stats/eurofxref/eurofxref-hist.xml"]
    );
}

#[tokio::test]
async fn ecb_malformed_xml_fails_every_series() {
    let server = MockServer::start().await;
    let document = ecb_document(&[("2024-05-08", &[("SEK", "11.6405")])]);
    get(
        &server,
        "/stats/eurofxref/eurofxref-daily.xml",
        xml(&document[..document.len() - 30]),
    )
    .await;
    let fetched = ecb(&server, &["SEK", "USD"])
        .fetch(&request("2024-05-08", "2024-05-08", &[]))
        .await
        .unwrap();
    assert_eq!(fetched.len(), 2);
    for fetch in &fetched {
        assert!(
            matches!(fetch.observations, Err(FeedError::Malformed(_))),
            "{:?}",
            fetch.observations
        );
    }
}

#[tokio::test]
async fn ecb_up_to_date_downloads_nothing() {
    let server = MockServer::start().await;
    let sek = ecb_id("SEK");
    let fetched = ecb(&server, &["SEK"])
        .fetch(&request(
            "2024-05-08",
            "2024-01-01",
            &[(&sek, "2024-05-08")],
        ))
        .await
        .unwrap();
    assert_eq!(fetched[0].observations, Ok(Vec::new()));
    assert!(requested(&server).await.is_empty());
}

#[tokio::test]
async fn ecb_unreachable_is_a_top_level_error() {
    let mut config = EcbConfig::new(format!("http://127.0.0.1:{}/eurofxref", closed_port()));
    config.retry = fast_retries();
    let error = EcbFeed::new(config)
        .unwrap()
        .fetch(&request("2024-05-08", "2024-05-08", &[]))
        .await
        .unwrap_err();
    assert!(matches!(error, FeedError::Unavailable(_)), "{error:?}");
}

// ---- Fixer --------------------------------------------------------------------------

const FIXER_KEY: &str = "fx-key-0123456789abcdef";

fn fixer_config(server_uri: &str, symbols: &[&str]) -> FixerConfig {
    let mut config = FixerConfig::new(format!("{server_uri}/api"), FIXER_KEY);
    config.symbols = symbols.iter().map(|c| currency(c)).collect();
    config.retry = fast_retries();
    config
}

fn fixer(server: &MockServer, symbols: &[&str]) -> FixerFeed {
    FixerFeed::new(fixer_config(&server.uri(), symbols)).unwrap()
}

fn fixer_id(code: &str) -> SeriesId {
    SeriesId::fx(Source::Fixer, currency("EUR"), currency(code))
}

fn fixer_answer(date: &str, historical: bool, rates: &str) -> ResponseTemplate {
    json(&format!(
        r#"{{"success": true, "timestamp": 1715212799, "historical": {historical}, "base": "EUR",
            "date": "{date}", "rates": {rates}}}"#
    ))
}

#[tokio::test]
async fn fixer_latest_and_historical_days() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/2024-05-07"))
        .and(query_param("access_key", FIXER_KEY))
        .and(query_param("base", "EUR"))
        .and(query_param("symbols", "SEK,USD"))
        .respond_with(fixer_answer(
            "2024-05-07",
            true,
            r#"{"SEK": 11.652012, "USD": 1.076512}"#,
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/latest"))
        .and(query_param("access_key", FIXER_KEY))
        .and(query_param("base", "EUR"))
        .and(query_param("symbols", "SEK,USD"))
        .respond_with(fixer_answer(
            "2024-05-08",
            false,
            r#"{"SEK": 11.6405, "USD": 1.075}"#,
        ))
        .mount(&server)
        .await;
    let (sek, usd) = (fixer_id("SEK"), fixer_id("USD"));
    let feed = fixer(&server, &["SEK", "USD"]);
    assert_eq!(feed.source(), Source::Fixer);
    let fetched = by_id(
        feed.fetch(&request(
            "2024-05-08",
            "2024-01-01",
            &[(&sek, "2024-05-06"), (&usd, "2024-05-07")],
        ))
        .await
        .unwrap(),
    );
    let sek = &fetched["FIXER.EUR.SEK"];
    assert_eq!(
        values(sek),
        pairs(&[("2024-05-07", "11.652012"), ("2024-05-08", "11.6405")])
    );
    assert_eq!(
        sek.series.kind,
        SeriesKind::ExchangeRate {
            base: currency("EUR"),
            quote: currency("SEK")
        }
    );
    // USD had 2024-05-07 already: only the newest day.
    assert_eq!(
        values(&fetched["FIXER.EUR.USD"]),
        pairs(&[("2024-05-08", "1.075")])
    );
    let paths: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(paths, ["/api/2024-05-07", "/api/latest"]);
}

#[tokio::test]
async fn fixer_backfill_is_bounded() {
    let server = MockServer::start().await;
    for date in ["2024-05-06", "2024-05-07"] {
        get(
            &server,
            &format!("/api/{date}"),
            fixer_answer(date, true, r#"{"SEK": 11.6}"#),
        )
        .await;
    }
    get(
        &server,
        "/api/latest",
        fixer_answer("2024-05-08", false, r#"{"SEK": 11.7}"#),
    )
    .await;
    let mut config = fixer_config(&server.uri(), &["SEK"]);
    config.max_backfill_days = 3;
    let sek = fixer_id("SEK");
    let fetched = FixerFeed::new(config)
        .unwrap()
        .fetch(&request(
            "2024-05-08",
            "2024-01-01",
            &[(&sek, "2024-01-31")],
        ))
        .await
        .unwrap();
    assert_eq!(
        values(&fetched[0]),
        pairs(&[
            ("2024-05-06", "11.6"),
            ("2024-05-07", "11.6"),
            ("2024-05-08", "11.7")
        ])
    );
    let paths: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(paths, ["/api/2024-05-06", "/api/2024-05-07", "/api/latest"]);
}

#[tokio::test]
async fn fixer_success_false_with_http_200_is_refused_without_the_key() {
    let server = MockServer::start().await;
    get(
        &server,
        "/api/latest",
        json(&format!(
            r#"{{"success": false, "error": {{"code": 101, "type": "invalid_access_key",
                "info": "You have not supplied a valid API Access Key ({FIXER_KEY})."}}}}"#
        )),
    )
    .await;
    let (sek, usd) = (fixer_id("SEK"), fixer_id("USD"));
    let fetched = fixer(&server, &["SEK", "USD"])
        .fetch(&request(
            "2024-05-08",
            "2024-01-01",
            &[(&sek, "2024-05-07"), (&usd, "2024-05-07")],
        ))
        .await
        .unwrap();
    assert_eq!(fetched.len(), 2);
    for fetch in &fetched {
        match &fetch.observations {
            Err(FeedError::Refused(reason)) => {
                assert!(reason.contains("invalid_access_key"), "{reason}");
                assert!(reason.contains("code 101"), "{reason}");
                assert!(!reason.contains(FIXER_KEY), "{reason}");
            }
            other => panic!("expected Refused, got {other:?}"),
        }
    }
    // A refusal is not retried.
    assert_eq!(requested(&server).await.len(), 1);
}

#[tokio::test]
async fn fixer_http_errors_never_show_the_key() {
    let server = MockServer::start().await;
    get(
        &server,
        "/api/latest",
        ResponseTemplate::new(401).set_body_string(format!("bad key {FIXER_KEY}")),
    )
    .await;
    let sek = fixer_id("SEK");
    let fetched = fixer(&server, &["SEK"])
        .fetch(&request(
            "2024-05-08",
            "2024-01-01",
            &[(&sek, "2024-05-07")],
        ))
        .await
        .unwrap();
    let Err(error) = &fetched[0].observations else {
        panic!("expected an error");
    };
    assert!(matches!(error, FeedError::Refused(_)));
    assert!(!error.to_string().contains(FIXER_KEY), "{error}");

    let config = fixer_config(&format!("http://127.0.0.1:{}", closed_port()), &["SEK"]);
    let started = Instant::now();
    let error = FixerFeed::new(config)
        .unwrap()
        .fetch(&request(
            "2024-05-08",
            "2024-01-01",
            &[(&sek, "2024-05-07")],
        ))
        .await
        .unwrap_err();
    assert!(matches!(error, FeedError::Unavailable(_)), "{error:?}");
    assert!(!format!("{error:?}").contains(FIXER_KEY), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn fixer_up_to_date_makes_no_request() {
    let server = MockServer::start().await;
    let sek = fixer_id("SEK");
    let fetched = fixer(&server, &["SEK"])
        .fetch(&request(
            "2024-05-08",
            "2024-01-01",
            &[(&sek, "2024-05-08")],
        ))
        .await
        .unwrap();
    assert_eq!(fetched[0].observations, Ok(Vec::new()));
    assert!(requested(&server).await.is_empty());
}

// ---- TLS ----------------------------------------------------------------------------

/// The production build speaks TLS: an https URL is attempted (and here fails the
/// handshake against a plain-text server) instead of being rejected for its scheme.
#[tokio::test]
async fn https_urls_are_attempted_with_tls() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { break };
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let mut config = EcbConfig::new(format!("https://127.0.0.1:{port}/eurofxref"));
    config.retry = fast_retries();
    let error = EcbFeed::new(config)
        .unwrap()
        .fetch(&request("2024-05-08", "2024-05-08", &[]))
        .await
        .unwrap_err();
    let FeedError::Unavailable(reason) = &error else {
        panic!("expected Unavailable, got {error:?}");
    };
    eprintln!("{reason}");
    assert!(!reason.contains("scheme"), "{reason}");
}
