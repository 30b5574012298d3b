//! Adapters for the domain ports.
