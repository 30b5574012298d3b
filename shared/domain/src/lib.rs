//! Leasedesk's domain: the business models and rules, the services that apply them, and
//! the port traits through which they reach storage, files, queues, mail and the clock.
//! Nothing here knows about HTTP, Lambda or AWS.

pub mod access;
pub mod accounts;
pub mod activity;
pub mod audit;
pub mod audit_log;
pub mod blobs;
pub mod clock;
pub mod contracts;
pub mod dns;
pub mod ids;
pub mod import;
pub mod input;
pub mod jobs;
pub mod keys;
pub mod mail;
pub mod members;
pub mod modules;
pub mod money;
pub mod org_settings;
pub mod organization;
pub mod password_reset;
pub mod personal_data;
pub mod portfolio;
pub mod queue;
pub mod rates;
pub mod retention;
pub mod schedule;
mod secret_token;
pub mod secrets;
pub mod sessions;
pub mod single_sign_on;
pub mod sso;
pub mod sso_domains;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod throttle;
pub mod totp;
pub mod two_factor;
pub mod validation;
