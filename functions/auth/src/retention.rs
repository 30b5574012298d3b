//! The daily retention job's entry point (`domain::retention`): what the scheduled
//! Lambda (`src/bin/retention.rs`) and the local runner's scheduler and
//! `leasedesk retention run` call.

use domain::retention::{PolicyError, RetentionPolicy, RetentionReport, RetentionService};
use domain::store::StoreError;

/// The environment variable that sets the retention period, in days.
pub const INACTIVE_DAYS_VARIABLE: &str = "RETENTION_INACTIVE_DAYS";

#[derive(Debug, thiserror::Error)]
pub enum RetentionRunError {
    /// The registry could not be read: nothing was decided.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Some organizations were left for the next run (each logged); the others were
    /// dealt with. Reported as a failure so that the schedule's retries and its
    /// dead-letter alarm see it.
    #[error("{} organizations were left for the next run", .0.failed)]
    Incomplete(RetentionReport),
}

/// The retention period from `RETENTION_INACTIVE_DAYS`, or the default (1826 days) when
/// it is unset or blank.
pub fn policy_from_env() -> Result<RetentionPolicy, PolicyError> {
    match std::env::var(INACTIVE_DAYS_VARIABLE) {
        Ok(days) if !days.trim().is_empty() => RetentionPolicy::parse(&days),
        _ => Ok(RetentionPolicy::default()),
    }
}

/// One run: what the scheduled function does with each EventBridge Scheduler event
/// (its content does not matter).
pub async fn handle_schedule(
    retention: &RetentionService,
    event: &serde_json::Value,
) -> Result<RetentionReport, RetentionRunError> {
    tracing::info!(
        schedule = event["resources"][0].as_str().unwrap_or("-"),
        inactive_days = retention.policy().inactive_days(),
        "retention: scheduled run"
    );
    let report = retention.run().await?;
    if report.failed > 0 {
        return Err(RetentionRunError::Incomplete(report));
    }
    Ok(report)
}
