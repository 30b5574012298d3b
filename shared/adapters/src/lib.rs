//! Adapters for the domain ports: the AWS implementations used in Lambda (feature `aws`)
//! and the embedded ones the local runner uses (feature `embedded`).

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(any(feature = "aws", feature = "embedded"))]
mod rules;
