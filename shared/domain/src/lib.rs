//! Leasedesk's domain: the business models and rules, the services that apply them, and
//! the port traits through which they reach storage and the clock. Nothing here knows
//! about HTTP, Lambda or AWS.

pub mod clock;
pub mod store;
