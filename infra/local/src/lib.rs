//! leasedesk
