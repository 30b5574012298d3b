//! The DNS port: the one question the domain asks the name system — which TXT records
//! a name has — and the ways that question can go unanswered. Proving that an
//! organization controls a domain (`crate::sso_domains`) rests on it. The adapter is
//! `adapters::dns` (hickory-resolver over the system's name servers).

use async_trait::async_trait;

/// Looks names up in the DNS.
#[async_trait]
pub trait DnsResolver: Send + Sync {
    /// The TXT records at `name` (a fully qualified name, without the trailing dot),
    /// each as its character-strings joined without separator (as RFC 7208 3.3 reads
    /// a record split into several strings), in the order the name server gave them.
    ///
    /// A name that does not exist (NXDOMAIN) or has no TXT record answers an empty
    /// list: that is an answer. Only a look-up that got no usable answer is an error.
    async fn txt_records(&self, name: &str) -> Result<Vec<String>, DnsError>;
}

/// Why a look-up got no answer. Neither says anything about the records.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// No name server answered in time.
    #[error("no name server answered in time")]
    Timeout,
    /// The name servers answered with a failure (SERVFAIL, REFUSED, ...) or could not
    /// be reached.
    #[error("the name servers failed: {0}")]
    Failed(String),
}

/// Whether `name` (ASCII, lower case: IDNA already applied) is a host name of at least
/// two labels: labels of 1–63 letters, digits and inner hyphens, at most 253
/// characters, and a top-level label that is not all digits (that would be an address).
pub fn is_domain_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}
