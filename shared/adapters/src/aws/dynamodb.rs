//! [`domain::store::Table`] on a DynamoDB table.
//!
//! Item layout: `pk`, `sk` (strings), `gsi1pk`/`gsi1sk` only when the item has an index
//! key, `version` (N), `ttl` (N, epoch seconds) only when the item expires, and the
//! item's own attributes at top level (converted with `serde_dynamo`).
//!
//! Reads of the table itself are strongly consistent, so a caller reads its own writes
//! as it does on SQLite; the secondary index is eventually consistent (DynamoDB offers
//! nothing else for a GSI).
//!
//! Number caveat: DynamoDB has one number type, so a float with an integral value (`2.0`)
//! comes back as the integer `2`. Integers round-trip exactly.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ReturnValue, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification, TransactWriteItem,
};
use domain::store::{
    Attributes, Condition, Cursor, Index, IndexKey, Item, Key, Page, Query, RESERVED_ATTRIBUTES,
    StoreError, Table, Update, WriteOp, validate_key,
};

use crate::rules::{self, SortRange};

/// The name of the secondary index, as in the SAM template.
pub const GSI1: &str = "gsi1";

type AttributeMap = HashMap<String, AttributeValue>;

/// [`Table`] on one DynamoDB table (single-table design).
#[derive(Clone, Debug)]
pub struct DynamoTable {
    client: Client,
    table_name: String,
}

impl DynamoTable {
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        Self {
            client,
            table_name: table_name.into(),
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table_name
    }

    /// Creates the table as production has it (string `pk`/`sk`, GSI `gsi1` on
    /// `gsi1pk`/`gsi1sk` projecting everything, on-demand billing, TTL on `ttl`) unless
    /// it exists, and waits until it is active. For tests and local development.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table_name)
            .send()
            .await
        {
            Ok(_) => return self.wait_until_active().await,
            Err(error) if error.code() == Some("ResourceNotFoundException") => {}
            Err(error) => return Err(map_error(error)),
        }
        let string_attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)
        };
        let key_element = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(build_error)
        };
        let gsi1 = GlobalSecondaryIndex::builder()
            .index_name(GSI1)
            .key_schema(key_element("gsi1pk", KeyType::Hash)?)
            .key_schema(key_element("gsi1sk", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(build_error)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table_name)
            .attribute_definitions(string_attribute("pk")?)
            .attribute_definitions(string_attribute("sk")?)
            .attribute_definitions(string_attribute("gsi1pk")?)
            .attribute_definitions(string_attribute("gsi1sk")?)
            .key_schema(key_element("pk", KeyType::Hash)?)
            .key_schema(key_element("sk", KeyType::Range)?)
            .global_secondary_indexes(gsi1)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Someone else created it meanwhile: fine.
            Err(error) if error.code() == Some("ResourceInUseException") => {
                return self.wait_until_active().await;
            }
            Err(error) => return Err(map_error(error)),
        }
        self.wait_until_active().await?;
        self.client
            .update_time_to_live()
            .table_name(&self.table_name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("ttl")
                    .build()
                    .map_err(build_error)?,
            )
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn wait_until_active(&self) -> Result<(), StoreError> {
        for _ in 0..120 {
            let output = self
                .client
                .describe_table()
                .table_name(&self.table_name)
                .send()
                .await
                .map_err(map_error)?;
            let table = output.table.as_ref();
            let table_active =
                table.and_then(|t| t.table_status.as_ref()) == Some(&TableStatus::Active);
            let indexes_active = table
                .map(|t| t.global_secondary_indexes())
                .unwrap_or_default()
                .iter()
                .all(|index| {
                    index
                        .index_status
                        .as_ref()
                        .is_none_or(|status| status.as_str() == "ACTIVE")
                });
            if table_active && indexes_active {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable(format!(
            "table {} did not become active within a minute",
            self.table_name
        )))
    }
}

#[async_trait]
impl Table for DynamoTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        validate_key(key)?;
        let output = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(map_error)?;
        output.item.map(item_from_dynamo).transpose()
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        rules::check_item(&item)?;
        let mut expression = Expression::default();
        let condition = condition_expression(condition, &mut expression);
        let (names, values) = expression.into_parts();
        self.client
            .put_item()
            .table_name(&self.table_name)
            .set_item(Some(item_to_dynamo(&item)?))
            .set_condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn update(&self, update: Update) -> Result<Item, StoreError> {
        rules::check_update(&update)?;
        let mut expression = Expression::default();
        let update_text = update_expression(&update, &mut expression)?;
        let condition = condition_expression(update.condition, &mut expression);
        let (names, values) = expression.into_parts();
        let output = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(key_map(&update.key)))
            .update_expression(update_text)
            .set_condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(map_error)?;
        let attributes = output.attributes.ok_or_else(|| {
            StoreError::Unavailable("DynamoDB returned no item after an update".into())
        })?;
        item_from_dynamo(attributes)
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<Option<Item>, StoreError> {
        validate_key(key)?;
        let mut expression = Expression::default();
        let condition = condition_expression(condition, &mut expression);
        let (names, values) = expression.into_parts();
        let output = self
            .client
            .delete_item()
            .table_name(&self.table_name)
            .set_key(Some(key_map(key)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(map_error)?;
        output
            .attributes
            .filter(|old| !old.is_empty())
            .map(item_from_dynamo)
            .transpose()
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        let range = rules::check_query(&query)?;
        if range == SortRange::Nothing {
            return Ok(Page::default());
        }
        let (index_name, partition_attribute, sort_attribute) = match query.index {
            Index::Primary => (None, "pk", "sk"),
            Index::Gsi1 => (Some(GSI1), "gsi1pk", "gsi1sk"),
        };
        let mut expression = Expression::default();
        let key_condition = key_condition(
            &query.partition,
            &range,
            partition_attribute,
            sort_attribute,
            &mut expression,
        );
        let (names, values) = expression.into_parts();

        // DynamoDB stops a page at `Limit` items or 1 MB, and may hand back a
        // LastEvaluatedKey even when nothing follows. Ask for one item more than the
        // caller wants, across as many pages as it takes, to know whether more exist.
        let wanted = query.limit + 1;
        let mut items = Vec::with_capacity(wanted.min(128));
        let mut start = query
            .start_after
            .as_ref()
            .map(|cursor| exclusive_start_key(cursor, query.index))
            .transpose()?;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table_name)
                .set_index_name(index_name.map(str::to_owned))
                .key_condition_expression(&key_condition)
                .set_expression_attribute_names(names.clone())
                .set_expression_attribute_values(values.clone())
                .scan_index_forward(query.forward)
                .consistent_read(query.index == Index::Primary)
                .limit(i32::try_from(wanted - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(map_error)?;
            for raw in output.items.unwrap_or_default() {
                items.push(item_from_dynamo(raw)?);
            }
            match output.last_evaluated_key {
                Some(last) if !last.is_empty() && items.len() < wanted => start = Some(last),
                _ => break,
            }
        }
        let next = if items.len() > query.limit {
            items.truncate(query.limit);
            items.last().map(|last| Cursor {
                key: last.key.clone(),
                index_key: match query.index {
                    Index::Primary => None,
                    Index::Gsi1 => last.index_key.clone(),
                },
            })
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        rules::check_transaction(&ops)?;
        let items = ops
            .iter()
            .map(|op| self.transact_item(op))
            .collect::<Result<Vec<_>, _>>()?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => Err(match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => {
                    cancellation(
                        canceled
                            .cancellation_reasons()
                            .iter()
                            .map(|reason| (reason.code(), reason.message())),
                    )
                }
                _ => map_error(error),
            }),
        }
    }
}

impl DynamoTable {
    fn transact_item(&self, op: &WriteOp) -> Result<TransactWriteItem, StoreError> {
        let mut expression = Expression::default();
        let builder = TransactWriteItem::builder();
        Ok(match op {
            WriteOp::Put { item, condition } => {
                let condition = condition_expression(*condition, &mut expression);
                let (names, values) = expression.into_parts();
                builder
                    .put(
                        Put::builder()
                            .table_name(&self.table_name)
                            .set_item(Some(item_to_dynamo(item)?))
                            .set_condition_expression(condition)
                            .set_expression_attribute_names(names)
                            .set_expression_attribute_values(values)
                            .build()
                            .map_err(build_error)?,
                    )
                    .build()
            }
            WriteOp::Update(update) => {
                let update_text = update_expression(update, &mut expression)?;
                let condition = condition_expression(update.condition, &mut expression);
                let (names, values) = expression.into_parts();
                builder
                    .update(
                        aws_sdk_dynamodb::types::Update::builder()
                            .table_name(&self.table_name)
                            .set_key(Some(key_map(&update.key)))
                            .update_expression(update_text)
                            .set_condition_expression(condition)
                            .set_expression_attribute_names(names)
                            .set_expression_attribute_values(values)
                            .build()
                            .map_err(build_error)?,
                    )
                    .build()
            }
            WriteOp::Delete { key, condition } => {
                let condition = condition_expression(*condition, &mut expression);
                let (names, values) = expression.into_parts();
                builder
                    .delete(
                        Delete::builder()
                            .table_name(&self.table_name)
                            .set_key(Some(key_map(key)))
                            .set_condition_expression(condition)
                            .set_expression_attribute_names(names)
                            .set_expression_attribute_values(values)
                            .build()
                            .map_err(build_error)?,
                    )
                    .build()
            }
            WriteOp::Check { key, condition } => {
                // A ConditionCheck needs an expression; `Condition::None` becomes one that
                // always holds (the check still takes part in conflict detection).
                let condition =
                    condition_expression(*condition, &mut expression).unwrap_or_else(|| {
                        let pk = expression.name("pk");
                        format!("attribute_not_exists({pk}) OR attribute_exists({pk})")
                    });
                let (names, values) = expression.into_parts();
                builder
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.table_name)
                            .set_key(Some(key_map(key)))
                            .condition_expression(condition)
                            .set_expression_attribute_names(names)
                            .set_expression_attribute_values(values)
                            .build()
                            .map_err(build_error)?,
                    )
                    .build()
            }
        })
    }
}

/// Maps the cancellation reasons of a TransactWriteItems call (one per operation, code
/// `"None"` for those that were fine) to the port's error.
fn cancellation<'a>(
    reasons: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> StoreError {
    let mut failed = Vec::new();
    let mut invalid = None;
    for (position, (code, message)) in reasons.enumerate() {
        match code {
            Some("ConditionalCheckFailed") => failed.push(position),
            Some("ValidationError") => {
                invalid = Some(message.unwrap_or("validation error").to_owned());
            }
            _ => {}
        }
    }
    match invalid {
        Some(message) if failed.is_empty() => {
            StoreError::Invalid(format!("DynamoDB refused the transaction: {message}"))
        }
        // Conflicts with concurrent transactions, throttling: nothing was written and a
        // retry may succeed.
        _ => StoreError::TransactionCanceled { failed },
    }
}

fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Unavailable(format!("cannot build a DynamoDB request: {error}"))
}

fn map_error<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error.code() {
        Some("ConditionalCheckFailedException") => StoreError::ConditionFailed,
        Some("ValidationException") => StoreError::Invalid(format!(
            "DynamoDB refused the request: {}",
            error.message().unwrap_or("validation failed")
        )),
        _ => StoreError::Unavailable(format!("DynamoDB: {}", DisplayErrorContext(&error))),
    }
}

// ---------------------------------------------------------------------------------------
// Expressions

/// Placeholders for the names and values an expression uses. Every name goes through a
/// placeholder, so attribute names never clash with DynamoDB's reserved words.
#[derive(Debug, Default)]
struct Expression {
    names: HashMap<String, String>,
    placeholders: HashMap<String, String>,
    values: AttributeMap,
}

impl Expression {
    fn name(&mut self, name: &str) -> String {
        if let Some(placeholder) = self.placeholders.get(name) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), name.to_owned());
        self.placeholders
            .insert(name.to_owned(), placeholder.clone());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// The maps to send; `None` when empty, since DynamoDB refuses empty maps.
    fn into_parts(self) -> (Option<HashMap<String, String>>, Option<AttributeMap>) {
        (
            (!self.names.is_empty()).then_some(self.names),
            (!self.values.is_empty()).then_some(self.values),
        )
    }
}

fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn condition_expression(condition: Condition, expression: &mut Expression) -> Option<String> {
    match condition {
        Condition::None => None,
        Condition::NotExists => Some(format!("attribute_not_exists({})", expression.name("pk"))),
        Condition::NotExistsOrExpired { now } => {
            let pk = expression.name("pk");
            let ttl = expression.name("ttl");
            let now = expression.value(number(now));
            Some(format!("attribute_not_exists({pk}) OR {ttl} <= {now}"))
        }
        Condition::Exists => Some(format!("attribute_exists({})", expression.name("pk"))),
        Condition::VersionIs(version) => {
            let name = expression.name("version");
            let value = expression.value(number(version));
            Some(format!("{name} = {value}"))
        }
    }
}

/// `SET` for assignments, the version bump and increments (all through `if_not_exists`,
/// so a missing item or attribute starts from 0), then `REMOVE`. No `ADD`: one scheme
/// for every counter.
fn update_expression(update: &Update, expression: &mut Expression) -> Result<String, StoreError> {
    let mut assignments = Vec::with_capacity(update.set.len() + update.increment.len() + 1);
    for (name, value) in &update.set {
        let name = expression.name(name);
        let value = expression.value(attribute_value(value)?);
        assignments.push(format!("{name} = {value}"));
    }
    let zero = expression.value(number(0));
    let one = expression.value(number(1));
    let version = expression.name("version");
    assignments.push(format!(
        "{version} = if_not_exists({version}, {zero}) + {one}"
    ));
    for (name, by) in &update.increment {
        let name = expression.name(name);
        let by = expression.value(number(by));
        assignments.push(format!("{name} = if_not_exists({name}, {zero}) + {by}"));
    }
    let mut text = format!("SET {}", assignments.join(", "));
    if !update.remove.is_empty() {
        let removed: Vec<String> = update
            .remove
            .iter()
            .map(|name| expression.name(name))
            .collect();
        text.push_str(" REMOVE ");
        text.push_str(&removed.join(", "));
    }
    Ok(text)
}

fn key_condition(
    partition: &str,
    range: &SortRange<'_>,
    partition_attribute: &str,
    sort_attribute: &str,
    expression: &mut Expression,
) -> String {
    let pk = expression.name(partition_attribute);
    let partition = expression.value(AttributeValue::S(partition.to_owned()));
    let mut text = format!("{pk} = {partition}");
    let sort = |expression: &mut Expression, value: &str| {
        expression.value(AttributeValue::S(value.to_owned()))
    };
    match range {
        SortRange::All | SortRange::Nothing => {}
        SortRange::Prefix(prefix) => {
            let prefix = sort(expression, prefix);
            let sk = expression.name(sort_attribute);
            text.push_str(&format!(" AND begins_with({sk}, {prefix})"));
        }
        SortRange::Between(low, high) => {
            let low = sort(expression, low);
            let high = sort(expression, high);
            let sk = expression.name(sort_attribute);
            text.push_str(&format!(" AND {sk} BETWEEN {low} AND {high}"));
        }
        SortRange::AtMost(high) => {
            let high = sort(expression, high);
            let sk = expression.name(sort_attribute);
            text.push_str(&format!(" AND {sk} <= {high}"));
        }
    }
    text
}

// ---------------------------------------------------------------------------------------
// Items

fn key_map(key: &Key) -> AttributeMap {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(key.pk.clone())),
        ("sk".to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

fn exclusive_start_key(cursor: &Cursor, index: Index) -> Result<AttributeMap, StoreError> {
    let mut key = key_map(&cursor.key);
    if index == Index::Gsi1 {
        let index_key = cursor.index_key.as_ref().ok_or_else(|| {
            StoreError::Invalid("a cursor for the secondary index needs its index key".into())
        })?;
        key.insert("gsi1pk".into(), AttributeValue::S(index_key.pk.clone()));
        key.insert("gsi1sk".into(), AttributeValue::S(index_key.sk.clone()));
    }
    Ok(key)
}

fn attribute_value(value: &serde_json::Value) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value)
        .map_err(|error| StoreError::Invalid(format!("attribute value cannot be stored: {error}")))
}

fn item_to_dynamo(item: &Item) -> Result<AttributeMap, StoreError> {
    let mut map = key_map(&item.key);
    map.reserve(item.attributes.len() + 4);
    if let Some(index_key) = &item.index_key {
        map.insert("gsi1pk".into(), AttributeValue::S(index_key.pk.clone()));
        map.insert("gsi1sk".into(), AttributeValue::S(index_key.sk.clone()));
    }
    map.insert("version".into(), number(item.version));
    if let Some(expires_at) = item.expires_at {
        map.insert("ttl".into(), number(expires_at));
    }
    for (name, value) in &item.attributes {
        map.insert(name.clone(), attribute_value(value)?);
    }
    Ok(map)
}

fn malformed(what: &str) -> StoreError {
    StoreError::Unavailable(format!("DynamoDB returned a malformed item: {what}"))
}

fn take_string(map: &mut AttributeMap, name: &str) -> Result<Option<String>, StoreError> {
    match map.remove(name) {
        None => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value)),
        Some(_) => Err(malformed(&format!("{name} is not a string"))),
    }
}

fn take_number<T: std::str::FromStr>(
    map: &mut AttributeMap,
    name: &str,
) -> Result<Option<T>, StoreError> {
    match map.remove(name) {
        None => Ok(None),
        Some(AttributeValue::N(value)) => value
            .parse()
            .map(Some)
            .map_err(|_| malformed(&format!("{name} is not an integer"))),
        Some(_) => Err(malformed(&format!("{name} is not a number"))),
    }
}

fn item_from_dynamo(mut map: AttributeMap) -> Result<Item, StoreError> {
    let pk = take_string(&mut map, "pk")?.ok_or_else(|| malformed("no pk"))?;
    let sk = take_string(&mut map, "sk")?.ok_or_else(|| malformed("no sk"))?;
    let index_key = match (
        take_string(&mut map, "gsi1pk")?,
        take_string(&mut map, "gsi1sk")?,
    ) {
        (Some(pk), Some(sk)) => Some(IndexKey { pk, sk }),
        _ => None,
    };
    let version = take_number(&mut map, "version")?.ok_or_else(|| malformed("no version"))?;
    let expires_at = take_number(&mut map, "ttl")?;
    debug_assert!(
        RESERVED_ATTRIBUTES
            .iter()
            .all(|name| !map.contains_key(*name))
    );
    let mut attributes = Attributes::new();
    for (name, value) in map {
        let value = serde_dynamo::from_attribute_value(value)
            .map_err(|error| malformed(&format!("attribute {name:?}: {error}")))?;
        attributes.insert(name, value);
    }
    Ok(Item {
        key: Key { pk, sk },
        index_key,
        version,
        expires_at,
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn update_expression_sets_bumps_increments_and_removes() {
        let mut update = Update::new(Key::new("p", "s"));
        update.set.insert("name".into(), json!("Volvo"));
        update.remove.push("note".into());
        update.increment.push(("count".into(), -2));
        update.condition = Condition::VersionIs(7);
        let mut expression = Expression::default();
        let text = update_expression(&update, &mut expression).unwrap();
        let condition = condition_expression(update.condition, &mut expression).unwrap();
        assert_eq!(
            text,
            "SET #n0 = :v0, #n1 = if_not_exists(#n1, :v1) + :v2, \
             #n2 = if_not_exists(#n2, :v1) + :v3 REMOVE #n3"
        );
        assert_eq!(condition, "#n1 = :v4");
        let (names, values) = expression.into_parts();
        let names = names.unwrap();
        assert_eq!(names["#n0"], "name");
        assert_eq!(names["#n1"], "version");
        assert_eq!(names["#n2"], "count");
        assert_eq!(names["#n3"], "note");
        let values = values.unwrap();
        assert_eq!(values[":v3"], AttributeValue::N("-2".into()));
        assert_eq!(values[":v4"], AttributeValue::N("7".into()));
    }

    #[test]
    fn the_most_increments_fit_the_expression_limit() {
        let mut update = Update::new(Key::new("p", "s"));
        update.set.insert("asOf".into(), json!("2026-11-21"));
        for n in 0..domain::store::MAX_UPDATE_INCREMENTS {
            update
                .increment
                .push((format!("lessor|Lessor {n} AB|debt|SEK"), 1));
        }
        let mut expression = Expression::default();
        let text = update_expression(&update, &mut expression).unwrap();
        // DynamoDB's limit on each expression.
        assert!(text.len() <= 4096, "{} characters", text.len());
    }

    #[test]
    fn conditions_use_placeholders() {
        let mut expression = Expression::default();
        assert_eq!(condition_expression(Condition::None, &mut expression), None);
        assert_eq!(expression.into_parts(), (None, None));
        let mut expression = Expression::default();
        assert_eq!(
            condition_expression(Condition::NotExistsOrExpired { now: 5 }, &mut expression)
                .unwrap(),
            "attribute_not_exists(#n0) OR #n1 <= :v0"
        );
    }

    #[test]
    fn items_map_to_top_level_attributes_and_back() {
        let item = Item::new(
            Key::new("T#1", "C#1"),
            json!({"name": "Ödla", "nested": {"a": [1, null, true]}, "big": i64::MIN})
                .as_object()
                .unwrap()
                .clone(),
        )
        .with_index(IndexKey::new("G", "S"))
        .with_version(4)
        .expiring_at(1_700_000_000);
        let map = item_to_dynamo(&item).unwrap();
        assert_eq!(map["version"], AttributeValue::N("4".into()));
        assert_eq!(map["ttl"], AttributeValue::N("1700000000".into()));
        assert_eq!(map["gsi1pk"], AttributeValue::S("G".into()));
        assert_eq!(map["name"], AttributeValue::S("Ödla".into()));
        assert_eq!(item_from_dynamo(map).unwrap(), item);

        let plain = Item::new(Key::new("a", "b"), Attributes::new());
        let map = item_to_dynamo(&plain).unwrap();
        assert!(!map.contains_key("ttl") && !map.contains_key("gsi1pk"));
    }

    #[test]
    fn cancellation_reasons_map_to_failed_positions() {
        let reasons = [
            (Some("None"), None),
            (Some("ConditionalCheckFailed"), Some("failed")),
            (Some("None"), None),
            (Some("ConditionalCheckFailed"), None),
        ];
        assert!(matches!(
            cancellation(reasons.into_iter()),
            StoreError::TransactionCanceled { failed } if failed == [1, 3]
        ));
        let conflict = [(Some("TransactionConflict"), None), (Some("None"), None)];
        assert!(matches!(
            cancellation(conflict.into_iter()),
            StoreError::TransactionCanceled { failed } if failed.is_empty()
        ));
        let invalid = [(Some("ValidationError"), Some("bad"))];
        assert!(matches!(
            cancellation(invalid.into_iter()),
            StoreError::Invalid(_)
        ));
    }
}
