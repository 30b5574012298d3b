//! Adapters for the domain ports: the AWS implementations used in Lambda (feature `aws`)
//! and the embedded ones the local runner uses (feature `embedded`), and the HTTP clients
//! of the public rate sources (feature `feeds`). Both mailers send the same MIME message,
//! written in `mime`.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "feeds")]
pub mod feeds;
#[cfg(any(feature = "aws", feature = "embedded"))]
mod mime;
#[cfg(any(feature = "aws", feature = "embedded"))]
mod rules;
