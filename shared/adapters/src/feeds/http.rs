//! The HTTP behaviour every feed shares: one client per feed with timeouts and our
//! User-Agent, retries with backoff that honour `Retry-After`, and error text with the
//! secrets taken out.

use super::FeedSetupError;
use chrono::{DateTime, Utc};
use domain::rates::Source;
use domain::rates::feed::FeedError;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::Duration;

/// How often and how patiently a feed retries a request that failed for a reason that
/// may pass: a transport error or timeout, HTTP 429, or a 5xx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff; each retry doubles it (plus jitter).
    pub base_delay: Duration,
    /// No wait is longer. A `Retry-After` asking for more ends the retries at once, with
    /// `FeedError::RateLimited { retry_after }` on a 429.
    pub max_delay: Duration,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed between two reads of an answer.
    pub read_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Retries in milliseconds, for tests against a loopback server.
    pub fn fast_for_tests() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
        }
    }

    /// The wait before retry number `retry` (0-based) when the source said nothing:
    /// `base · 2^retry`, capped, with the upper half jittered so that many clients do
    /// not come back in step.
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(16));
        let full = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let half = full / 2;
        let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = match spread {
            0 => 0,
            spread => random_u64() % (spread + 1),
        };
        half + Duration::from_nanos(jitter)
    }
}

/// A random number from the standard library's per-instance hash keys: enough for
/// jitter, without a dependency.
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// Answers larger than this are refused rather than held in memory (the ECB's full
/// history is about 7 MB).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// How much of an error answer is read to explain it.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// What a successful GET brought.
pub(crate) enum Fetched {
    Body(Vec<u8>),
    /// HTTP 204: the source has nothing for what was asked.
    NoContent,
}

/// A feed's HTTP client.
pub(crate) struct FeedHttp {
    client: reqwest::Client,
    retry: RetryPolicy,
    source: Source,
    /// Taken out of every error text (API keys travel in query strings and headers).
    secrets: Vec<String>,
}

impl FeedHttp {
    pub(crate) fn new(
        source: Source,
        retry: RetryPolicy,
        headers: HeaderMap,
        secrets: Vec<String>,
    ) -> Result<Self, FeedSetupError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("leasedesk-rates/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(retry.connect_timeout)
            .read_timeout(retry.read_timeout)
            .build()
            .map_err(|error| FeedSetupError::Client(describe(&error.without_url())))?;
        let secrets = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        Ok(Self {
            client,
            retry,
            source,
            secrets,
        })
    }

    /// GET `url`, retrying what may pass. Requests of one feed are made one at a time by
    /// its callers, which keeps us within the sources' rate limits.
    pub(crate) async fn get(&self, url: &Url) -> Result<Fetched, FeedError> {
        let mut retry = 0;
        loop {
            let (error, wait) = match self.attempt(url).await {
                Attempt::Done(result) => return result.map_err(|e| self.redact_error(e)),
                Attempt::Again { error, wait } => (self.redact_error(error), wait),
            };
            if retry >= self.retry.max_retries {
                tracing::warn!(source = %self.source, path = url.path(), %error, "giving up after retries");
                return Err(error);
            }
            let delay = wait.unwrap_or_else(|| self.retry.backoff(retry));
            if delay > self.retry.max_delay {
                tracing::warn!(source = %self.source, path = url.path(), ?delay, "source asks to wait longer than we do");
                return Err(error);
            }
            tracing::info!(source = %self.source, path = url.path(), %error, ?delay, retry, "retrying");
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    async fn attempt(&self, url: &Url) -> Attempt {
        // The path only: the query may hold an API key.
        tracing::debug!(source = %self.source, path = url.path(), "GET");
        let mut response = match self.client.get(url.clone()).send().await {
            Ok(response) => response,
            Err(error) => {
                return Attempt::Again {
                    error: FeedError::Unavailable(describe(&error.without_url())),
                    wait: None,
                };
            }
        };
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Attempt::Done(Ok(Fetched::NoContent));
        }
        if status.is_success() {
            return match read_body(&mut response, MAX_BODY_BYTES).await {
                Ok(body) => Attempt::Done(Ok(Fetched::Body(body))),
                Err(BodyError::TooLarge) => Attempt::Done(Err(FeedError::Malformed(format!(
                    "the answer is larger than {MAX_BODY_BYTES} bytes"
                )))),
                Err(BodyError::Transport(error)) => Attempt::Again {
                    error: FeedError::Unavailable(describe(&error.without_url())),
                    wait: None,
                },
            };
        }
        let retry_after = retry_after(response.headers(), Utc::now());
        let body = read_body(&mut response, MAX_ERROR_BODY_BYTES)
            .await
            .unwrap_or_default();
        let explanation = explain(status, &body);
        if status == StatusCode::TOO_MANY_REQUESTS {
            Attempt::Again {
                error: FeedError::RateLimited { retry_after },
                wait: retry_after,
            }
        } else if status.is_server_error() {
            Attempt::Again {
                error: FeedError::Unavailable(explanation),
                wait: (status == StatusCode::SERVICE_UNAVAILABLE)
                    .then_some(retry_after)
                    .flatten(),
            }
        } else if status.is_client_error() {
            Attempt::Done(Err(FeedError::Refused(explanation)))
        } else {
            Attempt::Done(Err(FeedError::Malformed(format!(
                "unexpected answer {explanation}"
            ))))
        }
    }

    /// `text` with every secret replaced, also in its percent-encoded form.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "[redacted]");
            let encoded = url_encode(secret);
            if encoded != *secret {
                text = text.replace(encoded.as_str(), "[redacted]");
            }
        }
        text
    }

    pub(crate) fn redact_error(&self, error: FeedError) -> FeedError {
        match error {
            FeedError::Unavailable(text) => FeedError::Unavailable(self.redact(&text)),
            FeedError::Malformed(text) => FeedError::Malformed(self.redact(&text)),
            FeedError::Refused(text) => FeedError::Refused(self.redact(&text)),
            limited @ FeedError::RateLimited { .. } => limited,
        }
    }
}

enum Attempt {
    Done(Result<Fetched, FeedError>),
    /// Failed for a reason that may pass; `wait` is what the source asked for.
    Again {
        error: FeedError,
        wait: Option<Duration>,
    },
}

enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

async fn read_body(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its causes, which is where reqwest says what actually went wrong
/// ("Connection refused", "operation timed out").
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` as a number of seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`) is a valid RFC 2822 date.
    let when = DateTime::parse_from_rfc2822(text).ok()?;
    Some(
        (when.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The status and the source's own explanation, from the usual JSON error shapes
/// (`message`, `error.info`, `title`…) or else the start of the body's text.
fn explain(status: StatusCode, body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json_message(&json))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        });
    let message: String = message.chars().take(300).collect();
    if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {message}")
    }
}

fn json_message(json: &serde_json::Value) -> Option<String> {
    const KEYS: [&str; 6] = ["message", "Message", "info", "detail", "title", "error"];
    match json {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Object(fields) => KEYS
            .iter()
            .find_map(|key| fields.get(*key).and_then(json_message)),
        _ => None,
    }
}

/// `text` as `application/x-www-form-urlencoded` writes it in a query string (the way
/// `Url::query_pairs_mut` does), to find a secret in a URL.
fn url_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                encoded.push(char::from(byte))
            }
            b' ' => encoded.push('+'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// A header that never shows in debug output.
pub(crate) fn secret_header(
    name: &'static str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), FeedSetupError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        FeedSetupError::Config(format!(
            "the {name} header value has characters HTTP forbids"
        ))
    })?;
    value.set_sensitive(true);
    Ok((HeaderName::from_static(name), value))
}

/// A base URL that can have path segments added, without a trailing slash.
pub(crate) fn base_url(text: &str) -> Result<Url, FeedSetupError> {
    let invalid = |reason: &str| FeedSetupError::InvalidUrl {
        url: text.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(text.trim_end_matches('/')).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.cannot_be_a_base() || url.query().is_some() {
        return Err(invalid("it must be a plain base URL without a query"));
    }
    Ok(url)
}

/// `base` with `segments` added to its path.
pub(crate) fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stays_under_the_cap() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = policy.backoff(0);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let third = policy.backoff(2);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
            assert!(policy.backoff(30) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = DateTime::parse_from_rfc3339("2024-05-08T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 08 May 2024 10:01:30 GMT"),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(90)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 08 May 2024 09:00:00 GMT"),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn explanations_come_from_the_body() {
        let riksbank =
            br#"{"statusCode": 429, "message": "Rate limit is exceeded. Try again in 7 seconds."}"#;
        assert_eq!(
            explain(StatusCode::TOO_MANY_REQUESTS, riksbank),
            "HTTP 429 Too Many Requests: Rate limit is exceeded. Try again in 7 seconds."
        );
        let fixer = br#"{"success": false, "error": {"code": 101, "info": "No key."}}"#;
        assert_eq!(
            explain(StatusCode::UNAUTHORIZED, fixer),
            "HTTP 401 Unauthorized: No key."
        );
        assert_eq!(
            explain(StatusCode::NOT_FOUND, b"<h1>Not\n  found</h1>"),
            "HTTP 404 Not Found: <h1>Not found</h1>"
        );
        assert_eq!(
            explain(StatusCode::BAD_GATEWAY, b""),
            "HTTP 502 Bad Gateway"
        );
    }

    #[test]
    fn secrets_are_redacted_plain_and_encoded() {
        let http = FeedHttp::new(
            Source::Fixer,
            RetryPolicy::default(),
            HeaderMap::new(),
            vec!["k3y/+é".to_owned(), String::new()],
        )
        .unwrap();
        let text = "GET /latest?access_key=k3y%2F%2B%C3%A9 failed; key k3y/+é";
        assert_eq!(
            http.redact(text),
            "GET /latest?access_key=[redacted] failed; key [redacted]"
        );
    }

    #[test]
    fn url_encoding_matches_the_query_strings_we_build() {
        for text in ["plain", "a b+c/d=e&f", "ö€*-._~!"] {
            let mut url = Url::parse("http://x/").unwrap();
            url.query_pairs_mut().append_pair("k", text);
            assert_eq!(url.query().unwrap(), format!("k={}", url_encode(text)));
        }
    }

    #[test]
    fn base_urls_must_be_plain_http() {
        assert!(base_url("https://api.riksbank.se/swea/v1/").is_ok());
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("mailto:a@b").is_err());
        assert!(base_url("http://x/api?k=1").is_err());
        let base = base_url("http://127.0.0.1:1/swea/v1/").unwrap();
        assert_eq!(
            join(&base, &["Observations", "SECBREPOEFF", "2024-05-01"]).as_str(),
            "http://127.0.0.1:1/swea/v1/Observations/SECBREPOEFF/2024-05-01"
        );
    }
}
