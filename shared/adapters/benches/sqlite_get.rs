//! Point-read throughput of the SQLite table on a 2-worker tokio runtime, with `get`
//! inline on the async workers and on the blocking pool. Prints a table.
//!
//! `cargo bench -p adapters --bench sqlite_get`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use adapters::embedded::{ReadMode, SqliteOptions, SqliteTable};
use domain::store::{Attributes, Condition, Item, Key, Table};

const ITEMS: usize = 10_000;
const TASKS: usize = 64;
const RUN: Duration = Duration::from_secs(3);

fn main() {
    println!("| get mode | concurrent tasks | gets/s | mean latency |");
    println!("|---|---|---|---|");
    for mode in [
        ReadMode::Inline,
        ReadMode::Blocking,
        ReadMode::Inline,
        ReadMode::Blocking,
    ] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (rate, latency) = runtime.block_on(measure(mode));
        println!("| {mode:?} | {TASKS} | {rate:.0} | {latency:.1} µs |");
    }
}

async fn measure(mode: ReadMode) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions {
        get_mode: mode,
        ..SqliteOptions::default()
    };
    let table =
        Arc::new(SqliteTable::open_with(&dir.path().join("bench.db"), options).expect("open"));
    let mut batch = Vec::new();
    for n in 0..ITEMS {
        let mut attributes = Attributes::new();
        attributes.insert("name".into(), format!("Contract {n}").into());
        attributes.insert("amount".into(), (n as i64 * 1000).into());
        batch.push(domain::store::WriteOp::Put {
            item: Item::new(
                Key::new(format!("T#bench#{}", n % 100), format!("C#{n:06}")),
                attributes,
            ),
            condition: Condition::None,
        });
        if batch.len() == 100 {
            table
                .transact_write(std::mem::take(&mut batch))
                .await
                .expect("load");
        }
    }
    let done = Arc::new(AtomicU64::new(0));
    let nanos = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let table = Arc::clone(&table);
        let done = Arc::clone(&done);
        let nanos = Arc::clone(&nanos);
        tasks.push(tokio::spawn(async move {
            let mut n = task * 7919;
            while start.elapsed() < RUN {
                n = (n + 104_729) % ITEMS;
                let key = Key::new(format!("T#bench#{}", n % 100), format!("C#{n:06}"));
                let began = Instant::now();
                let item = table.get(&key).await.expect("get");
                nanos.fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
                assert!(item.is_some());
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let count = done.load(Ordering::Relaxed) as f64;
    (
        count / start.elapsed().as_secs_f64(),
        nanos.load(Ordering::Relaxed) as f64 / count / 1000.0,
    )
}
