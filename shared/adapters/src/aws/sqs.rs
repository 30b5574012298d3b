//! [`domain::queue::Queue`] on an SQS standard queue. The dead-letter queue and its
//! `maxReceiveCount` are the queue's redrive policy, set where the queue is made (the
//! SAM template; [`SqsQueue::create`] for tests and local tools).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use domain::queue::{
    Queue, QueueError, ReceiveRequest, ReceivedMessage, validate_receive, validate_send,
    validate_visibility,
};

/// [`Queue`] on one SQS queue, named by its URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

fn unavailable<E, R>(error: SdkError<E, R>) -> QueueError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    QueueError::Unavailable(DisplayErrorContext(&error).to_string())
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// The queue at `url`, with a client from the shared SDK configuration.
    pub fn from_config(config: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self::new(Client::new(config), url)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates the queue `name` (or finds it), with a redrive policy to the queue whose
    /// ARN is `dead_letter.0` after `dead_letter.1` receives.
    pub async fn create(
        client: Client,
        name: &str,
        dead_letter: Option<(&str, u32)>,
    ) -> Result<Self, QueueError> {
        let mut request = client.create_queue().queue_name(name);
        if let Some((arn, max_receives)) = dead_letter {
            let policy = serde_json::json!({
                "deadLetterTargetArn": arn,
                "maxReceiveCount": max_receives.to_string(),
            });
            request = request.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        let output = request.send().await.map_err(unavailable)?;
        let url = output
            .queue_url
            .ok_or_else(|| QueueError::Unavailable("CreateQueue returned no URL".into()))?;
        Ok(Self::new(client, url))
    }

    /// The queue's ARN (for another queue's redrive policy).
    pub async fn arn(&self) -> Result<String, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .attributes
            .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| QueueError::Unavailable("the queue has no ARN".into()))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, body: &str, delay: Duration) -> Result<String, QueueError> {
        validate_send(body, delay)?;
        let output = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(seconds(delay))
            .send()
            .await
            .map_err(unavailable)?;
        output
            .message_id
            .ok_or_else(|| QueueError::Unavailable("SendMessage returned no id".into()))
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, QueueError> {
        validate_receive(&request)?;
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(request.max_messages as i32)
            .visibility_timeout(seconds(request.visibility_timeout))
            .wait_time_seconds(seconds(request.wait))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|message| {
                let receive_count = message
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|count| count.parse().ok())
                    .unwrap_or(1);
                match (message.message_id, message.receipt_handle) {
                    (Some(id), Some(receipt)) => Ok(ReceivedMessage {
                        id,
                        receipt,
                        body: message.body.unwrap_or_default(),
                        receive_count,
                    }),
                    _ => Err(QueueError::Unavailable(
                        "a received message lacks its id or receipt".into(),
                    )),
                }
            })
            .collect()
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        validate_visibility(timeout)?;
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds(timeout))
            .send()
            .await
            .map_err(|error| match error.code() {
                Some("MessageNotInflight" | "AWS.SimpleQueueService.MessageNotInflight")
                | Some("ReceiptHandleIsInvalid") => QueueError::NotInFlight,
                _ => unavailable(error),
            })?;
        Ok(())
    }
}
