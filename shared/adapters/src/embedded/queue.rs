//! The embedded queue: [`domain::queue::Queue`] on a SQLite file, for the local runner.
//!
//! One file holds any number of named queues (a queue and its dead-letter queue live
//! side by side). A message is a row with the time it becomes visible; receiving it
//! stamps a new receipt, bumps its receive count and moves its visibility forward, all
//! in one `IMMEDIATE` transaction, so two receivers (threads or processes) never get
//! the same delivery. With a [`DeadLetter`] set, a message already received
//! `max_receives` times is moved to the dead-letter queue instead of being delivered
//! again, as SQS's redrive policy does.
//!
//! Durability: WAL with `synchronous=FULL`; messages survive a restart. Long polls wake
//! at once on a send through any [`SqliteQueue`] of the same file and queue in this
//! process, and otherwise look again every [`POLL_INTERVAL`] (delays, visibility
//! timeouts running out, other processes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use domain::queue::{
    Queue, QueueError, ReceiveRequest, ReceivedMessage, validate_receive, validate_send,
    validate_visibility,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::Notify;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, seq);
";

/// How often a long poll looks again when nothing woke it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Where messages go that were received too often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead-letter queue's name, in the same file.
    pub queue: String,
    /// A message received this many times goes to the dead-letter queue instead of
    /// being delivered again (SQS's `maxReceiveCount`).
    pub max_receives: u32,
}

/// [`Queue`] on a SQLite file.
pub struct SqliteQueue {
    conn: Arc<Mutex<Connection>>,
    name: String,
    dead_letter: Option<DeadLetter>,
    wake: Arc<Notify>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("dead_letter", &self.dead_letter)
            .finish_non_exhaustive()
    }
}

impl SqliteQueue {
    /// Opens (creating if missing) the queue `name` in the SQLite file at `path`.
    pub fn open(
        path: &Path,
        name: &str,
        dead_letter: Option<DeadLetter>,
    ) -> Result<Self, QueueError> {
        if name.is_empty() || dead_letter.as_ref().is_some_and(|d| d.queue == name) {
            return Err(QueueError::Invalid(
                "a queue needs a name other than its dead-letter queue's".into(),
            ));
        }
        if dead_letter.as_ref().is_some_and(|d| d.max_receives == 0) {
            return Err(QueueError::Invalid(
                "max_receives must be at least 1".into(),
            ));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|error| {
            QueueError::Unavailable(format!("cannot open {}: {error}", path.display()))
        })?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sqlite_error)?;
        let journal: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sqlite_error)?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(QueueError::Unavailable(format!(
                "{} cannot use WAL (journal mode {journal})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite_error)?;
        conn.execute_batch(SCHEMA).map_err(sqlite_error)?;
        let wake = waker(path, name);
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            name: name.to_owned(),
            dead_letter,
            wake,
            path: path.to_path_buf(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Messages in the queue, visible or not (for tests and operators).
    pub async fn count(&self) -> Result<usize, QueueError> {
        let name = self.name.clone();
        self.with_conn(move |conn| {
            conn.query_row(
                "SELECT count(*) FROM messages WHERE queue = ?1",
                [name],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(sqlite_error)
        })
        .await
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut conn)
        })
        .await
        .map_err(|error| QueueError::Unavailable(format!("SQLite task failed: {error}")))?
    }

    async fn receive_now(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let name = self.name.clone();
        let dead_letter = self.dead_letter.clone();
        self.with_conn(move |conn| {
            let now = now_millis();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sqlite_error)?;
            let mut delivered = Vec::new();
            let mut after = 0i64;
            'scan: while delivered.len() < max {
                let candidates: Vec<(i64, String, String, u32)> = {
                    let mut select = tx
                        .prepare_cached(
                            "SELECT seq, id, body, receive_count FROM messages
                             WHERE queue = ?1 AND seq > ?2 AND visible_at <= ?3
                             ORDER BY seq LIMIT ?4",
                        )
                        .map_err(sqlite_error)?;
                    let rows = select
                        .query_map(params![name, after, now, max as i64], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                        })
                        .map_err(sqlite_error)?;
                    rows.collect::<Result<_, _>>().map_err(sqlite_error)?
                };
                if candidates.is_empty() {
                    break;
                }
                for (seq, id, body, count) in candidates {
                    after = seq;
                    if let Some(dead) = &dead_letter
                        && count >= dead.max_receives
                    {
                        tx.execute(
                            "UPDATE messages SET queue = ?1, visible_at = ?2, receipt = NULL
                             WHERE seq = ?3",
                            params![dead.queue, now, seq],
                        )
                        .map_err(sqlite_error)?;
                        continue;
                    }
                    let receipt = new_id();
                    tx.execute(
                        "UPDATE messages SET receive_count = receive_count + 1, receipt = ?1,
                         visible_at = ?2 WHERE seq = ?3",
                        params![receipt, now + millis(visibility), seq],
                    )
                    .map_err(sqlite_error)?;
                    delivered.push(ReceivedMessage {
                        id,
                        receipt,
                        body,
                        receive_count: count + 1,
                    });
                    if delivered.len() == max {
                        break 'scan;
                    }
                }
            }
            tx.commit().map_err(sqlite_error)?;
            Ok(delivered)
        })
        .await
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, body: &str, delay: Duration) -> Result<String, QueueError> {
        validate_send(body, delay)?;
        let id = new_id();
        let (name, body, message_id) = (self.name.clone(), body.to_owned(), id.clone());
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO messages (id, queue, body, visible_at) VALUES (?1, ?2, ?3, ?4)",
                params![message_id, name, body, now_millis() + millis(delay)],
            )
            .map(drop)
            .map_err(sqlite_error)
        })
        .await?;
        self.wake.notify_waiters();
        Ok(id)
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, QueueError> {
        validate_receive(&request)?;
        let deadline = Instant::now() + request.wait;
        loop {
            // Registered before looking, so a send between the look and the wait wakes it.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let messages = self
                .receive_now(request.max_messages, request.visibility_timeout)
                .await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !messages.is_empty() || left.is_zero() {
                return Ok(messages);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(left.min(POLL_INTERVAL)) => {}
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let (name, receipt) = (self.name.clone(), receipt.to_owned());
        self.with_conn(move |conn| {
            conn.execute(
                "DELETE FROM messages WHERE queue = ?1 AND receipt = ?2",
                params![name, receipt],
            )
            .map(drop)
            .map_err(sqlite_error)
        })
        .await
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        validate_visibility(timeout)?;
        let (name, receipt) = (self.name.clone(), receipt.to_owned());
        let changed = self
            .with_conn(move |conn| {
                let now = now_millis();
                let in_flight: Option<i64> = conn
                    .query_row(
                        "SELECT seq FROM messages
                         WHERE queue = ?1 AND receipt = ?2 AND visible_at > ?3",
                        params![name, receipt, now],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(sqlite_error)?;
                let Some(seq) = in_flight else {
                    return Ok(false);
                };
                conn.execute(
                    "UPDATE messages SET visible_at = ?1 WHERE seq = ?2",
                    params![now + millis(timeout), seq],
                )
                .map_err(sqlite_error)?;
                Ok(true)
            })
            .await?;
        if !changed {
            return Err(QueueError::NotInFlight);
        }
        if timeout.is_zero() {
            self.wake.notify_waiters();
        }
        Ok(())
    }
}

/// The one [`Notify`] of a queue in a file, shared by every instance in this process.
fn waker(path: &Path, name: &str) -> Arc<Notify> {
    type Wakers = Mutex<HashMap<(PathBuf, String), Arc<Notify>>>;
    static WAKERS: OnceLock<Wakers> = OnceLock::new();
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut wakers = WAKERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    wakers
        .entry((path, name.to_owned()))
        .or_insert_with(|| Arc::new(Notify::new()))
        .clone()
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

fn sqlite_error(error: rusqlite::Error) -> QueueError {
    QueueError::Unavailable(format!("SQLite: {error}"))
}
