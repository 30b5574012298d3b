//! Adapters for the domain ports: the AWS implementations used in Lambda (feature `aws`)
//! and the embedded ones the local runner uses (feature `embedded`), the HTTP clients
//! of the public rate sources (feature `feeds`), the OpenID Connect relying party for
//! single sign-on (feature `oidc`), and the DNS resolver that checks the records
//! proving an organization's domains (feature `dns`). Both mailers send the same MIME
//! message, written in `mime`.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "dns")]
pub mod dns;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "feeds")]
pub mod feeds;
#[cfg(any(feature = "aws", feature = "embedded"))]
mod mime;
#[cfg(feature = "oidc")]
pub mod oidc;
#[cfg(any(feature = "aws", feature = "embedded"))]
mod rules;
