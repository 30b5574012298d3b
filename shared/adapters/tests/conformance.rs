//! The table port's conformance suite: every test is written once against `&dyn Table`
//! and run against both adapters — SQLite (a fresh file per test) and DynamoDB (the real
//! SDK against a shared `moto_server` on loopback; see `support`).

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use adapters::embedded::SqliteTable;
use domain::store::{
    Attributes, Condition, Cursor, Index, IndexKey, Item, Key, MAX_TRANSACTION_OPS, Page, Query,
    StoreError, Table, Update, WriteOp,
};
use serde_json::{Value, json};
use support::unique;

// ---------------------------------------------------------------------------------------
// Helpers

fn attrs(value: Value) -> Attributes {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn item(pk: &str, sk: &str, value: Value) -> Item {
    Item::new(Key::new(pk, sk), attrs(value))
}

async fn must_get(table: &dyn Table, key: &Key) -> Item {
    table
        .get(key)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{key:?} is missing"))
}

fn sort_keys(page: &Page) -> Vec<&str> {
    page.items.iter().map(|item| item.key.sk.as_str()).collect()
}

/// Reads every page of `query`, checking that `next` is set exactly when more follow.
async fn all_pages(table: &dyn Table, query: Query) -> (Vec<Item>, usize) {
    let limit = query.limit;
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor = None;
    loop {
        let page = table
            .query(query.clone().start_after(cursor))
            .await
            .expect("query");
        pages += 1;
        assert!(page.items.len() <= limit, "page over the limit");
        items.extend(page.items.iter().cloned());
        match page.next {
            Some(next) => {
                assert_eq!(page.items.len(), limit, "a page with a next cursor is full");
                cursor = Some(next);
            }
            None => break,
        }
        assert!(pages < 1000, "pagination does not end");
    }
    (items, pages)
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::Invalid(_))),
        "{what}: expected Invalid, got {result:?}"
    );
}

fn assert_condition_failed<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::ConditionFailed)),
        "{what}: expected ConditionFailed, got {result:?}"
    );
}

fn assert_canceled(result: Result<(), StoreError>, expected: &[usize]) {
    match result {
        Err(StoreError::TransactionCanceled { failed }) => assert_eq!(failed, expected),
        other => panic!("expected TransactionCanceled {expected:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Get and put

async fn get_missing_and_present(table: &dyn Table) {
    let pk = unique("get");
    assert_eq!(table.get(&Key::new(&pk, "A")).await.unwrap(), None);
    let stored = item(&pk, "A", json!({"name": "Volvo FH16", "seats": 2}))
        .with_index(IndexKey::new(format!("{pk}#idx"), "2026-01-01"))
        .with_version(7)
        .expiring_at(4_102_444_800);
    table.put(stored.clone(), Condition::None).await.unwrap();
    assert_eq!(must_get(table, &stored.key).await, stored);
    // Same sort key in another partition, same partition with another sort key: missing.
    assert_eq!(
        table.get(&Key::new(format!("{pk}x"), "A")).await.unwrap(),
        None
    );
    assert_eq!(table.get(&Key::new(&pk, "AA")).await.unwrap(), None);
}

async fn get_returns_expired_items(table: &dyn Table) {
    let pk = unique("expired");
    let stored = item(&pk, "S", json!({})).expiring_at(1);
    table.put(stored.clone(), Condition::None).await.unwrap();
    let read = must_get(table, &stored.key).await;
    assert!(read.is_expired(2));
    assert_eq!(read, stored);
}

async fn put_replaces_the_whole_item(table: &dyn Table) {
    let pk = unique("replace");
    let first = item(&pk, "S", json!({"a": 1, "b": 2}))
        .with_index(IndexKey::new("I", "1"))
        .expiring_at(100);
    table.put(first, Condition::None).await.unwrap();
    let second = item(&pk, "S", json!({"c": 3})).with_version(2);
    table.put(second.clone(), Condition::None).await.unwrap();
    assert_eq!(must_get(table, &second.key).await, second);
}

async fn put_not_exists(table: &dyn Table) {
    let pk = unique("put-not-exists");
    let original = item(&pk, "S", json!({"v": "original"}));
    table
        .put(original.clone(), Condition::NotExists)
        .await
        .unwrap();
    let other = item(&pk, "S", json!({"v": "other"})).with_version(9);
    assert_condition_failed(
        table.put(other, Condition::NotExists).await,
        "put over existing",
    );
    assert_eq!(must_get(table, &original.key).await, original);
}

async fn put_exists(table: &dyn Table) {
    let pk = unique("put-exists");
    let missing = item(&pk, "S", json!({"v": 1}));
    assert_condition_failed(
        table.put(missing.clone(), Condition::Exists).await,
        "put on missing",
    );
    assert_eq!(table.get(&missing.key).await.unwrap(), None);
    table.put(missing.clone(), Condition::None).await.unwrap();
    let replacement = item(&pk, "S", json!({"v": 2})).with_version(2);
    table
        .put(replacement.clone(), Condition::Exists)
        .await
        .unwrap();
    assert_eq!(must_get(table, &missing.key).await, replacement);
}

async fn put_version_is(table: &dyn Table) {
    let pk = unique("put-version");
    let v1 = item(&pk, "S", json!({"v": 1}));
    assert_condition_failed(
        table.put(v1.clone(), Condition::VersionIs(0)).await,
        "version on missing",
    );
    assert_eq!(table.get(&v1.key).await.unwrap(), None);
    table.put(v1.clone(), Condition::NotExists).await.unwrap();
    let v2 = item(&pk, "S", json!({"v": 2})).with_version(2);
    assert_condition_failed(
        table.put(v2.clone(), Condition::VersionIs(2)).await,
        "stale version",
    );
    assert_eq!(must_get(table, &v1.key).await, v1);
    table
        .put(v2.clone(), Condition::VersionIs(1))
        .await
        .unwrap();
    assert_eq!(must_get(table, &v1.key).await, v2);
}

async fn put_not_exists_or_expired(table: &dyn Table) {
    let pk = unique("put-expired");
    let now = 1_700_000_000;
    let condition = Condition::NotExistsOrExpired { now };

    // Missing: holds.
    let session = item(&pk, "S", json!({"n": 1})).expiring_at(now + 60);
    table.put(session.clone(), condition).await.unwrap();
    // Stored and not expired: fails and changes nothing.
    let newer = item(&pk, "S", json!({"n": 2})).expiring_at(now + 120);
    assert_condition_failed(table.put(newer.clone(), condition).await, "live item");
    assert_eq!(must_get(table, &session.key).await, session);
    // Expired (at or before now): holds.
    let later = Condition::NotExistsOrExpired { now: now + 60 };
    table.put(newer.clone(), later).await.unwrap();
    assert_eq!(must_get(table, &session.key).await, newer);
    // An item without ttl never expires.
    let forever = item(&pk, "F", json!({}));
    table.put(forever.clone(), Condition::None).await.unwrap();
    assert_condition_failed(
        table
            .put(
                forever.clone(),
                Condition::NotExistsOrExpired { now: i64::MAX },
            )
            .await,
        "item without ttl",
    );
}

// ---------------------------------------------------------------------------------------
// Update

async fn update_creates_then_bumps_the_version(table: &dyn Table) {
    let pk = unique("update");
    let key = Key::new(&pk, "S");
    let mut create = Update::new(key.clone());
    create.set.insert("name".into(), json!("Scania"));
    create.set.insert("note".into(), json!("temporary"));
    create.increment.push(("count".into(), 5));
    let created = table.update(create).await.unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.index_key, None);
    assert_eq!(created.expires_at, None);
    assert_eq!(
        created.attributes,
        attrs(json!({"name": "Scania", "note": "temporary", "count": 5}))
    );
    assert_eq!(must_get(table, &key).await, created);

    let mut change = Update::new(key.clone());
    change
        .set
        .insert("name".into(), json!({"brand": "Scania", "model": "R500"}));
    change.remove.push("note".into());
    change.remove.push("never-there".into());
    change.increment.push(("count".into(), -7));
    change.increment.push(("fresh".into(), 3));
    let changed = table.update(change).await.unwrap();
    assert_eq!(changed.version, 2);
    assert_eq!(
        changed.attributes,
        attrs(json!({"name": {"brand": "Scania", "model": "R500"}, "count": -2, "fresh": 3}))
    );
    assert_eq!(must_get(table, &key).await, changed);

    // An empty update still bumps the version.
    let bumped = table.update(Update::new(key.clone())).await.unwrap();
    assert_eq!(bumped.version, 3);
    assert_eq!(bumped.attributes, changed.attributes);
}

async fn update_keeps_index_key_and_expiry(table: &dyn Table) {
    let pk = unique("update-keeps");
    let stored = item(&pk, "S", json!({"a": 1}))
        .with_index(IndexKey::new(format!("{pk}#i"), "X"))
        .with_version(41)
        .expiring_at(2_000_000_000);
    table.put(stored.clone(), Condition::None).await.unwrap();
    let mut update = Update::new(stored.key.clone());
    update.set.insert("b".into(), json!(true));
    let after = table.update(update).await.unwrap();
    assert_eq!(after.version, 42);
    assert_eq!(after.index_key, stored.index_key);
    assert_eq!(after.expires_at, stored.expires_at);
    assert_eq!(after.attributes, attrs(json!({"a": 1, "b": true})));
}

async fn update_conditions(table: &dyn Table) {
    let pk = unique("update-conditions");
    let key = Key::new(&pk, "S");

    let mut on_missing = Update::new(key.clone());
    on_missing.set.insert("a".into(), json!(1));
    on_missing.condition = Condition::Exists;
    assert_condition_failed(table.update(on_missing.clone()).await, "Exists on missing");
    on_missing.condition = Condition::VersionIs(1);
    assert_condition_failed(
        table.update(on_missing.clone()).await,
        "VersionIs on missing",
    );
    assert_eq!(
        table.get(&key).await.unwrap(),
        None,
        "a failed update created an item"
    );

    on_missing.condition = Condition::NotExists;
    let created = table.update(on_missing.clone()).await.unwrap();
    assert_eq!(created.version, 1);
    assert_condition_failed(table.update(on_missing).await, "NotExists on existing");

    let mut stale = Update::new(key.clone());
    stale.set.insert("a".into(), json!(2));
    stale.condition = Condition::VersionIs(2);
    assert_condition_failed(table.update(stale.clone()).await, "stale version");
    assert_eq!(must_get(table, &key).await, created);

    stale.condition = Condition::VersionIs(1);
    let updated = table.update(stale.clone()).await.unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.attributes["a"], json!(2));
    // The same expected version cannot win twice.
    assert_condition_failed(table.update(stale).await, "replayed version");

    let mut exists = Update::new(key.clone());
    exists.condition = Condition::Exists;
    assert_eq!(table.update(exists).await.unwrap().version, 3);
}

async fn update_increments_large_integers(table: &dyn Table) {
    let pk = unique("increment");
    let key = Key::new(&pk, "S");
    table
        .put(
            item(&pk, "S", json!({"low": i64::MIN + 1, "high": i64::MAX - 1})),
            Condition::None,
        )
        .await
        .unwrap();
    let mut update = Update::new(key.clone());
    update.increment.push(("low".into(), -1));
    update.increment.push(("high".into(), 1));
    let after = table.update(update).await.unwrap();
    assert_eq!(after.attributes["low"], json!(i64::MIN));
    assert_eq!(after.attributes["high"], json!(i64::MAX));
    assert_eq!(must_get(table, &key).await.attributes, after.attributes);
}

async fn update_increment_of_text_is_invalid(table: &dyn Table) {
    let pk = unique("increment-text");
    let stored = item(&pk, "S", json!({"name": "x"}));
    table.put(stored.clone(), Condition::None).await.unwrap();
    let mut update = Update::new(stored.key.clone());
    update.increment.push(("name".into(), 1));
    assert_invalid(table.update(update).await, "increment of a string");
    assert_eq!(must_get(table, &stored.key).await, stored);
}

async fn update_takes_the_most_increments_with_free_text_names(table: &dyn Table) {
    let pk = unique("increments");
    let key = Key::new(&pk, "S");
    let names: Vec<String> = (0..domain::store::MAX_UPDATE_INCREMENTS)
        .map(|n| format!("lessor|Skåne Leasing {n} AB|debt|SEK"))
        .collect();
    let mut update = Update::new(key.clone());
    update.increment = names.iter().map(|name| (name.clone(), 5)).collect();
    table.update(update.clone()).await.unwrap();
    let after = table.update(update.clone()).await.unwrap();
    assert_eq!(after.version, 2);
    for name in &names {
        assert_eq!(after.attributes[name], json!(10), "{name}");
    }
    update.increment.push(("one more".into(), 1));
    assert_invalid(table.update(update).await, "too many increments");
    assert_eq!(must_get(table, &key).await, after);
}

// ---------------------------------------------------------------------------------------
// Delete

async fn delete_returns_the_old_item_and_honours_conditions(table: &dyn Table) {
    let pk = unique("delete");
    let key = Key::new(&pk, "S");
    assert_eq!(table.delete(&key, Condition::None).await.unwrap(), None);
    assert_condition_failed(
        table.delete(&key, Condition::Exists).await,
        "Exists on missing",
    );

    let stored = item(&pk, "S", json!({"a": [1, 2]}))
        .with_index(IndexKey::new("I", "J"))
        .with_version(3)
        .expiring_at(99);
    table.put(stored.clone(), Condition::None).await.unwrap();
    assert_condition_failed(table.delete(&key, Condition::VersionIs(2)).await, "stale");
    assert_condition_failed(table.delete(&key, Condition::NotExists).await, "NotExists");
    assert_eq!(must_get(table, &key).await, stored);

    let old = table.delete(&key, Condition::VersionIs(3)).await.unwrap();
    assert_eq!(old, Some(stored.clone()));
    assert_eq!(table.get(&key).await.unwrap(), None);

    table.put(stored.clone(), Condition::None).await.unwrap();
    let old = table.delete(&key, Condition::Exists).await.unwrap();
    assert_eq!(old, Some(stored));
    assert_eq!(table.delete(&key, Condition::None).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------
// Query

async fn put_all(table: &dyn Table, pk: &str, sort_keys: &[&str]) {
    for sk in sort_keys {
        table
            .put(item(pk, sk, json!({"label": sk})), Condition::None)
            .await
            .unwrap();
    }
}

async fn query_prefix_is_exact(table: &dyn Table) {
    let pk = unique("prefix");
    let keys = [
        "%",
        "%a",
        "_",
        "_a",
        "a",
        "a%",
        "a%b",
        "a_",
        "a_b",
        "ab",
        "aX",
        "b",
        "é",
        "éa",
        "éé",
        "ê",
        "€1",
        "€€",
        "\u{10FFFF}x",
        "z",
    ];
    put_all(table, &pk, &keys).await;
    // A partition whose name extends this one must never leak in.
    let neighbour = format!("{pk}a");
    put_all(table, &neighbour, &["a%1", "a_1", "ab", "é"]).await;

    let cases: [(&str, &[&str]); 8] = [
        ("%", &["%", "%a"]),
        ("_", &["_", "_a"]),
        ("a%", &["a%", "a%b"]),
        ("a_", &["a_", "a_b"]),
        ("a", &["a", "a%", "a%b", "aX", "a_", "a_b", "ab"]),
        ("é", &["é", "éa", "éé"]),
        ("€", &["€1", "€€"]),
        ("\u{10FFFF}", &["\u{10FFFF}x"]),
    ];
    for (prefix, expected) in cases {
        let page = table
            .query(Query::partition(&pk).begins_with(prefix))
            .await
            .unwrap();
        assert_eq!(sort_keys(&page), expected, "prefix {prefix:?}");
        assert_eq!(page.next, None);
        assert!(page.items.iter().all(|item| item.key.pk == pk));
    }
    let none = table
        .query(Query::partition(&pk).begins_with("a%c"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
    // An empty prefix matches everything.
    let all = table
        .query(Query::partition(&pk).begins_with(""))
        .await
        .unwrap();
    assert_eq!(all.items.len(), keys.len());
}

async fn query_orders_by_utf8_bytes(table: &dyn Table) {
    let pk = unique("order");
    // UTF-16 order would put U+1D11E before U+FFFF; UTF-8 bytes (DynamoDB) put it after.
    let keys = [
        "\u{1D11E}",
        "\u{FFFF}",
        "Z",
        "a",
        "é",
        "B",
        "10",
        "9",
        "#",
        "a b",
        "ab",
    ];
    put_all(table, &pk, &keys).await;
    let mut expected: Vec<&str> = keys.to_vec();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let page = table.query(Query::partition(&pk)).await.unwrap();
    assert_eq!(sort_keys(&page), expected);
    let backward = table.query(Query::partition(&pk).backward()).await.unwrap();
    expected.reverse();
    assert_eq!(sort_keys(&backward), expected);
}

async fn query_between_and_backward(table: &dyn Table) {
    let pk = unique("between");
    let keys = [
        "2026-01-01",
        "2026-01-15",
        "2026-02-01",
        "2026-02-28",
        "2026-03-01",
    ];
    put_all(table, &pk, &keys).await;
    let page = table
        .query(Query::partition(&pk).between("2026-01-15", "2026-02-28"))
        .await
        .unwrap();
    assert_eq!(sort_keys(&page), ["2026-01-15", "2026-02-01", "2026-02-28"]);
    let page = table
        .query(
            Query::partition(&pk)
                .between("2026-01-02", "2026-02")
                .backward(),
        )
        .await
        .unwrap();
    assert_eq!(sort_keys(&page), ["2026-01-15"]);
    let page = table
        .query(
            Query::partition(&pk)
                .between("2026-02", "2026-02~")
                .backward()
                .limit(1),
        )
        .await
        .unwrap();
    assert_eq!(sort_keys(&page), ["2026-02-28"]);
    assert!(page.next.is_some());
    let page = table
        .query(Query::partition(&pk).between("2026-03-01", "2026-03-01"))
        .await
        .unwrap();
    assert_eq!(sort_keys(&page), ["2026-03-01"]);
    assert_eq!(page.next, None);
    let empty = table
        .query(Query::partition(&pk).between("2027", "2028"))
        .await
        .unwrap();
    assert_eq!(empty, Page::default());
    assert_invalid(
        table.query(Query::partition(&pk).between("b", "a")).await,
        "reversed bounds",
    );
    let missing = table
        .query(Query::partition(unique("nothing")))
        .await
        .unwrap();
    assert_eq!(missing, Page::default());
}

async fn query_paginates(table: &dyn Table) {
    let pk = unique("pages");
    let keys: Vec<String> = (0..23).map(|n| format!("ITEM#{n:03}")).collect();
    for key in &keys {
        table
            .put(
                item(&pk, key, json!({"pad": "x".repeat(200)})),
                Condition::None,
            )
            .await
            .unwrap();
    }
    // Not a multiple, an exact multiple, one page exactly, one item per page.
    for (limit, pages) in [(5, 5), (23, 1), (1, 23), (100, 1)] {
        for forward in [true, false] {
            let mut query = Query::partition(&pk).limit(limit);
            query.forward = forward;
            let (items, seen_pages) = all_pages(table, query).await;
            let got: Vec<&str> = items.iter().map(|item| item.key.sk.as_str()).collect();
            let mut expected: Vec<&str> = keys.iter().map(String::as_str).collect();
            if !forward {
                expected.reverse();
            }
            assert_eq!(got, expected, "limit {limit}, forward {forward}");
            assert_eq!(seen_pages, pages, "limit {limit}, forward {forward}");
        }
    }
    // Exact multiple: 24 items in pages of 6 — the fourth page is full and last.
    table
        .put(item(&pk, "ITEM#999", json!({})), Condition::None)
        .await
        .unwrap();
    let (items, pages) = all_pages(table, Query::partition(&pk).limit(6)).await;
    assert_eq!(items.len(), 24);
    assert_eq!(pages, 4);
    let unique_keys: HashSet<_> = items.iter().map(|item| item.key.clone()).collect();
    assert_eq!(unique_keys.len(), 24);
    // Pagination composes with a prefix.
    let (items, pages) =
        all_pages(table, Query::partition(&pk).begins_with("ITEM#01").limit(3)).await;
    let got: Vec<&str> = items.iter().map(|item| item.key.sk.as_str()).collect();
    assert_eq!(
        got,
        [
            "ITEM#010", "ITEM#011", "ITEM#012", "ITEM#013", "ITEM#014", "ITEM#015", "ITEM#016",
            "ITEM#017", "ITEM#018", "ITEM#019"
        ]
    );
    assert_eq!(pages, 4);
}

/// The audit trail's reads: newest first, page after page, inside a window of sort keys
/// that other records of the partition surround; a page resumed from a bare sort key.
async fn query_pages_backward_within_a_range(table: &dyn Table) {
    let pk = unique("window");
    let events: Vec<String> = (0..9)
        .map(|n| format!("AUDIT#2026-11-21T09:00:0{n}.000000Z#e{n}"))
        .collect();
    let mut keys: Vec<&str> = events.iter().map(String::as_str).collect();
    keys.extend(["AB", "AUDIT#", "CONTRACT#1", "ORG"]);
    put_all(table, &pk, &keys).await;
    let window = Query::partition(&pk)
        .between(
            "AUDIT#2026-11-21T09:00:02",
            "AUDIT#2026-11-21T09:00:06.999999Z#~",
        )
        .backward();
    let expected: Vec<&str> = events[2..7].iter().rev().map(String::as_str).collect();
    for (limit, pages) in [(2, 3), (1, 5), (5, 1), (10, 1)] {
        let (items, seen) = all_pages(table, window.clone().limit(limit)).await;
        let got: Vec<&str> = items.iter().map(|item| item.key.sk.as_str()).collect();
        assert_eq!(got, expected, "limit {limit}");
        assert_eq!(seen, pages, "limit {limit}");
    }
    // A client's cursor carries only the sort key of the last item it saw.
    let resumed = table
        .query(window.limit(10).start_after(Some(Cursor {
            key: Key::new(&pk, &events[4]),
            index_key: None,
        })))
        .await
        .unwrap();
    assert_eq!(
        sort_keys(&resumed),
        [events[3].as_str(), events[2].as_str()]
    );
    assert_eq!(resumed.next, None);
}

async fn query_gsi1(table: &dyn Table) {
    let pk = unique("gsi-base");
    let index_partition = unique("gsi");
    // Items in two base partitions share one index partition; some have no index key.
    let dates = [
        "2026-05-01",
        "2026-01-01",
        "2026-03-01",
        "2026-02-01",
        "2026-04-01",
    ];
    for (n, date) in dates.iter().enumerate() {
        let base = if n % 2 == 0 {
            pk.clone()
        } else {
            format!("{pk}#other")
        };
        table
            .put(
                item(&base, &format!("C#{n}"), json!({"n": n}))
                    .with_index(IndexKey::new(&index_partition, *date)),
                Condition::None,
            )
            .await
            .unwrap();
        table
            .put(item(&base, &format!("X#{n}"), json!({})), Condition::None)
            .await
            .unwrap();
    }
    table
        .put(
            item(&pk, "OTHER", json!({}))
                .with_index(IndexKey::new(format!("{index_partition}x"), "2026-01-01")),
            Condition::None,
        )
        .await
        .unwrap();

    let query = Query::partition(&index_partition).on_index(Index::Gsi1);
    let page = table.query(query.clone()).await.unwrap();
    let order: Vec<&str> = page
        .items
        .iter()
        .map(|item| item.index_key.as_ref().expect("indexed").sk.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "2026-01-01",
            "2026-02-01",
            "2026-03-01",
            "2026-04-01",
            "2026-05-01"
        ]
    );
    assert_eq!(page.items[0].key, Key::new(format!("{pk}#other"), "C#1"));
    assert_eq!(page.items[0].attributes, attrs(json!({"n": 1})));
    assert_eq!(page.next, None);

    for (limit, pages) in [(2, 3), (5, 1), (1, 5)] {
        let (items, seen) = all_pages(table, query.clone().limit(limit)).await;
        assert_eq!(items, page.items, "limit {limit}");
        assert_eq!(seen, pages, "limit {limit}");
        let (mut backward, _) = all_pages(table, query.clone().limit(limit).backward()).await;
        backward.reverse();
        assert_eq!(backward, page.items, "backward, limit {limit}");
    }
    let first = table.query(query.clone().limit(2)).await.unwrap();
    let next = first.next.expect("more");
    assert_eq!(next.key, Key::new(format!("{pk}#other"), "C#3"));
    assert_eq!(
        next.index_key,
        Some(IndexKey::new(&index_partition, "2026-02-01"))
    );

    let between = table
        .query(query.clone().between("2026-02-01", "2026-04-01").backward())
        .await
        .unwrap();
    assert_eq!(between.items.len(), 3);
    assert_eq!(
        between.items[0].index_key.as_ref().unwrap().sk,
        "2026-04-01"
    );
    let prefix = table
        .query(query.clone().begins_with("2026-03"))
        .await
        .unwrap();
    assert_eq!(prefix.items.len(), 1);

    let cursor_without_index_key = Cursor {
        key: Key::new(&pk, "C#0"),
        index_key: None,
    };
    assert_invalid(
        table
            .query(query.start_after(Some(cursor_without_index_key)))
            .await,
        "index cursor without index key",
    );
}

// ---------------------------------------------------------------------------------------
// Transactions

async fn transaction_applies_every_kind_of_op(table: &dyn Table) {
    let pk = unique("tx");
    table
        .put(
            item(&pk, "UPDATE", json!({"count": 1})).with_version(4),
            Condition::None,
        )
        .await
        .unwrap();
    table
        .put(item(&pk, "DELETE", json!({})), Condition::None)
        .await
        .unwrap();
    table
        .put(
            item(&pk, "CHECK", json!({})).with_version(2),
            Condition::None,
        )
        .await
        .unwrap();
    let mut update = Update::new(Key::new(&pk, "UPDATE"));
    update.increment.push(("count".into(), 2));
    update.set.insert("state".into(), json!("signed"));
    update.condition = Condition::VersionIs(4);
    let mut create = Update::new(Key::new(&pk, "CREATED"));
    create.set.insert("by".into(), json!("tx"));
    let new_item = item(&pk, "NEW", json!({"n": 1})).with_index(IndexKey::new("I", "1"));
    table
        .transact_write(vec![
            WriteOp::Put {
                item: new_item.clone(),
                condition: Condition::NotExists,
            },
            WriteOp::Update(update),
            WriteOp::Update(create),
            WriteOp::Delete {
                key: Key::new(&pk, "DELETE"),
                condition: Condition::Exists,
            },
            WriteOp::Check {
                key: Key::new(&pk, "CHECK"),
                condition: Condition::VersionIs(2),
            },
            WriteOp::Check {
                key: Key::new(&pk, "ANYTHING"),
                condition: Condition::None,
            },
        ])
        .await
        .unwrap();
    assert_eq!(must_get(table, &new_item.key).await, new_item);
    let updated = must_get(table, &Key::new(&pk, "UPDATE")).await;
    assert_eq!(updated.version, 5);
    assert_eq!(
        updated.attributes,
        attrs(json!({"count": 3, "state": "signed"}))
    );
    let created = must_get(table, &Key::new(&pk, "CREATED")).await;
    assert_eq!(created.version, 1);
    assert_eq!(created.attributes, attrs(json!({"by": "tx"})));
    assert_eq!(table.get(&Key::new(&pk, "DELETE")).await.unwrap(), None);
    assert_eq!(must_get(table, &Key::new(&pk, "CHECK")).await.version, 2);
    assert_eq!(table.get(&Key::new(&pk, "ANYTHING")).await.unwrap(), None);
}

async fn transaction_is_all_or_nothing(table: &dyn Table) {
    let pk = unique("tx-fail");
    let existing = item(&pk, "EXISTING", json!({"v": 1})).with_version(3);
    table.put(existing.clone(), Condition::None).await.unwrap();
    let mut update = Update::new(existing.key.clone());
    update.set.insert("v".into(), json!(2));
    let mut other_update = Update::new(Key::new(&pk, "UPDATED"));
    other_update.set.insert("v".into(), json!(2));
    let ops = vec![
        WriteOp::Put {
            item: item(&pk, "A", json!({})),
            condition: Condition::NotExists,
        },
        // Fails: the item exists.
        WriteOp::Put {
            item: item(&pk, "EXISTING", json!({"v": 9})),
            condition: Condition::NotExists,
        },
        WriteOp::Update(other_update),
        // Fails: nothing to delete.
        WriteOp::Delete {
            key: Key::new(&pk, "MISSING"),
            condition: Condition::Exists,
        },
        // Fails: the check does not hold.
        WriteOp::Check {
            key: Key::new(&pk, "ALSO-MISSING"),
            condition: Condition::VersionIs(1),
        },
        WriteOp::Delete {
            key: Key::new(&pk, "B"),
            condition: Condition::None,
        },
    ];
    assert_canceled(table.transact_write(ops).await, &[1, 3, 4]);
    assert_eq!(table.get(&Key::new(&pk, "A")).await.unwrap(), None);
    assert_eq!(table.get(&Key::new(&pk, "UPDATED")).await.unwrap(), None);
    assert_eq!(must_get(table, &existing.key).await, existing);

    // A single failing check cancels an otherwise good update.
    update.condition = Condition::VersionIs(3);
    let ops = vec![
        WriteOp::Update(update.clone()),
        WriteOp::Check {
            key: Key::new(&pk, "GATE"),
            condition: Condition::Exists,
        },
    ];
    assert_canceled(table.transact_write(ops).await, &[1]);
    assert_eq!(must_get(table, &existing.key).await, existing);

    table
        .put(item(&pk, "GATE", json!({})), Condition::None)
        .await
        .unwrap();
    let ops = vec![
        WriteOp::Update(update),
        WriteOp::Check {
            key: Key::new(&pk, "GATE"),
            condition: Condition::Exists,
        },
    ];
    table.transact_write(ops).await.unwrap();
    assert_eq!(must_get(table, &existing.key).await.version, 4);

    // Only a new item's key is taken, after another new item and before a plain put:
    // neither of those is written.
    let ops = vec![
        WriteOp::Put {
            item: item(&pk, "NEW", json!({})),
            condition: Condition::NotExists,
        },
        WriteOp::Put {
            item: item(&pk, "EXISTING", json!({"v": 9})),
            condition: Condition::NotExists,
        },
        WriteOp::Put {
            item: item(&pk, "PLAIN", json!({})),
            condition: Condition::None,
        },
    ];
    assert_canceled(table.transact_write(ops).await, &[1]);
    assert_eq!(table.get(&Key::new(&pk, "NEW")).await.unwrap(), None);
    assert_eq!(table.get(&Key::new(&pk, "PLAIN")).await.unwrap(), None);
    assert_eq!(must_get(table, &existing.key).await.version, 4);

    // An update that cannot apply (an increment of text) after writes that could:
    // refused, and none of it written.
    let text = item(&pk, "TEXT", json!({"name": "x"}));
    table.put(text.clone(), Condition::None).await.unwrap();
    let mut increment = Update::new(text.key.clone());
    increment.increment.push(("name".into(), 1));
    let ops = vec![
        WriteOp::Put {
            item: item(&pk, "C", json!({})),
            condition: Condition::None,
        },
        WriteOp::Delete {
            key: Key::new(&pk, "GATE"),
            condition: Condition::None,
        },
        WriteOp::Update(increment),
    ];
    assert!(table.transact_write(ops).await.is_err());
    assert_eq!(table.get(&Key::new(&pk, "C")).await.unwrap(), None);
    assert!(table.get(&Key::new(&pk, "GATE")).await.unwrap().is_some());
    assert_eq!(must_get(table, &text.key).await, text);
}

async fn transaction_rules_are_enforced(table: &dyn Table) {
    let pk = unique("tx-invalid");
    assert_invalid(table.transact_write(Vec::new()).await, "empty");
    let duplicate = vec![
        WriteOp::Put {
            item: item(&pk, "S", json!({})),
            condition: Condition::None,
        },
        WriteOp::Check {
            key: Key::new(&pk, "S"),
            condition: Condition::Exists,
        },
    ];
    assert_invalid(table.transact_write(duplicate).await, "duplicate keys");
    let too_many: Vec<WriteOp> = (0..=MAX_TRANSACTION_OPS)
        .map(|n| WriteOp::Put {
            item: item(&pk, &format!("S{n}"), json!({})),
            condition: Condition::None,
        })
        .collect();
    assert_invalid(table.transact_write(too_many).await, "over the limit");
    let reserved = vec![WriteOp::Put {
        item: item(&pk, "S", json!({"version": 3})),
        condition: Condition::None,
    }];
    assert_invalid(table.transact_write(reserved).await, "reserved attribute");
    let mut update = Update::new(Key::new(&pk, "U"));
    update.remove.push("ttl".into());
    assert_invalid(
        table.transact_write(vec![WriteOp::Update(update)]).await,
        "reserved attribute in an update",
    );
    // Nothing was written by any of them.
    assert_eq!(
        table.query(Query::partition(&pk)).await.unwrap(),
        Page::default()
    );

    // Exactly the limit is fine.
    let full: Vec<WriteOp> = (0..MAX_TRANSACTION_OPS)
        .map(|n| WriteOp::Put {
            item: item(&pk, &format!("S{n:03}"), json!({})),
            condition: Condition::NotExists,
        })
        .collect();
    table.transact_write(full).await.unwrap();
    let (items, _) = all_pages(table, Query::partition(&pk).limit(30)).await;
    assert_eq!(items.len(), MAX_TRANSACTION_OPS);
}

// ---------------------------------------------------------------------------------------
// Validation and values

async fn invalid_requests_are_refused(table: &dyn Table) {
    let pk = unique("invalid");
    for name in ["pk", "sk", "gsi1pk", "gsi1sk", "version", "ttl", ""] {
        let mut attributes = Attributes::new();
        attributes.insert(name.into(), json!(1));
        let bad = Item::new(Key::new(&pk, "S"), attributes);
        assert_invalid(table.put(bad, Condition::None).await, name);
        let mut update = Update::new(Key::new(&pk, "S"));
        update.increment.push((name.into(), 1));
        assert_invalid(table.update(update).await, name);
    }
    assert_invalid(
        table.put(item("", "S", json!({})), Condition::None).await,
        "empty pk",
    );
    assert_invalid(
        table.put(item(&pk, "", json!({})), Condition::None).await,
        "empty sk",
    );
    assert_invalid(table.get(&Key::new(&pk, "")).await, "get with empty sk");
    assert_invalid(
        table.delete(&Key::new("", "S"), Condition::None).await,
        "delete with empty pk",
    );
    assert_invalid(
        table
            .put(
                item(&pk, "S", json!({})).with_index(IndexKey::new("I", "")),
                Condition::None,
            )
            .await,
        "empty index key",
    );
    let mut twice = Update::new(Key::new(&pk, "S"));
    twice.set.insert("a".into(), json!(1));
    twice.remove.push("a".into());
    assert_invalid(table.update(twice).await, "one attribute twice");
    assert_invalid(table.query(Query::partition(&pk).limit(0)).await, "limit 0");
    assert_invalid(
        table.query(Query::partition(&pk).limit(1001)).await,
        "limit 1001",
    );
    assert_invalid(table.query(Query::partition("")).await, "empty partition");
    assert_eq!(
        table
            .query(Query::partition(&pk).limit(1000))
            .await
            .unwrap(),
        Page::default()
    );
    assert_eq!(
        table.query(Query::partition(&pk)).await.unwrap(),
        Page::default()
    );
}

async fn values_round_trip_exactly(table: &dyn Table) {
    let pk = unique("values");
    let attributes = attrs(json!({
        "unicode": "Åsa Öberg — 東京 🚚 \u{0}\u{FFFF}",
        "empty": "",
        "nested": {"deep": {"list": [1, "two", {"three": [3.5, null]}], "empty": {}, "none": []}},
        "null": null,
        "flags": [true, false],
        "min": i64::MIN,
        "max": i64::MAX,
        "umax": u64::MAX,
        "negative": -42,
        "zero": 0,
        "fraction": 0.125,
        "name with spaces & symbols.#:": "ok",
        "ÅÄÖ": "ok",
    }));
    let stored = Item::new(Key::new(&pk, "Ö#東京#🚚"), attributes);
    table.put(stored.clone(), Condition::None).await.unwrap();
    assert_eq!(must_get(table, &stored.key).await, stored);
    let page = table.query(Query::partition(&pk)).await.unwrap();
    assert_eq!(page.items, std::slice::from_ref(&stored));

    let mut update = Update::new(stored.key.clone());
    update.set.insert("unicode".into(), json!("ny ✓"));
    update
        .set
        .insert("object".into(), json!({"a": {"b": [i64::MIN, u64::MAX]}}));
    let after = table.update(update).await.unwrap();
    assert_eq!(
        after.attributes["object"],
        json!({"a": {"b": [i64::MIN, u64::MAX]}})
    );
    assert_eq!(after.attributes["max"], json!(i64::MAX));
    assert_eq!(must_get(table, &stored.key).await, after);
}

// ---------------------------------------------------------------------------------------
// Instantiation for both adapters

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let table: std::sync::Arc<dyn domain::store::Table> = std::sync::Arc::new(
                        adapters::embedded::SqliteTable::open(&dir.path().join("table.db"))
                            .expect("open SQLite table"),
                    );
                    super::$test(table.as_ref()).await;
                }
            )*
        }

        mod dynamodb {
            $(
                #[tokio::test]
                async fn $test() {
                    let table: std::sync::Arc<dyn domain::store::Table> =
                        std::sync::Arc::new(crate::support::dynamo_table().await);
                    super::$test(table.as_ref()).await;
                }
            )*
        }
    };
}

conformance!(
    get_missing_and_present,
    get_returns_expired_items,
    put_replaces_the_whole_item,
    put_not_exists,
    put_exists,
    put_version_is,
    put_not_exists_or_expired,
    update_creates_then_bumps_the_version,
    update_keeps_index_key_and_expiry,
    update_conditions,
    update_increments_large_integers,
    update_increment_of_text_is_invalid,
    update_takes_the_most_increments_with_free_text_names,
    delete_returns_the_old_item_and_honours_conditions,
    query_prefix_is_exact,
    query_orders_by_utf8_bytes,
    query_between_and_backward,
    query_paginates,
    query_pages_backward_within_a_range,
    query_gsi1,
    transaction_applies_every_kind_of_op,
    transaction_is_all_or_nothing,
    transaction_rules_are_enforced,
    invalid_requests_are_refused,
    values_round_trip_exactly,
);

// ---------------------------------------------------------------------------------------
// SQLite only

#[tokio::test]
async fn sqlite_data_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("durable.db");
    let pk = unique("durable");
    let stored = item(&pk, "S", json!({"kept": "yes"})).with_index(IndexKey::new("I", "1"));
    {
        let table = SqliteTable::open(&path).unwrap();
        table
            .put(stored.clone(), Condition::NotExists)
            .await
            .unwrap();
        let mut update = Update::new(Key::new(&pk, "U"));
        update.increment.push(("n".into(), 1));
        table.update(update).await.unwrap();
        table
            .transact_write(vec![WriteOp::Put {
                item: item(&pk, "T", json!({})),
                condition: Condition::None,
            }])
            .await
            .unwrap();
    }
    let reopened = SqliteTable::open(&path).unwrap();
    assert_eq!(must_get(&reopened, &stored.key).await, stored);
    let page = reopened.query(Query::partition(&pk)).await.unwrap();
    assert_eq!(sort_keys(&page), ["S", "T", "U"]);
    let gsi = reopened
        .query(Query::partition("I").on_index(Index::Gsi1))
        .await
        .unwrap();
    assert_eq!(gsi.items, [stored]);
}

#[tokio::test]
async fn sqlite_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    drop(SqliteTable::open(&path).unwrap());
    assert!(
        bump_user_version(&path),
        "could not bump the schema version"
    );
    let error = SqliteTable::open(&path).unwrap_err();
    assert!(
        matches!(error, StoreError::Unavailable(message) if message.contains("schema version"))
    );
}

/// Bumps `PRAGMA user_version` by writing the SQLite header directly (offset 60), so the
/// test needs no second SQLite binding.
fn bump_user_version(path: &std::path::Path) -> bool {
    use std::io::{Seek, SeekFrom, Write};
    let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(path) else {
        return false;
    };
    file.seek(SeekFrom::Start(60)).is_ok() && file.write_all(&99u32.to_be_bytes()).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_refused_transactions_leave_their_group_commit_intact() {
    // Many transactions at once share group commits. Every other one is refused by its
    // last operation, after writes that would have held: a check, or a new item whose
    // key is taken.
    let dir = tempfile::tempdir().unwrap();
    let table = Arc::new(SqliteTable::open(&dir.path().join("groups.db")).unwrap());
    let pk = unique("groups");
    table
        .put(item(&pk, "TAKEN", json!({})), Condition::None)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let table = Arc::clone(&table);
        let pk = pk.clone();
        tasks.push(tokio::spawn(async move {
            let last = match n % 4 {
                1 => WriteOp::Check {
                    key: Key::new(&pk, format!("GATE#{n}")),
                    condition: Condition::Exists,
                },
                3 => WriteOp::Put {
                    item: item(&pk, "TAKEN", json!({"by": n})),
                    condition: Condition::NotExists,
                },
                _ => WriteOp::Check {
                    key: Key::new(&pk, format!("GATE#{n}")),
                    condition: Condition::None,
                },
            };
            let ops = vec![
                WriteOp::Put {
                    item: item(&pk, &format!("A#{n}"), json!({"n": n})),
                    condition: Condition::NotExists,
                },
                WriteOp::Put {
                    item: item(&pk, "SHARED", json!({"last": n})),
                    condition: Condition::None,
                },
                last,
            ];
            (n, table.transact_write(ops).await)
        }));
    }
    for task in tasks {
        let (n, result) = task.await.unwrap();
        let written = table.get(&Key::new(&pk, format!("A#{n}"))).await.unwrap();
        if n % 2 == 0 {
            result.unwrap();
            assert!(written.is_some(), "{n}");
        } else {
            assert_canceled(result, &[2]);
            assert_eq!(written, None, "{n}");
        }
    }
    let shared = must_get(table.as_ref(), &Key::new(&pk, "SHARED")).await;
    assert_eq!(shared.attributes["last"].as_i64().unwrap() % 2, 0);
    let taken = must_get(table.as_ref(), &Key::new(&pk, "TAKEN")).await;
    assert_eq!(taken.attributes, json!({}).as_object().unwrap().clone());
}

#[tokio::test]
async fn sqlite_concurrent_writers_are_serialised() {
    let dir = tempfile::tempdir().unwrap();
    let table = Arc::new(SqliteTable::open(&dir.path().join("concurrent.db")).unwrap());
    let pk = unique("concurrent");
    let mut tasks = Vec::new();
    for n in 0..64 {
        let table = Arc::clone(&table);
        let pk = pk.clone();
        tasks.push(tokio::spawn(async move {
            let mut update = Update::new(Key::new(&pk, "COUNTER"));
            update.increment.push(("n".into(), 1));
            table.update(update).await.unwrap();
            table
                .put(
                    item(&pk, "ONCE", json!({"winner": n})),
                    Condition::NotExists,
                )
                .await
                .is_ok()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
    let counter = must_get(table.as_ref(), &Key::new(&pk, "COUNTER")).await;
    assert_eq!(counter.attributes["n"], json!(64));
    assert_eq!(counter.version, 64);
}
