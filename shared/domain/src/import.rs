//! Importing a register of contracts: every row validated before anything is written,
//! then an upsert by contract number, so importing the same file twice changes nothing.

use crate::audit::{Actor, AuditEvent};
use crate::contracts::{
    Contract, ContractChanges, ContractError, ContractService, NewContract, claim_contract_number,
    price_with, rates_error, reference_marker,
};
use crate::ids::ContractId;
use crate::keys;
use crate::portfolio::{
    LedgerChange, PortfolioError, StoredFacts, TotalsWrite::Pending, commit_with_portfolio,
    fold_pending, fold_pending_passes, prepare_bulk,
};
use crate::rates::{SeriesId, SeriesInfo};
use crate::store::{Condition, Query, StoreError, WriteOp, query_all};
use crate::validation::{FieldIssue, ValidationErrors};
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};

/// The most rows one import takes.
pub const MAX_IMPORT_ROWS: usize = 200_000;
/// Writes one transaction may take besides the portfolio's three fixed ones (the epoch
/// check, the pending difference, the import sequence).
const WRITES_PER_TRANSACTION: usize = crate::store::MAX_TRANSACTION_OPS - 3;
/// Transactions between two folds of their pending differences into the totals.
const FOLD_EVERY: usize = 256;
/// The fold transactions (of up to 99 differences) one fold of an import runs.
const FOLD_PASSES: usize = FOLD_EVERY.div_ceil(crate::store::MAX_TRANSACTION_OPS - 1) + 1;
/// Transactions in flight at once, unless the service says otherwise; the embedded store
/// commits them in groups.
pub(crate) const TRANSACTIONS_IN_FLIGHT: usize = 1024;

/// One row of an import.
#[derive(Clone, Debug)]
pub struct ImportRow {
    /// The row's number as the file shows it (the header is row 1).
    pub row: usize,
    pub contract: NewContract,
    /// Problems found reading the row's cells, by field pointer. A field with such a
    /// problem is left missing, so its "required" problem is not reported again.
    pub issues: Vec<(String, FieldIssue)>,
}

/// What is wrong with one field of one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    pub row: usize,
    /// JSON pointer of the field, as in `POST /contracts` (`/payment/amount`).
    pub pointer: String,
    pub issue: FieldIssue,
}

/// What an import did, or would do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub rows: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Every problem of every row; a non-empty list means nothing was written.
    pub problems: Vec<RowProblem>,
}

/// A row that will be written.
struct Change {
    before: Option<Contract>,
    after: Contract,
    /// The portfolio facts of `after`, when computed up front ([`prepare_bulk`]).
    facts: Option<StoredFacts>,
}

impl Change {
    /// The most writes [`ContractService::write_batch`] and the portfolio's ledger make
    /// for this change: the contract, its number (when new), its audit event, its rate
    /// reference markers, and a put and a delete for each dashboard list it may be on.
    fn most_writes(&self) -> usize {
        let references = usize::from(self.after.rate_reference.is_some())
            + self
                .before
                .as_ref()
                .map_or(0, |before| usize::from(before.rate_reference.is_some()));
        let lists = if self.before.is_some() { 4 } else { 2 };
        2 + usize::from(self.before.is_none()) + references + lists
    }
}

impl ContractService {
    /// Validates every row and, unless `dry_run` or a row has a problem, creates the
    /// contracts whose number is new and updates those whose terms differ. Rows are
    /// validated as a whole file: nothing is written when any row has a problem.
    /// Writes go in transactions of a few contracts, each with its audit events and its
    /// share of the portfolio; an import interrupted half-way is completed by importing
    /// the same file again.
    pub async fn import(
        &self,
        actor: &Actor,
        rows: Vec<ImportRow>,
        dry_run: bool,
    ) -> Result<ImportReport, ContractError> {
        let report = self.import_rows(actor, rows, dry_run, None).await?;
        if !dry_run && report.problems.is_empty() {
            self.record_import(actor, &report, None).await?;
        }
        Ok(report)
    }

    /// [`ContractService::import`] for an import job: the same checks and writes, with
    /// the rows whose outcome is settled (unchanged, or written) published on `progress`
    /// as the writes go, and without the import's own audit event, which
    /// [`ContractService::record_import`] writes with the job's name. Run again after an
    /// interruption, it finds the rows written before unchanged and goes on.
    pub async fn import_tracked(
        &self,
        actor: &Actor,
        rows: Vec<ImportRow>,
        progress: tokio::sync::watch::Sender<usize>,
    ) -> Result<ImportReport, ContractError> {
        self.import_rows(actor, rows, false, Some(&progress)).await
    }

    /// The audit event of a finished import; `job` names the import job that ran it.
    pub async fn record_import(
        &self,
        actor: &Actor,
        report: &ImportReport,
        job: Option<String>,
    ) -> Result<(), ContractError> {
        let mut summary = serde_json::json!({
            "rows": report.rows,
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
        });
        if let Some(job) = job {
            summary["job"] = serde_json::Value::String(job);
        }
        let audit = AuditEvent::change(
            actor,
            self.clock.now(),
            "contracts.imported",
            format!("organization:{}", actor.tenant),
            None,
            Some(summary),
        );
        self.table.transact_write(vec![audit.write_op()]).await?;
        Ok(())
    }

    async fn import_rows(
        &self,
        actor: &Actor,
        rows: Vec<ImportRow>,
        dry_run: bool,
        progress: Option<&tokio::sync::watch::Sender<usize>>,
    ) -> Result<ImportReport, ContractError> {
        Self::require_write(actor)?;
        let mut report = ImportReport {
            rows: rows.len(),
            ..ImportReport::default()
        };
        let existing = self.contracts_by_number(actor).await?;
        let series = self.series_of(&rows).await?;
        let now = self.clock.now();
        let today = now.date_naive();

        let mut seen: HashSet<String> = HashSet::with_capacity(rows.len());
        let mut changes = Vec::new();
        for row in rows {
            let reported: Vec<String> = row.issues.iter().map(|(p, _)| p.clone()).collect();
            for (pointer, issue) in row.issues {
                report.problems.push(RowProblem {
                    row: row.row,
                    pointer,
                    issue,
                });
            }
            let number = match &row.contract.contract_number {
                crate::input::Field::Value(number) => number.trim().to_uppercase(),
                _ => String::new(),
            };
            let current = existing.get(&number);
            // A known number updates its contract: columns the file lacks stay as they
            // are, blank cells clear.
            let validated = match current {
                Some(current) => ContractChanges::from(row.contract).apply(current),
                None => row.contract.validate(),
            };
            let terms = match validated {
                Ok(terms) => terms,
                Err(errors) => {
                    push_problems(&mut report, row.row, &errors, &reported);
                    continue;
                }
            };
            let mut contract = terms.into_contract(ContractId::generate(), actor.user, now);
            if !seen.insert(contract.contract_number.to_uppercase()) {
                report.problems.push(RowProblem {
                    row: row.row,
                    pointer: "/contractNumber".into(),
                    issue: FieldIssue::AlreadyInUse,
                });
                continue;
            }
            let info = contract
                .rate_reference
                .as_ref()
                .and_then(|reference| series.get(&reference.series).cloned().flatten());
            if let Err(issue) = price_with(&mut contract, info.as_ref()) {
                report.problems.push(RowProblem {
                    row: row.row,
                    pointer: "/rateReference/series".into(),
                    issue,
                });
                continue;
            }
            if !reported.is_empty() {
                continue;
            }
            match current {
                None => {
                    contract.status = contract.status_on(today);
                    report.created += 1;
                    changes.push(Change {
                        before: None,
                        after: contract,
                        facts: None,
                    });
                }
                Some(current) => {
                    let mut updated = contract;
                    updated.id = current.id;
                    updated.created_at = current.created_at;
                    updated.created_by = current.created_by;
                    updated.status = updated.status_on(today);
                    if same_terms(current, &updated) {
                        report.unchanged += 1;
                        continue;
                    }
                    updated.version = current.version + 1;
                    report.updated += 1;
                    changes.push(Change {
                        before: Some(current.clone()),
                        after: updated,
                        facts: None,
                    });
                }
            }
        }
        if dry_run || !report.problems.is_empty() {
            return Ok(report);
        }

        let mut settled = report.unchanged;
        let publish = |settled: usize| {
            if let Some(progress) = progress {
                progress.send_replace(settled);
            }
        };
        publish(settled);

        let afters: Vec<&Contract> = changes.iter().map(|change| &change.after).collect();
        let facts = prepare_bulk(self.table.as_ref(), actor.tenant, &afters).await?;
        for (change, facts) in changes.iter_mut().zip(facts) {
            change.facts = facts;
        }

        // As many contracts to a transaction as its write limit allows: fewer
        // transactions, fewer updates of the portfolio's totals.
        let mut batches: Vec<Vec<Change>> = Vec::new();
        let mut writes_left = 0;
        for change in changes {
            let writes = change.most_writes();
            if batches.is_empty() || writes > writes_left {
                batches.push(Vec::new());
                writes_left = WRITES_PER_TRANSACTION;
            }
            writes_left -= writes;
            if let Some(batch) = batches.last_mut() {
                batch.push(change);
            }
        }
        // The transactions stream through the store, `import_transactions_in_flight` at
        // a time, so the embedded store's group commits stay full. Every few hundred
        // transactions a fold of their pending differences into the totals joins the
        // stream (so a dashboard read meanwhile finds only a few); it runs beside the
        // writes, never waiting for them to drain. After a failure no new transaction
        // starts; those in flight finish, and what was written is folded either way.
        enum Work {
            Batch(Vec<Change>),
            Fold,
        }
        enum Written {
            Rows(usize),
            Folded,
        }
        let batch_count = batches.len();
        let work = batches.into_iter().enumerate().flat_map(|(n, batch)| {
            let fold = (n + 1) % FOLD_EVERY == 0 && n + 1 < batch_count;
            std::iter::once(Work::Batch(batch)).chain(fold.then_some(Work::Fold))
        });
        let failed = std::sync::atomic::AtomicBool::new(false);
        let folding = tokio::sync::Mutex::new(());
        let folding = &folding;
        let mut outcome = Ok(());
        let mut writes = futures_util::stream::iter(work)
            .take_while(|_| std::future::ready(!failed.load(std::sync::atomic::Ordering::Relaxed)))
            .map(|work| async move {
                match work {
                    Work::Batch(batch) => self
                        .write_batch(actor, &batch, now)
                        .await
                        .map(|()| Written::Rows(batch.len())),
                    // One fold at a time, of about what the transactions since the
                    // last one left (one pending difference each).
                    Work::Fold => {
                        let _one = folding.lock().await;
                        fold_pending_passes(self.table.as_ref(), actor.tenant, FOLD_PASSES)
                            .await
                            .map(|()| Written::Folded)
                            .map_err(portfolio_error)
                    }
                }
            })
            .buffer_unordered(self.import_transactions_in_flight);
        while let Some(result) = writes.next().await {
            match result {
                Ok(Written::Rows(rows)) => settled += rows,
                // The job's progress moves with the folds: a few dozen saves of it.
                Ok(Written::Folded) => publish(settled),
                Err(error) => {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    if outcome.is_ok() {
                        outcome = Err(error);
                    }
                }
            }
        }
        drop(writes);
        fold_pending(self.table.as_ref(), actor.tenant)
            .await
            .map_err(portfolio_error)?;
        publish(settled);
        outcome?;
        Ok(report)
    }

    async fn write_batch(
        &self,
        actor: &Actor,
        batch: &[Change],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ContractError> {
        let tenant = actor.tenant;
        let mut ops = Vec::new();
        for change in batch {
            let after = &change.after;
            let (action, condition) = match &change.before {
                None => ("contract.created", Condition::NotExists),
                Some(before) => ("contract.updated", Condition::VersionIs(before.version)),
            };
            ops.push(WriteOp::Put {
                item: after.item(tenant)?,
                condition,
            });
            if change.before.is_none() {
                ops.push(claim_contract_number(tenant, after)?);
            }
            ops.push(
                AuditEvent::change(
                    actor,
                    now,
                    action,
                    format!("contract:{}", after.id),
                    change.before.as_ref().map(Contract::audit_snapshot),
                    Some(after.audit_snapshot()),
                )
                .write_op(),
            );
            let old_series = change
                .before
                .as_ref()
                .and_then(|c| c.rate_reference.as_ref().map(|r| &r.series));
            let new_series = after.rate_reference.as_ref().map(|r| &r.series);
            if old_series != new_series {
                if let Some(series) = old_series {
                    ops.push(WriteOp::Delete {
                        key: keys::rate_reference(series, tenant, after.id),
                        condition: Condition::None,
                    });
                }
                ops.extend(reference_marker(tenant, after)?);
            }
        }
        let changes: Vec<LedgerChange> = batch
            .iter()
            .map(|change| {
                LedgerChange::new(change.before.as_ref(), Some(&change.after))
                    .with_facts(change.facts.as_ref())
            })
            .collect();
        match commit_with_portfolio(self.table.as_ref(), tenant, ops, &changes, Pending).await {
            Ok(()) => Ok(()),
            // Someone changed or created one of these contracts while the file was read.
            Err(StoreError::TransactionCanceled { .. }) => Err(ContractError::Contention),
            Err(other) => Err(other.into()),
        }
    }

    /// Every contract of the organization by its number in capitals.
    async fn contracts_by_number(
        &self,
        actor: &Actor,
    ) -> Result<HashMap<String, Contract>, ContractError> {
        let today = self.clock.today();
        let query = Query::partition(keys::tenant_partition(actor.tenant))
            .begins_with(keys::CONTRACT_PREFIX)
            .limit(1000);
        let mut contracts = HashMap::new();
        for item in query_all(self.table.as_ref(), query).await? {
            let contract = Contract::from_item(item, today)?;
            contracts.insert(contract.contract_number.to_uppercase(), contract);
        }
        Ok(contracts)
    }

    /// The catalogue entry of every reference series the rows name, read once each.
    async fn series_of(
        &self,
        rows: &[ImportRow],
    ) -> Result<HashMap<SeriesId, Option<SeriesInfo>>, ContractError> {
        let mut series = HashMap::new();
        for row in rows {
            let crate::input::Field::Value(reference) = &row.contract.rate_reference else {
                continue;
            };
            let Ok(id) = SeriesId::parse(&reference.series) else {
                continue;
            };
            if series.contains_key(&id) {
                continue;
            }
            let info = crate::rates::service::series_info(self.table.as_ref(), &id)
                .await
                .map_err(rates_error)?;
            series.insert(id, info);
        }
        Ok(series)
    }
}

fn portfolio_error(error: PortfolioError) -> ContractError {
    match error {
        PortfolioError::Store(store) => ContractError::Store(store),
        _ => ContractError::Contention,
    }
}

/// Whether `updated` says nothing `current` does not: what the bookkeeping fields aside.
fn same_terms(current: &Contract, updated: &Contract) -> bool {
    let mut comparable = updated.clone();
    comparable.version = current.version;
    comparable.updated_at = current.updated_at;
    comparable.updated_by = current.updated_by;
    comparable.status = current.status;
    &comparable == current
}

fn push_problems(
    report: &mut ImportReport,
    row: usize,
    errors: &ValidationErrors,
    already_reported: &[String],
) {
    for error in errors.errors() {
        let repeated = error.issue == FieldIssue::Required
            && already_reported
                .iter()
                .any(|pointer| pointer.starts_with(&error.pointer));
        if !repeated {
            report.problems.push(RowProblem {
                row,
                pointer: error.pointer.clone(),
                issue: error.issue.clone(),
            });
        }
    }
}
