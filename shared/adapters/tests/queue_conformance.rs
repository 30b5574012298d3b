//! The queue port's conformance suite: every test is written once against `&dyn Queue`
//! and run against both adapters — SQLite (a fresh file per test) and SQS (the real SDK
//! against a shared `moto_server` on loopback; see `support`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters::aws::SqsQueue;
use adapters::embedded::{DeadLetter, SqliteQueue};
use domain::queue::{Queue, QueueError, ReceiveRequest, ReceivedMessage};
use support::unique_name;

const LONG: Duration = Duration::from_secs(60);

fn request(visibility: Duration, wait: Duration) -> ReceiveRequest {
    ReceiveRequest::new(10, visibility, wait)
}

async fn receive(queue: &dyn Queue, visibility: Duration, wait: Duration) -> Vec<ReceivedMessage> {
    queue
        .receive(request(visibility, wait))
        .await
        .expect("receive")
}

async fn receive_one(queue: &dyn Queue, visibility: Duration) -> ReceivedMessage {
    let mut messages = receive(queue, visibility, Duration::from_secs(5)).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    messages.remove(0)
}

// ---------------------------------------------------------------------------------------
// The tests

async fn round_trip_and_delete(queue: &dyn Queue) {
    assert!(receive(queue, LONG, Duration::ZERO).await.is_empty());
    let id = queue
        .send(r#"{"jobId":"å-1"}"#, Duration::ZERO)
        .await
        .unwrap();
    let message = receive_one(queue, LONG).await;
    assert_eq!(message.id, id);
    assert_eq!(message.body, r#"{"jobId":"å-1"}"#);
    assert_eq!(message.receive_count, 1);
    // In flight: nobody else gets it.
    assert!(receive(queue, LONG, Duration::ZERO).await.is_empty());
    queue.delete(&message.receipt).await.unwrap();
    // Gone for good: no redelivery, and its receipt no longer changes anything.
    queue
        .change_visibility(&message.receipt, Duration::ZERO)
        .await
        .expect_err("a deleted message is not in flight");
    assert!(receive(queue, LONG, Duration::ZERO).await.is_empty());
}

async fn several_messages_in_one_receive(queue: &dyn Queue) {
    for n in 0..3 {
        queue.send(&format!("m{n}"), Duration::ZERO).await.unwrap();
    }
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let messages = receive(queue, LONG, Duration::from_secs(1)).await;
        bodies.extend(messages.into_iter().map(|m| m.body));
        if bodies.len() == 3 {
            break;
        }
    }
    bodies.sort();
    assert_eq!(bodies, ["m0", "m1", "m2"]);
    let limited = queue
        .receive(ReceiveRequest::new(1, LONG, Duration::ZERO))
        .await
        .unwrap();
    assert!(limited.is_empty(), "all three are in flight");
}

async fn visibility_timeout_redelivers_with_a_higher_count(queue: &dyn Queue) {
    queue.send("again", Duration::ZERO).await.unwrap();
    let first = receive_one(queue, Duration::from_secs(1)).await;
    assert_eq!(first.receive_count, 1);
    assert!(receive(queue, LONG, Duration::ZERO).await.is_empty());
    // After the visibility timeout it comes back: same message, new delivery.
    let second = receive_one(queue, LONG).await;
    assert_eq!(second.id, first.id);
    assert_eq!(second.receive_count, 2);
    assert_ne!(second.receipt, first.receipt);
    // Made visible at once, it is delivered a third time.
    queue
        .change_visibility(&second.receipt, Duration::ZERO)
        .await
        .unwrap();
    let third = receive_one(queue, LONG).await;
    assert_eq!(
        (third.id.as_str(), third.receive_count),
        (first.id.as_str(), 3)
    );
    queue.delete(&third.receipt).await.unwrap();
    assert!(receive(queue, LONG, Duration::ZERO).await.is_empty());
}

async fn a_longer_visibility_keeps_it_hidden(queue: &dyn Queue) {
    queue.send("slow work", Duration::ZERO).await.unwrap();
    let message = receive_one(queue, Duration::from_secs(1)).await;
    queue
        .change_visibility(&message.receipt, Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(receive(queue, LONG, Duration::ZERO).await.is_empty());
    queue.delete(&message.receipt).await.unwrap();
}

async fn a_delayed_message_waits(queue: &dyn Queue) {
    let sent = Instant::now();
    queue.send("later", Duration::from_secs(2)).await.unwrap();
    assert!(receive(queue, LONG, Duration::ZERO).await.is_empty());
    let message = receive_one(queue, LONG).await;
    assert_eq!(message.body, "later");
    assert!(
        sent.elapsed() >= Duration::from_millis(1500),
        "delivered after {:?}",
        sent.elapsed()
    );
    queue.delete(&message.receipt).await.unwrap();
}

async fn a_long_poll_returns_when_a_message_arrives(queue: Arc<dyn Queue>) {
    let started = Instant::now();
    let sender = queue.clone();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        sender.send("woken", Duration::ZERO).await.unwrap();
    });
    let messages = receive(queue.as_ref(), LONG, Duration::from_secs(10)).await;
    let waited = started.elapsed();
    send.await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body, "woken");
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(8),
        "waited {waited:?}"
    );
    // With nothing to come, a long poll waits its time out and returns nothing.
    let started = Instant::now();
    queue.delete(&messages[0].receipt).await.expect("delete");
    assert!(
        receive(queue.as_ref(), LONG, Duration::from_secs(1))
            .await
            .is_empty()
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

/// `queue` sends to `dead_letter` after 2 receives.
async fn received_too_often_goes_to_the_dead_letter_queue(
    queue: &dyn Queue,
    dead_letter: &dyn Queue,
) {
    queue.send("poison", Duration::ZERO).await.unwrap();
    for count in 1..=2 {
        let message = receive_one(queue, LONG).await;
        assert_eq!(message.receive_count, count);
        queue
            .change_visibility(&message.receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    assert!(
        receive(queue, LONG, Duration::from_secs(1))
            .await
            .is_empty(),
        "a third delivery"
    );
    let dead = receive_one(dead_letter, LONG).await;
    assert_eq!(dead.body, "poison");
    dead_letter.delete(&dead.receipt).await.unwrap();
}

async fn invalid_requests_are_refused(queue: &dyn Queue) {
    let invalid = |result: Result<_, QueueError>| matches!(result, Err(QueueError::Invalid(_)));
    assert!(invalid(queue.send("", Duration::ZERO).await.map(drop)));
    assert!(invalid(
        queue.send("x", Duration::from_secs(901)).await.map(drop)
    ));
    assert!(invalid(
        queue
            .receive(ReceiveRequest::new(11, LONG, Duration::ZERO))
            .await
            .map(drop)
    ));
    assert!(invalid(
        queue
            .receive(ReceiveRequest::new(1, LONG, Duration::from_secs(21)))
            .await
            .map(drop)
    ));
}

// ---------------------------------------------------------------------------------------
// The adapters

struct Embedded {
    _folder: tempfile::TempDir,
    queue: Arc<SqliteQueue>,
    dead_letter: Arc<SqliteQueue>,
}

/// Queues that dead-letter after 5 receives (the dead-letter test: after 2).
fn embedded() -> Embedded {
    embedded_with(5)
}

fn embedded_with(max_receives: u32) -> Embedded {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("queue.sqlite3");
    let queue = SqliteQueue::open(
        &path,
        "imports",
        Some(DeadLetter {
            queue: "imports-dlq".into(),
            max_receives,
        }),
    )
    .unwrap();
    let dead_letter = SqliteQueue::open(&path, "imports-dlq", None).unwrap();
    Embedded {
        _folder: folder,
        queue: Arc::new(queue),
        dead_letter: Arc::new(dead_letter),
    }
}

async fn sqs() -> (Arc<SqsQueue>, Arc<SqsQueue>) {
    sqs_with(5).await
}

async fn sqs_with(max_receives: u32) -> (Arc<SqsQueue>, Arc<SqsQueue>) {
    let name = unique_name("queue");
    let dead_letter = SqsQueue::create(support::sqs_client(), &format!("{name}-dlq"), None)
        .await
        .expect("dead-letter queue");
    let arn = dead_letter.arn().await.unwrap();
    let queue = SqsQueue::create(support::sqs_client(), &name, Some((&arn, max_receives)))
        .await
        .expect("queue");
    (Arc::new(queue), Arc::new(dead_letter))
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let embedded = super::embedded();
                    super::$name(embedded.queue.as_ref()).await;
                }
            )*
        }
        mod sqs {
            $(
                #[tokio::test]
                async fn $name() {
                    let (queue, _) = super::sqs().await;
                    super::$name(queue.as_ref()).await;
                }
            )*
        }
    };
}

conformance!(
    round_trip_and_delete,
    several_messages_in_one_receive,
    visibility_timeout_redelivers_with_a_higher_count,
    a_longer_visibility_keeps_it_hidden,
    a_delayed_message_waits,
    invalid_requests_are_refused,
);

#[tokio::test]
async fn sqlite_long_poll() {
    let embedded = embedded();
    a_long_poll_returns_when_a_message_arrives(embedded.queue.clone()).await;
}

#[tokio::test]
async fn sqs_long_poll() {
    let (queue, _) = sqs().await;
    a_long_poll_returns_when_a_message_arrives(queue).await;
}

#[tokio::test]
async fn sqlite_dead_letter() {
    let embedded = embedded_with(2);
    received_too_often_goes_to_the_dead_letter_queue(
        embedded.queue.as_ref(),
        embedded.dead_letter.as_ref(),
    )
    .await;
}

#[tokio::test]
async fn sqs_dead_letter() {
    let (queue, dead_letter) = sqs_with(2).await;
    received_too_often_goes_to_the_dead_letter_queue(queue.as_ref(), dead_letter.as_ref()).await;
}

/// The embedded queue is durable: messages, in flight or not, survive a reopen.
#[tokio::test]
async fn sqlite_messages_survive_a_restart() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("queue.sqlite3");
    {
        let queue = SqliteQueue::open(&path, "imports", None).unwrap();
        queue.send("in flight", Duration::ZERO).await.unwrap();
        queue.send("kept", Duration::ZERO).await.unwrap();
        let taken = queue
            .receive(ReceiveRequest::new(
                1,
                Duration::from_secs(1),
                Duration::ZERO,
            ))
            .await
            .unwrap();
        assert_eq!(taken.len(), 1);
    }
    let queue = SqliteQueue::open(&path, "imports", None).unwrap();
    assert_eq!(queue.count().await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut bodies: Vec<(String, u32)> = receive(&queue, LONG, Duration::ZERO)
        .await
        .into_iter()
        .map(|m| (m.body, m.receive_count))
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [("in flight".to_owned(), 2), ("kept".to_owned(), 1)]
    );
    // Another queue in the same file sees none of them.
    let other = SqliteQueue::open(&path, "other", None).unwrap();
    assert!(receive(&other, LONG, Duration::ZERO).await.is_empty());
}
