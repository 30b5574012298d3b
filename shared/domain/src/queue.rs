//! The queue port: one message queue with at-least-once delivery, shaped like SQS.
//!
//! A received message stays in the queue, invisible for its visibility timeout; unless
//! it is deleted (with the receipt of that delivery) within that time it is delivered
//! again, with its receive count one higher. A queue may be set up (by its adapter or
//! the infrastructure) to move a message received more than a given number of times to
//! a dead-letter queue. Consumers must therefore be idempotent.
//!
//! Two adapters implement it: SQS (`adapters::aws`) and a SQLite file
//! (`adapters::embedded`); `adapters/tests/queue_conformance.rs` holds them to the same
//! behaviour.

use async_trait::async_trait;
use std::time::Duration;

/// The largest message body (SQS's limit).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The longest delay before a new message may be received (SQS's limit).
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// The longest visibility timeout (SQS's limit).
pub const MAX_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// The longest a receive may wait for a message (SQS's long-poll limit).
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// The most messages one receive returns.
pub const MAX_RECEIVE: usize = 10;

/// One delivery of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The message's id, the same on every delivery.
    pub id: String,
    /// Names this delivery: deleting or changing the visibility needs it.
    pub receipt: String,
    pub body: String,
    /// How many times the message has been received, this delivery included.
    pub receive_count: u32,
}

/// What a receive asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveRequest {
    /// 1..=[`MAX_RECEIVE`].
    pub max_messages: usize,
    /// How long the received messages stay invisible to other receivers.
    pub visibility_timeout: Duration,
    /// Long poll: wait up to this long for a message when none is visible.
    pub wait: Duration,
}

impl ReceiveRequest {
    pub fn new(max_messages: usize, visibility_timeout: Duration, wait: Duration) -> Self {
        Self {
            max_messages,
            visibility_timeout,
            wait,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The request breaks a rule of the port (sizes, limits). A programming error.
    #[error("invalid queue request: {0}")]
    Invalid(String),
    /// The receipt names no delivery that is still in flight (the message was deleted,
    /// or its visibility timeout ran out and it may have been delivered again).
    #[error("the receipt names no message in flight")]
    NotInFlight,
    /// The backend failed or could not be reached.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

/// The queue port. One instance is one queue.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Sends `body`, receivable after `delay` (at most [`MAX_DELAY`]). Returns the id.
    async fn send(&self, body: &str, delay: Duration) -> Result<String, QueueError>;

    /// Up to `max_messages` visible messages, waiting up to `wait` for the first one.
    /// Returns an empty list when none came in time.
    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Deletes the message of this delivery. Deleting a message already deleted is not
    /// an error.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;

    /// Makes the message of this delivery visible again after `timeout` from now (zero:
    /// at once), instead of when its visibility timeout runs out.
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError>;
}

/// Checks the port rules of a send, so every adapter refuses the same requests.
pub fn validate_send(body: &str, delay: Duration) -> Result<(), QueueError> {
    if body.is_empty() || body.len() > MAX_MESSAGE_BYTES {
        return Err(QueueError::Invalid(format!(
            "a message body holds 1..={MAX_MESSAGE_BYTES} bytes"
        )));
    }
    if delay > MAX_DELAY {
        return Err(QueueError::Invalid(format!(
            "a delay is at most {MAX_DELAY:?}"
        )));
    }
    Ok(())
}

pub fn validate_receive(request: &ReceiveRequest) -> Result<(), QueueError> {
    if request.max_messages == 0 || request.max_messages > MAX_RECEIVE {
        return Err(QueueError::Invalid(format!(
            "a receive takes 1..={MAX_RECEIVE} messages"
        )));
    }
    validate_visibility(request.visibility_timeout)?;
    if request.wait > MAX_WAIT {
        return Err(QueueError::Invalid(format!(
            "a receive waits at most {MAX_WAIT:?}"
        )));
    }
    Ok(())
}

pub fn validate_visibility(timeout: Duration) -> Result<(), QueueError> {
    if timeout > MAX_VISIBILITY_TIMEOUT {
        return Err(QueueError::Invalid(format!(
            "a visibility timeout is at most {MAX_VISIBILITY_TIMEOUT:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(validate_send("x", Duration::ZERO).is_ok());
        assert!(validate_send("", Duration::ZERO).is_err());
        assert!(validate_send(&"x".repeat(MAX_MESSAGE_BYTES + 1), Duration::ZERO).is_err());
        assert!(validate_send("x", MAX_DELAY + Duration::from_secs(1)).is_err());
        let ok = ReceiveRequest::new(10, Duration::from_secs(30), MAX_WAIT);
        assert!(validate_receive(&ok).is_ok());
        assert!(
            validate_receive(&ReceiveRequest {
                max_messages: 0,
                ..ok
            })
            .is_err()
        );
        assert!(
            validate_receive(&ReceiveRequest {
                max_messages: 11,
                ..ok
            })
            .is_err()
        );
        assert!(
            validate_receive(&ReceiveRequest {
                wait: Duration::from_secs(21),
                ..ok
            })
            .is_err()
        );
        assert!(validate_visibility(MAX_VISIBILITY_TIMEOUT + Duration::from_secs(1)).is_err());
    }
}
