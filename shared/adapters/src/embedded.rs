//! The embedded table: [`domain::store::Table`] on one SQLite file, for the local runner.
//!
//! Layout: one `items` table keyed by `(pk, sk)` (`WITHOUT ROWID`, so rows are stored in
//! key order like a DynamoDB partition) and a partial index on
//! `(gsi1pk, gsi1sk, pk, sk)` for the secondary index. Text compares with SQLite's BINARY
//! collation, which is UTF-8 byte order: the order DynamoDB uses.
//!
//! Concurrency: every write goes to one writer thread that owns the only read-write
//! connection, so writes are serialised and never block a tokio worker on `fsync`.
//! The writer commits whatever requests have queued up in one transaction (group commit),
//! each request inside its own savepoint so a failed condition undoes only that request.
//! Reads use a small pool of read-only connections, which WAL lets run beside the writer.
//!
//! Durability: WAL with `synchronous=FULL`, so a write is on disk before it is
//! acknowledged.
//!
//! The embedded queue ([`queue`], its own SQLite file), blob store ([`blobs`], a
//! folder), mailer ([`outbox`], a maildir folder) and secret vault ([`secrets`], a folder
//! of owner-only files) live in submodules.

pub mod blobs;
pub mod outbox;
pub mod queue;
pub mod secrets;

pub use blobs::{FolderBlobs, blob_routes};
pub use outbox::{Outbox, ReceivedMail};
pub use queue::{DeadLetter, SqliteQueue};
pub use secrets::FolderSecrets;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use domain::store::{
    Attributes, Condition, Cursor, Index, IndexKey, Item, Key, Page, Query, StoreError, Table,
    Update, WriteOp, validate_key,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params, params_from_iter};
use tokio::sync::oneshot;

use crate::rules::{self, SortRange};

/// The schema this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk      TEXT NOT NULL,
    sk      TEXT NOT NULL,
    gsi1pk  TEXT,
    gsi1sk  TEXT,
    version INTEGER NOT NULL,
    ttl     INTEGER,
    attrs   TEXT NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_gsi1 ON items (gsi1pk, gsi1sk, pk, sk)
    WHERE gsi1pk IS NOT NULL;
";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Most requests the writer folds into one commit. An import keeps a thousand
/// transactions in flight; committing them together writes each page they share once.
/// The end-date index is what they share most: its entries land on random pages, and a
/// commit writes nearly every page of it once the index is large, so fewer, larger
/// commits write it fewer times (an import of 100,000 contracts: about 0.5 s faster
/// than with commits of up to 256).
const MAX_GROUP_COMMIT: usize = 1024;
/// WAL pages between two checkpoints (SQLite's default is 1,000). Contracts land on
/// scattered pages (the end-date index, the savings ranking), and a checkpoint copies
/// each page once however often it changed since the last one: every 10,000 pages
/// (80 MiB) halves the bytes a large import writes.
const CHECKPOINT_PAGES: i64 = 10_000;
/// The size the WAL file is cut back to after a checkpoint has emptied it.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// The writer's page cache, in KiB (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// Database pages of 8 KiB rather than SQLite's 4 KiB. In a `WITHOUT ROWID` table a row
/// is kept whole in its page only up to about an eighth of the page; beyond that its tail
/// goes to an overflow page of its own. Audit events (about 1–2 KB: a contract before
/// and after) fit whole in 8 KiB pages, which halves the file and the bytes written per
/// contract compared with 4 KiB pages.
const PAGE_SIZE: i64 = 8192;

const COLUMNS: &str = "pk, sk, gsi1pk, gsi1sk, version, ttl, attrs";

/// How reads reach SQLite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// On the calling async task, behind the reader pool's mutex. A point read from the
    /// page cache takes microseconds, less than a hand-off to the blocking pool costs.
    Inline,
    /// On tokio's blocking pool (`spawn_blocking`).
    Blocking,
}

/// Tuning for [`SqliteTable::open_with`].
#[derive(Clone, Copy, Debug)]
pub struct SqliteOptions {
    /// Read-only connections kept open (more are opened on demand and then dropped).
    pub read_connections: usize,
    /// How `get` runs. Queries always use the blocking pool: a page of up to 1000 items
    /// can take milliseconds, too long to hold an async worker.
    pub get_mode: ReadMode,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            read_connections: 8,
            // Measured with `cargo bench -p adapters --bench sqlite_get` (2 cores, 2 tokio
            // workers, 64 concurrent callers, 10k items): inline ~570,000 gets/s, about
            // 1.7 µs each; spawn_blocking ~24,000 gets/s, dominated by thread hand-offs
            // and by the blocking pool growing past the reader pool. A point read is
            // shorter than a context switch, so it runs where it is asked for.
            get_mode: ReadMode::Inline,
        }
    }
}

/// [`Table`] on a SQLite file.
pub struct SqliteTable {
    readers: Arc<ReaderPool>,
    options: SqliteOptions,
    writer: Option<mpsc::Sender<WriteRequest>>,
    writer_thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SqliteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTable")
            .field("path", &self.readers.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SqliteTable {
    /// Opens (creating if missing) the table in the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        let writer = open_writer(path)?;
        let readers = Arc::new(ReaderPool {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            keep: options.read_connections.max(1),
        });
        // Open one reader now so a bad path fails here, not on the first read.
        let first = readers.open()?;
        readers.lock().push(first);

        let (sender, receiver) = mpsc::channel();
        let writer_thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(writer, receiver))
            .map_err(|error| {
                StoreError::Unavailable(format!("cannot start the SQLite writer thread: {error}"))
            })?;
        Ok(Self {
            readers,
            options,
            writer: Some(sender),
            writer_thread: Some(writer_thread),
        })
    }

    async fn write(&self, job: WriteJob) -> Result<WriteOutcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.writer
            .as_ref()
            .ok_or_else(writer_gone)?
            .send(WriteRequest { job, reply })
            .map_err(|_| writer_gone())?;
        outcome.await.map_err(|_| writer_gone())?
    }

    async fn read<T: Send + 'static>(
        &self,
        mode: ReadMode,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        match mode {
            ReadMode::Inline => self.readers.with(read),
            ReadMode::Blocking => {
                let readers = Arc::clone(&self.readers);
                tokio::task::spawn_blocking(move || readers.with(read))
                    .await
                    .map_err(|error| {
                        StoreError::Unavailable(format!("SQLite read task failed: {error}"))
                    })?
            }
        }
    }
}

impl Drop for SqliteTable {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop; joining closes the file before the
        // table is gone, so a reopen right after sees a quiet database.
        drop(self.writer.take());
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

#[async_trait]
impl Table for SqliteTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        validate_key(key)?;
        let key = key.clone();
        self.read(self.options.get_mode, move |conn| load(conn, &key))
            .await
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        rules::check_item(&item)?;
        let put = PreparedOp::Put {
            row: StoredRow::of(&item)?,
            condition,
        };
        self.write(WriteJob::Put(put)).await.map(drop)
    }

    async fn update(&self, update: Update) -> Result<Item, StoreError> {
        rules::check_update(&update)?;
        match self.write(WriteJob::Update(update)).await? {
            WriteOutcome::Updated(item) => Ok(item),
            _ => Err(unexpected_outcome()),
        }
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<Option<Item>, StoreError> {
        validate_key(key)?;
        match self.write(WriteJob::Delete(key.clone(), condition)).await? {
            WriteOutcome::Deleted(old) => Ok(old),
            _ => Err(unexpected_outcome()),
        }
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        let range = rules::check_query(&query)?;
        if range == SortRange::Nothing {
            return Ok(Page::default());
        }
        let plan = QueryPlan::new(&query, &range);
        let limit = query.limit;
        let index = query.index;
        let mut items = self
            .read(ReadMode::Blocking, move |conn| plan.run(conn))
            .await?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| cursor_of(last, index))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        rules::check_transaction(&ops)?;
        let ops = ops
            .into_iter()
            .map(PreparedOp::of)
            .collect::<Result<Vec<_>, _>>()?;
        self.write(WriteJob::Transact(ops)).await.map(drop)
    }
}

fn cursor_of(item: &Item, index: Index) -> Cursor {
    Cursor {
        key: item.key.clone(),
        index_key: match index {
            Index::Primary => None,
            Index::Gsi1 => item.index_key.clone(),
        },
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the SQLite writer has stopped".into())
}

fn unexpected_outcome() -> StoreError {
    StoreError::Unavailable("the SQLite writer answered with the wrong outcome".into())
}

fn sqlite_error(error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("SQLite: {error}"))
}

// ---------------------------------------------------------------------------------------
// Opening and schema

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|error| {
        StoreError::Unavailable(format!("cannot open {}: {error}", path.display()))
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
    use_page_size(&conn, path)?;
    let journal: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sqlite_error)?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "{} cannot use WAL (journal mode {journal})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite_error)?;
    // A large write (an import) must not spill dirty pages mid-transaction, and each
    // request's savepoint journal belongs in memory, not in a temporary file.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .map_err(sqlite_error)?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(sqlite_error)?;
    conn.set_prepared_statement_cache_capacity(32);
    conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)
        .map_err(sqlite_error)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
        .map_err(sqlite_error)?;
    migrate(&conn)?;
    Ok(conn)
}

/// Gives the file [`PAGE_SIZE`] pages: at once when it is new, by rewriting it
/// (`VACUUM`, once) when an earlier build made it with other pages.
fn use_page_size(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let pragma = |name: &str| -> Result<i64, StoreError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .map_err(sqlite_error)
    };
    if pragma("page_size")? == PAGE_SIZE {
        return Ok(());
    }
    let existing = pragma("page_count")? > 0;
    if existing {
        tracing::info!(
            path = %path.display(),
            "rewriting the database with {PAGE_SIZE}-byte pages (once)"
        );
        // The page size of a WAL database cannot change; leave WAL for the rewrite.
        conn.pragma_update(None, "journal_mode", "DELETE")
            .map_err(sqlite_error)?;
    }
    conn.pragma_update(None, "page_size", PAGE_SIZE)
        .map_err(sqlite_error)?;
    if existing {
        conn.execute_batch("VACUUM").map_err(sqlite_error)?;
    }
    Ok(())
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(sqlite_error)?;
    let result = (|| {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(sqlite_error)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "the database has schema version {version}; this build knows up to {SCHEMA_VERSION}"
            )));
        }
        if version < 1 {
            conn.execute_batch(SCHEMA_V1).map_err(sqlite_error)?;
        }
        // Later schema versions add `if version < N { ... }` steps here.
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sqlite_error)
    })();
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    conn.execute_batch(end).map_err(sqlite_error)?;
    result
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    keep: usize,
}

impl ReaderPool {
    fn lock(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|error| {
            StoreError::Unavailable(format!("cannot open {}: {error}", self.path.display()))
        })?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Runs `read` on an idle connection (the mutex is held only to take and return it).
    fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        let mut idle = self.lock();
        if idle.len() < self.keep {
            idle.push(conn);
        }
        result
    }
}

// ---------------------------------------------------------------------------------------
// Rows

fn item_from_row(row: &Row<'_>) -> rusqlite::Result<Item> {
    let version: i64 = row.get(4)?;
    let attrs: String = row.get(6)?;
    let attributes: Attributes = serde_json::from_str(&attrs).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(error))
    })?;
    let index_key = match (
        row.get::<_, Option<String>>(2)?,
        row.get::<_, Option<String>>(3)?,
    ) {
        (Some(pk), Some(sk)) => Some(IndexKey { pk, sk }),
        _ => None,
    };
    Ok(Item {
        key: Key {
            pk: row.get(0)?,
            sk: row.get(1)?,
        },
        index_key,
        version: u64::try_from(version).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Integer,
                Box::new(error),
            )
        })?,
        expires_at: row.get(5)?,
        attributes,
    })
}

fn load(conn: &Connection, key: &Key) -> Result<Option<Item>, StoreError> {
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM items WHERE pk = ?1 AND sk = ?2"
        ))
        .map_err(sqlite_error)?;
    statement
        .query_row(params![key.pk, key.sk], item_from_row)
        .optional()
        .map_err(sqlite_error)
}

/// The version and expiry of the item under `key`, without reading its attributes.
fn stamp(conn: &Connection, key: &Key) -> Result<Option<Stamp>, StoreError> {
    let mut statement = conn
        .prepare_cached("SELECT version, ttl FROM items WHERE pk = ?1 AND sk = ?2")
        .map_err(sqlite_error)?;
    statement
        .query_row(params![key.pk, key.sk], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?))
        })
        .optional()
        .map_err(sqlite_error)?
        .map(|(version, expires_at)| {
            Ok(Stamp {
                version: u64::try_from(version)
                    .map_err(|_| StoreError::Unavailable(format!("stored version {version}")))?,
                expires_at,
            })
        })
        .transpose()
}

/// Inserts `row` unless an item is stored under its key (`false`: nothing written).
fn insert_new_row(conn: &Connection, row: &StoredRow) -> Result<bool, StoreError> {
    match write_row(conn, "INSERT", row) {
        Ok(()) => Ok(true),
        Err(rusqlite::Error::SqliteFailure(error, _))
            if error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Ok(false)
        }
        Err(other) => Err(sqlite_error(other)),
    }
}

fn store(conn: &Connection, item: &Item) -> Result<(), StoreError> {
    store_row(conn, &StoredRow::of(item)?)
}

fn store_row(conn: &Connection, row: &StoredRow) -> Result<(), StoreError> {
    write_row(conn, "INSERT OR REPLACE", row).map_err(sqlite_error)
}

/// `verb` (`INSERT`, `INSERT OR REPLACE`) of `row` into the table.
fn write_row(conn: &Connection, verb: &str, row: &StoredRow) -> rusqlite::Result<()> {
    let mut statement = conn.prepare_cached(&format!(
        "{verb} INTO items ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))?;
    statement.execute(params![
        row.key.pk,
        row.key.sk,
        row.index_key.as_ref().map(|index| &index.pk),
        row.index_key.as_ref().map(|index| &index.sk),
        row.version,
        row.expires_at,
        row.attrs,
    ])?;
    Ok(())
}

fn remove(conn: &Connection, key: &Key) -> Result<(), StoreError> {
    let mut statement = conn
        .prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2")
        .map_err(sqlite_error)?;
    statement
        .execute(params![key.pk, key.sk])
        .map_err(sqlite_error)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Queries

/// A query turned into SQL text plus its parameters (built on the async side, run on a
/// reader connection).
struct QueryPlan {
    sql: String,
    params: Vec<String>,
}

/// One end of a sort-key range: the value and whether it is included.
type Bound = Option<(String, bool)>;

/// Keeps the tighter of two lower bounds (`upper == false`) or upper bounds.
fn tighten(current: Bound, candidate: (String, bool), upper: bool) -> Bound {
    Some(match current {
        None => candidate,
        Some(existing) => {
            let tighter = if upper {
                candidate.0 < existing.0 || (candidate.0 == existing.0 && !candidate.1)
            } else {
                candidate.0 > existing.0 || (candidate.0 == existing.0 && !candidate.1)
            };
            if tighter { candidate } else { existing }
        }
    })
}

impl QueryPlan {
    fn new(query: &Query, range: &SortRange<'_>) -> Self {
        let (partition_column, sort_column) = match query.index {
            Index::Primary => ("pk", "sk"),
            Index::Gsi1 => ("gsi1pk", "gsi1sk"),
        };
        let mut lower: Bound = None;
        let mut upper: Bound = None;
        match range {
            SortRange::All | SortRange::Nothing => {}
            SortRange::Prefix(prefix) => {
                lower = Some(((*prefix).to_owned(), true));
                upper = rules::prefix_upper_bound(prefix).map(|bound| (bound, false));
            }
            SortRange::Between(low, high) => {
                lower = Some(((*low).to_owned(), true));
                upper = Some(((*high).to_owned(), true));
            }
            SortRange::AtMost(high) => upper = Some(((*high).to_owned(), true)),
        }

        // The cursor narrows the range on the sort column (so SQLite seeks straight to
        // it); in the secondary index, items with equal gsi1sk are ordered by (pk, sk).
        let mut tie_break = None;
        if let Some(cursor) = &query.start_after {
            match (query.index, &cursor.index_key) {
                (Index::Primary, _) => {
                    let bound = (cursor.key.sk.clone(), false);
                    if query.forward {
                        lower = tighten(lower, bound, false);
                    } else {
                        upper = tighten(upper, bound, true);
                    }
                }
                (Index::Gsi1, Some(index_key)) => {
                    let bound = (index_key.sk.clone(), true);
                    if query.forward {
                        lower = tighten(lower, bound, false);
                    } else {
                        upper = tighten(upper, bound, true);
                    }
                    tie_break = Some([
                        index_key.sk.clone(),
                        cursor.key.pk.clone(),
                        cursor.key.sk.clone(),
                    ]);
                }
                // Rejected by `validate_query`.
                (Index::Gsi1, None) => {}
            }
        }

        let mut sql = format!("SELECT {COLUMNS} FROM items WHERE {partition_column} = ?");
        let mut params = vec![query.partition.clone()];
        if let Some((value, inclusive)) = lower {
            sql.push_str(&format!(
                " AND {sort_column} {} ?",
                if inclusive { ">=" } else { ">" }
            ));
            params.push(value);
        }
        if let Some((value, inclusive)) = upper {
            sql.push_str(&format!(
                " AND {sort_column} {} ?",
                if inclusive { "<=" } else { "<" }
            ));
            params.push(value);
        }
        if let Some(tie) = tie_break {
            sql.push_str(if query.forward {
                " AND (gsi1sk, pk, sk) > (?, ?, ?)"
            } else {
                " AND (gsi1sk, pk, sk) < (?, ?, ?)"
            });
            params.extend(tie);
        }
        let direction = if query.forward { "ASC" } else { "DESC" };
        match query.index {
            Index::Primary => sql.push_str(&format!(" ORDER BY sk {direction}")),
            Index::Gsi1 => sql.push_str(&format!(
                " ORDER BY gsi1sk {direction}, pk {direction}, sk {direction}"
            )),
        }
        // One more than asked, to know whether another page exists.
        sql.push_str(&format!(" LIMIT {}", query.limit + 1));
        Self { sql, params }
    }

    fn run(self, conn: &Connection) -> Result<Vec<Item>, StoreError> {
        let mut statement = conn.prepare_cached(&self.sql).map_err(sqlite_error)?;
        let rows = statement
            .query_map(params_from_iter(self.params.iter()), item_from_row)
            .map_err(sqlite_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sqlite_error)
    }
}

// ---------------------------------------------------------------------------------------
// Writes

enum WriteJob {
    /// A [`PreparedOp::Put`].
    Put(PreparedOp),
    Update(Update),
    Delete(Key, Condition),
    Transact(Vec<PreparedOp>),
}

/// An item as its row stores it, attributes already in JSON text: serialising happens on
/// the caller's thread, so the one writer thread spends its time in SQLite.
struct StoredRow {
    key: Key,
    index_key: Option<IndexKey>,
    version: i64,
    expires_at: Option<i64>,
    attrs: String,
}

impl StoredRow {
    fn of(item: &Item) -> Result<Self, StoreError> {
        Ok(Self {
            key: item.key.clone(),
            index_key: item.index_key.clone(),
            version: i64::try_from(item.version)
                .map_err(|_| StoreError::Invalid("version is too large".into()))?,
            expires_at: item.expires_at,
            attrs: serde_json::to_string(&item.attributes).map_err(|error| {
                StoreError::Invalid(format!("attributes cannot be stored: {error}"))
            })?,
        })
    }
}

/// A [`WriteOp`] ready for the writer: a put's item already in its row's form.
enum PreparedOp {
    Put {
        row: StoredRow,
        condition: Condition,
    },
    Other(WriteOp),
}

impl PreparedOp {
    fn of(op: WriteOp) -> Result<Self, StoreError> {
        Ok(match op {
            WriteOp::Put { item, condition } => Self::Put {
                row: StoredRow::of(&item)?,
                condition,
            },
            other => Self::Other(other),
        })
    }

    fn key(&self) -> &Key {
        match self {
            Self::Put { row, .. } => &row.key,
            Self::Other(op) => op.key(),
        }
    }

    fn condition(&self) -> Condition {
        match self {
            Self::Put { condition, .. } => *condition,
            Self::Other(op) => op.condition(),
        }
    }
}

enum WriteOutcome {
    Done,
    Updated(Item),
    Deleted(Option<Item>),
}

struct WriteRequest {
    job: WriteJob,
    reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

fn run_writer(mut conn: Connection, requests: mpsc::Receiver<WriteRequest>) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP_COMMIT {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, batch);
    }
}

/// Applies a batch of requests in one transaction and answers them only after the
/// commit is durable. A refused request writes nothing (see [`apply_request`]), so the
/// others commit with it.
fn run_batch(conn: &mut Connection, batch: Vec<WriteRequest>) {
    if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
        let error = sqlite_error(error);
        for request in batch {
            let _ = request.reply.send(Err(error_copy(&error)));
        }
        return;
    }
    let mut answers = Vec::with_capacity(batch.len());
    let mut broken = None;
    for request in batch {
        if broken.is_some() {
            answers.push((request.reply, Err(writer_gone())));
            continue;
        }
        let result = apply_request(conn, &request.job);
        if let Err(error) = &result.1 {
            broken = Some(error_copy(error));
        }
        answers.push((request.reply, result.0));
    }
    let committed = match broken {
        Some(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
        None => conn.execute_batch("COMMIT").map_err(|error| {
            let _ = conn.execute_batch("ROLLBACK");
            sqlite_error(error)
        }),
    };
    for (reply, result) in answers {
        let answer = match (&committed, result) {
            (Ok(()), result) => result,
            // Refusals wrote nothing, so they stand; anything else was not committed.
            (Err(_), Err(refusal)) => Err(refusal),
            (Err(error), Ok(_)) => Err(error_copy(error)),
        };
        // The caller may have gone away (cancelled future); the write stands anyway.
        let _ = reply.send(answer);
    }
}

fn error_copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::ConditionFailed => StoreError::ConditionFailed,
        StoreError::TransactionCanceled { failed } => StoreError::TransactionCanceled {
            failed: failed.clone(),
        },
        StoreError::Invalid(message) => StoreError::Invalid(message.clone()),
        StoreError::Unavailable(message) => StoreError::Unavailable(message.clone()),
    }
}

/// Runs one request. Returns the request's own result, plus an error when a write
/// failed half-way through a transaction and the batch must be abandoned.
///
/// No savepoint: a refused or invalid transaction leaves nothing written (see
/// [`apply_transaction`]), and a request of one operation writes one row (SQLite undoes
/// a failed statement by itself). Savepoints cost: inside one, SQLite copies every page a write touches that
/// an earlier request of the batch touched already (to the sub-journal), and the
/// requests of a batch share most of their pages.
fn apply_request(
    conn: &Connection,
    job: &WriteJob,
) -> (Result<WriteOutcome, StoreError>, Result<(), StoreError>) {
    match job {
        WriteJob::Put(put) => (
            match apply_op(conn, put) {
                Ok(true) => Ok(WriteOutcome::Done),
                Ok(false) => Err(StoreError::ConditionFailed),
                Err(error) => Err(error),
            },
            Ok(()),
        ),
        WriteJob::Update(update) => (apply_update(conn, update), Ok(())),
        WriteJob::Delete(key, condition) => (apply_delete(conn, key, *condition), Ok(())),
        WriteJob::Transact(ops) => apply_transaction(conn, ops),
    }
}

/// A transaction without a savepoint. Its new items (`NotExists`, the bulk of an
/// import) are inserted first, without reading their keys: the primary key refuses one
/// that exists, and then the rows this transaction inserted are deleted again, which
/// restores the state before it exactly, since none of them existed. Every other
/// condition is checked, and every updated item computed, before anything is written.
fn apply_transaction(
    conn: &Connection,
    ops: &[PreparedOp],
) -> (Result<WriteOutcome, StoreError>, Result<(), StoreError>) {
    let refused = |conn: &Connection| match refusal(conn, ops) {
        Ok(refusal) => (Err(refusal), Ok(())),
        Err(error) => (Err(error), Ok(())),
    };
    let writes = match plan_transaction(conn, ops) {
        Ok(writes) => writes,
        Err(StoreError::TransactionCanceled { .. }) => return refused(conn),
        Err(error) => return (Err(error), Ok(())),
    };
    let mut inserted: Vec<&Key> = Vec::new();
    for write in &writes {
        let PlannedWrite::Insert(row) = write else {
            continue;
        };
        match insert_new_row(conn, row) {
            Ok(true) => inserted.push(&row.key),
            Ok(false) => {
                for key in inserted {
                    if let Err(error) = remove(conn, key) {
                        return (Err(error_copy(&error)), Err(error));
                    }
                }
                return refused(conn);
            }
            Err(error) => return (Err(error_copy(&error)), Err(error)),
        }
    }
    for write in &writes {
        if matches!(write, PlannedWrite::Insert(_)) {
            continue;
        }
        if let Err(error) = write.apply(conn) {
            return (Err(error_copy(&error)), Err(error));
        }
    }
    (Ok(WriteOutcome::Done), Ok(()))
}

/// Why a transaction is refused: every operation whose condition does not hold now.
fn refusal(conn: &Connection, ops: &[PreparedOp]) -> Result<StoreError, StoreError> {
    let mut failed = Vec::new();
    for (position, op) in ops.iter().enumerate() {
        if !check_op(conn, op)? {
            failed.push(position);
        }
    }
    Ok(StoreError::TransactionCanceled { failed })
}

fn apply_update(conn: &Connection, update: &Update) -> Result<WriteOutcome, StoreError> {
    let current = load(conn, &update.key)?;
    if !holds(update.condition, current.as_ref().map(Stamp::of)) {
        return Err(StoreError::ConditionFailed);
    }
    let item = updated(current, update)?;
    store(conn, &item)?;
    Ok(WriteOutcome::Updated(item))
}

fn apply_delete(
    conn: &Connection,
    key: &Key,
    condition: Condition,
) -> Result<WriteOutcome, StoreError> {
    let current = load(conn, key)?;
    if !holds(condition, current.as_ref().map(Stamp::of)) {
        return Err(StoreError::ConditionFailed);
    }
    if current.is_some() {
        remove(conn, key)?;
    }
    Ok(WriteOutcome::Deleted(current))
}

/// One write of a transaction whose conditions all hold.
enum PlannedWrite<'a> {
    /// A new row (its key was checked free).
    Insert(&'a StoredRow),
    Replace(&'a StoredRow),
    Store(Box<Item>),
    Remove(&'a Key),
}

impl PlannedWrite<'_> {
    fn apply(&self, conn: &Connection) -> Result<(), StoreError> {
        match self {
            Self::Insert(row) => write_row(conn, "INSERT", row).map_err(sqlite_error),
            Self::Replace(row) => store_row(conn, row),
            Self::Store(item) => store(conn, item),
            Self::Remove(key) => remove(conn, key),
        }
    }
}

/// The writes of a transaction, or its refusal: every condition but `NotExists` is
/// checked, and every updated item computed against the state before the transaction
/// (its keys are distinct), before anything is written.
fn plan_transaction<'a>(
    conn: &Connection,
    ops: &'a [PreparedOp],
) -> Result<Vec<PlannedWrite<'a>>, StoreError> {
    let mut writes = Vec::with_capacity(ops.len());
    let mut failed = Vec::new();
    for (position, op) in ops.iter().enumerate() {
        let write = match op {
            PreparedOp::Other(WriteOp::Update(update)) => {
                let stored = load(conn, &update.key)?;
                if holds(update.condition, stored.as_ref().map(Stamp::of)) {
                    Some(PlannedWrite::Store(Box::new(updated(stored, update)?)))
                } else {
                    None
                }
            }
            // Checked by inserting (see `apply_transaction`).
            PreparedOp::Put {
                row,
                condition: Condition::NotExists,
            } => Some(PlannedWrite::Insert(row)),
            _ if !check_op(conn, op)? => None,
            PreparedOp::Put { row, .. } => Some(PlannedWrite::Replace(row)),
            PreparedOp::Other(WriteOp::Delete { key, .. }) => Some(PlannedWrite::Remove(key)),
            PreparedOp::Other(_) => continue,
        };
        match write {
            Some(write) => writes.push(write),
            None => failed.push(position),
        }
    }
    if failed.is_empty() {
        Ok(writes)
    } else {
        Err(StoreError::TransactionCanceled { failed })
    }
}

/// Applies one operation if its condition holds; `false` when it does not (nothing
/// written). A put that needs no item or no earlier version is written without reading
/// the stored item first.
fn apply_op(conn: &Connection, op: &PreparedOp) -> Result<bool, StoreError> {
    match op {
        PreparedOp::Put {
            row,
            condition: Condition::None,
        } => store_row(conn, row).map(|()| true),
        PreparedOp::Put {
            row,
            condition: Condition::NotExists,
        } => insert_new_row(conn, row),
        PreparedOp::Other(WriteOp::Update(update)) => {
            let stored = load(conn, &update.key)?;
            if !holds(update.condition, stored.as_ref().map(Stamp::of)) {
                return Ok(false);
            }
            store(conn, &updated(stored, update)?)?;
            Ok(true)
        }
        _ => {
            if !check_op(conn, op)? {
                return Ok(false);
            }
            match op {
                PreparedOp::Put { row, .. } => store_row(conn, row)?,
                PreparedOp::Other(WriteOp::Delete { key, .. }) => remove(conn, key)?,
                PreparedOp::Other(_) => {}
            }
            Ok(true)
        }
    }
}

/// Whether the condition of `op` holds for the item stored now.
fn check_op(conn: &Connection, op: &PreparedOp) -> Result<bool, StoreError> {
    Ok(match op.condition() {
        Condition::None => true,
        condition => holds(condition, stamp(conn, op.key())?),
    })
}

/// What a condition looks at in the item stored under a key.
#[derive(Clone, Copy, Debug)]
struct Stamp {
    version: u64,
    expires_at: Option<i64>,
}

impl Stamp {
    fn of(item: &Item) -> Self {
        Self {
            version: item.version,
            expires_at: item.expires_at,
        }
    }
}

/// Whether `condition` holds for the item currently stored (DynamoDB semantics: an item
/// without `ttl` never counts as expired).
fn holds(condition: Condition, current: Option<Stamp>) -> bool {
    match condition {
        Condition::None => true,
        Condition::NotExists => current.is_none(),
        Condition::NotExistsOrExpired { now } => {
            current.is_none_or(|stamp| stamp.expires_at.is_some_and(|at| at <= now))
        }
        Condition::Exists => current.is_some(),
        Condition::VersionIs(version) => current.is_some_and(|stamp| stamp.version == version),
    }
}

/// The item after `update` is applied to `current` (or to a new item).
fn updated(current: Option<Item>, update: &Update) -> Result<Item, StoreError> {
    let mut item = match current {
        Some(mut item) => {
            item.version = item
                .version
                .checked_add(1)
                .filter(|version| i64::try_from(*version).is_ok())
                .ok_or_else(|| StoreError::Invalid("version overflow".into()))?;
            item
        }
        None => Item::new(update.key.clone(), Attributes::new()),
    };
    for (name, value) in &update.set {
        item.attributes.insert(name.clone(), value.clone());
    }
    for name in &update.remove {
        item.attributes.remove(name);
    }
    for (name, by) in &update.increment {
        let total = match item.attributes.get(name) {
            None => i128::from(*by),
            Some(serde_json::Value::Number(number)) => {
                let current = number
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| number.as_u64().map(i128::from))
                    .ok_or_else(|| not_an_integer(name))?;
                current + i128::from(*by)
            }
            Some(_) => return Err(not_an_integer(name)),
        };
        let total = if let Ok(small) = i64::try_from(total) {
            serde_json::Value::from(small)
        } else if let Ok(large) = u64::try_from(total) {
            serde_json::Value::from(large)
        } else {
            return Err(StoreError::Invalid(format!(
                "incrementing {name:?} leaves the 64-bit integer range"
            )));
        };
        item.attributes.insert(name.clone(), total);
    }
    Ok(item)
}

fn not_an_integer(name: &str) -> StoreError {
    StoreError::Invalid(format!("attribute {name:?} is not an integer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attributes(value: serde_json::Value) -> Attributes {
        match value {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn update_of_a_missing_item_creates_version_one() {
        let mut update = Update::new(Key::new("p", "s"));
        update.set.insert("name".into(), json!("Volvo"));
        update.increment.push(("count".into(), 2));
        let item = updated(None, &update).unwrap();
        assert_eq!(item.version, 1);
        assert_eq!(
            item.attributes,
            attributes(json!({"name": "Volvo", "count": 2}))
        );
    }

    #[test]
    fn increments_stay_exact_across_the_i64_range() {
        let current = Item::new(Key::new("p", "s"), attributes(json!({"n": i64::MAX})));
        let mut update = Update::new(Key::new("p", "s"));
        update.increment.push(("n".into(), 1));
        let item = updated(Some(current), &update).unwrap();
        assert_eq!(item.attributes["n"], json!(i64::MAX as u64 + 1));
        assert_eq!(item.version, 2);

        let text = Item::new(Key::new("p", "s"), attributes(json!({"n": "x"})));
        assert!(matches!(
            updated(Some(text), &update),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn conditions_follow_dynamodb() {
        let item = Item::new(Key::new("p", "s"), Attributes::new())
            .with_version(3)
            .expiring_at(100);
        assert!(holds(
            Condition::NotExistsOrExpired { now: 100 },
            Some(Stamp::of(&item))
        ));
        assert!(!holds(
            Condition::NotExistsOrExpired { now: 99 },
            Some(Stamp::of(&item))
        ));
        let forever = Item::new(Key::new("p", "s"), Attributes::new());
        assert!(!holds(
            Condition::NotExistsOrExpired { now: i64::MAX },
            Some(Stamp::of(&forever))
        ));
        assert!(holds(Condition::VersionIs(3), Some(Stamp::of(&item))));
        assert!(!holds(Condition::VersionIs(3), None));
        assert!(holds(Condition::NotExists, None));
    }

    #[tokio::test]
    async fn a_database_with_other_pages_is_rewritten_once_and_keeps_its_items() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("old.sqlite3");
        {
            // As the builds before 8 KiB pages made it.
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "page_size", 4096).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                &format!(
                    "INSERT INTO items ({COLUMNS}) VALUES ('p', 's', NULL, NULL, 3, NULL, ?1)"
                ),
                [r#"{"name":"Volvo"}"#],
            )
            .unwrap();
        }
        let page_size = |path: &Path| -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row("PRAGMA page_size", [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(page_size(&path), 4096);

        let table = SqliteTable::open(&path).unwrap();
        let item = table.get(&Key::new("p", "s")).await.unwrap().unwrap();
        assert_eq!(item.version, 3);
        assert_eq!(item.attributes, attributes(json!({"name": "Volvo"})));
        drop(table);
        assert_eq!(page_size(&path), PAGE_SIZE);

        // A new file gets the pages at once.
        let fresh = folder.path().join("new.sqlite3");
        drop(SqliteTable::open(&fresh).unwrap());
        assert_eq!(page_size(&fresh), PAGE_SIZE);
    }

    #[test]
    fn cursor_tightens_the_prefix_range() {
        let query = Query::partition("p")
            .begins_with("a")
            .start_after(Some(Cursor {
                key: Key::new("p", "a5"),
                index_key: None,
            }));
        let range = rules::check_query(&query).unwrap();
        let plan = QueryPlan::new(&query, &range);
        assert_eq!(
            plan.sql,
            format!(
                "SELECT {COLUMNS} FROM items WHERE pk = ? AND sk > ? AND sk < ? ORDER BY sk ASC LIMIT 101"
            )
        );
        assert_eq!(plan.params, ["p", "a5", "b"]);
    }
}
