//! The contract register: leasing and credit contracts, their derived status, and the
//! service that creates, reads, lists, changes and deletes them.

use crate::access::Role;
use crate::audit::{Actor, AuditEvent};
use crate::clock::Clock;
use crate::ids::{ContractId, TenantId, UserId};
use crate::input::{Field, date};
use crate::keys;
use crate::money::{AnnualRate, Currency, Money};
use crate::portfolio::{LedgerChange, TotalsWrite::Increment, commit_with_portfolio};
use crate::rates::{Observation, SeriesId, SeriesKind};
use crate::schedule::LiabilitySchedule;
use crate::store::{
    Condition, Cursor, Index, IndexKey, Item, Key, Query, StoreError, Table, WriteOp, from_item,
    to_attributes,
};
use crate::validation::{FieldIssue, ValidationErrors, text};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Gives an enum `NAMES` (its names on the wire, as serde spells them), `as_str`, and a `parse`
/// that answers [`FieldIssue::InvalidChoice`] listing them. A test holds the names to
/// serde's.
macro_rules! wire_names {
    ($enum:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $enum {
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The name on the wire, e.g. in a CSV cell or a counter name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)+
                }
            }

            pub fn parse(value: &str) -> Result<Self, FieldIssue> {
                match value {
                    $($name => Ok($enum::$variant),)+
                    _ => Err(FieldIssue::InvalidChoice { allowed: Self::NAMES }),
                }
            }
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Vehicle,
    It,
    Machinery,
    Property,
    Other,
}

wire_names!(Category {
    Vehicle => "vehicle",
    It => "it",
    Machinery => "machinery",
    Property => "property",
    Other => "other",
});

/// How often a payment falls due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentFrequency {
    Monthly,
    Quarterly,
    Yearly,
}

wire_names!(PaymentFrequency {
    Monthly => "monthly",
    Quarterly => "quarterly",
    Yearly => "yearly",
});

/// Whether each payment is due at the start (advance) or end (arrears) of its period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentTiming {
    Advance,
    Arrears,
}

wire_names!(PaymentTiming {
    Advance => "advance",
    Arrears => "arrears",
});

/// Where a contract stands on a given day. Derived from its dates, never stored.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ContractStatus {
    /// Starts in the future.
    Upcoming,
    /// Running, more than 90 days from its end date.
    #[default]
    Active,
    /// Running, its end date within 90 days.
    Ending,
    /// Past its end date and not terminated: it runs on, usually at the same payment.
    Extended,
    /// Terminated on or before today.
    Terminated,
}

wire_names!(ContractStatus {
    Upcoming => "upcoming",
    Active => "active",
    Ending => "ending",
    Extended => "extended",
    Terminated => "terminated",
});

impl ContractStatus {
    /// A contract is `ending` this many days before its end date.
    pub const ENDING_WINDOW_DAYS: u64 = 90;

    pub fn on(
        today: NaiveDate,
        start: NaiveDate,
        end: NaiveDate,
        terminated: Option<NaiveDate>,
    ) -> Self {
        if terminated.is_some_and(|day| day <= today) {
            ContractStatus::Terminated
        } else if today < start {
            ContractStatus::Upcoming
        } else if today > end {
            ContractStatus::Extended
        } else if today + Days::new(Self::ENDING_WINDOW_DAYS) >= end {
            ContractStatus::Ending
        } else {
            ContractStatus::Active
        }
    }
}

/// A leasing or credit contract as stored and as served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contract {
    pub id: ContractId,
    /// Unique within the organization, compared without regard to letter case.
    #[schema(example = "LC-2024-0042")]
    pub contract_number: String,
    #[schema(example = "Volvofinans Bank AB")]
    pub lessor: String,
    #[schema(example = "Volvo XC60 T6 Recharge, company car")]
    pub description: String,
    pub category: Category,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "ABC12D")]
    pub registration_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "4100")]
    pub cost_center: Option<String>,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    /// The day the contract was or will be terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_date: Option<NaiveDate>,
    /// What is paid each period.
    pub payment: Money,
    pub payment_frequency: PaymentFrequency,
    pub payment_timing: PaymentTiming,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual_value: Option<Money>,
    /// Annual interest rate in percent, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interest_rate: Option<AnnualRate>,
    /// Priced as a reference rate plus a margin, instead of a fixed `interestRate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_reference: Option<RateReference>,
    /// The rate in force: `interestRate`, or the reference's latest value plus the
    /// margin (updated when the reference moves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_rate: Option<AnnualRate>,
    /// The day of the reference observation behind `currentRate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_rate_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Derived from the dates and today's date.
    #[serde(skip_deserializing)]
    pub status: ContractStatus,
    /// Increases with every change; sent as the `ETag`.
    #[serde(skip_deserializing)]
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: UserId,
    pub updated_by: UserId,
}

impl Contract {
    pub fn status_on(&self, today: NaiveDate) -> ContractStatus {
        ContractStatus::on(today, self.start_date, self.end_date, self.termination_date)
    }

    pub(crate) fn item(&self, tenant: TenantId) -> Result<Item, StoreError> {
        let mut attributes = to_attributes(self)?;
        // Both are kept by the store or derived; storing them would only go stale.
        attributes.remove("status");
        attributes.remove("version");
        Ok(Item::new(keys::contract(tenant, self.id), attributes)
            .with_index(keys::contract_by_end(tenant, self.end_date, self.id))
            .with_version(self.version))
    }

    pub(crate) fn from_item(item: Item, today: NaiveDate) -> Result<Self, StoreError> {
        let version = item.version;
        let mut contract: Contract = from_item(item)?;
        contract.version = version;
        contract.status = contract.status_on(today);
        Ok(contract)
    }

    /// The contract as recorded in audit events.
    pub(crate) fn audit_snapshot(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.remove("status");
        }
        value
    }
}

/// An amount of money as sent by a client.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoneyInput {
    /// Integer minor units (öre for SEK), not negative.
    #[schema(minimum = 0, example = 689900)]
    pub amount: i64,
    /// ISO 4217 code.
    #[schema(example = "SEK", pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

impl MoneyInput {
    fn parse(self, positive: bool) -> Result<Money, (String, FieldIssue)> {
        let currency =
            Currency::parse(&self.currency).map_err(|issue| ("/currency".to_owned(), issue))?;
        if positive && self.amount == 0 {
            return Err(("/amount".to_owned(), FieldIssue::NotPositive));
        }
        Money::new(self.amount, currency).map_err(|issue| ("/amount".to_owned(), issue))
    }
}

/// A variable rate: a reference series plus a margin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateReference {
    /// A series of the rates catalogue (`GET /rates`), e.g. `SEDP3MSTIBORDELAYC`.
    #[schema(value_type = String, example = "SWESTR")]
    pub series: SeriesId,
    /// Percentage points added to the reference, as a decimal string.
    #[schema(value_type = String, example = "1.85")]
    pub margin: AnnualRate,
}

/// A variable rate as sent by a client.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateReferenceInput {
    #[schema(example = "SWESTR")]
    pub series: String,
    /// Percentage points, decimal string.
    #[schema(example = "1.85")]
    pub margin: String,
}

impl RateReferenceInput {
    fn parse(self) -> Result<RateReference, (String, FieldIssue)> {
        let series =
            SeriesId::parse(&self.series).map_err(|issue| ("/series".to_owned(), issue))?;
        let margin =
            AnnualRate::parse(&self.margin).map_err(|issue| ("/margin".to_owned(), issue))?;
        Ok(RateReference { series, margin })
    }
}

/// A new contract as sent by a client.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct NewContract {
    #[schema(value_type = String, required = true, max_length = 64, example = "LC-2024-0042")]
    pub contract_number: Field<String>,
    #[schema(value_type = String, required = true, max_length = 200, example = "Volvofinans Bank AB")]
    pub lessor: Field<String>,
    #[schema(value_type = String, required = true, max_length = 500)]
    pub description: Field<String>,
    #[schema(value_type = Category, required = true)]
    pub category: Field<String>,
    #[schema(value_type = Option<String>, max_length = 32, example = "ABC12D")]
    pub registration_number: Field<String>,
    #[schema(value_type = Option<String>, max_length = 64)]
    pub cost_center: Field<String>,
    #[schema(value_type = NaiveDate, required = true)]
    pub start_date: Field<String>,
    /// After `startDate`.
    #[schema(value_type = NaiveDate, required = true)]
    pub end_date: Field<String>,
    #[schema(value_type = Option<NaiveDate>)]
    pub termination_date: Field<String>,
    /// Paid each period; more than zero.
    #[schema(value_type = MoneyInput, required = true)]
    pub payment: Field<MoneyInput>,
    #[schema(value_type = PaymentFrequency, required = true)]
    pub payment_frequency: Field<String>,
    #[schema(value_type = PaymentTiming, required = true)]
    pub payment_timing: Field<String>,
    /// In the currency of `payment`.
    #[schema(value_type = Option<MoneyInput>)]
    pub residual_value: Field<MoneyInput>,
    /// Annual percent as a decimal string, e.g. `"4.95"`.
    #[schema(value_type = Option<String>, example = "4.95")]
    pub interest_rate: Field<String>,
    /// A variable rate instead of `interestRate`.
    #[schema(value_type = Option<RateReferenceInput>)]
    pub rate_reference: Field<RateReferenceInput>,
    #[schema(value_type = Option<String>, max_length = 4000)]
    pub notes: Field<String>,
}

/// Changes to a contract, as a JSON merge patch (RFC 7396): an absent field stays as it
/// is, `null` clears an optional field.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ContractChanges {
    #[schema(value_type = Option<String>, max_length = 64)]
    pub contract_number: Field<String>,
    #[schema(value_type = Option<String>, max_length = 200)]
    pub lessor: Field<String>,
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Field<String>,
    #[schema(value_type = Option<Category>)]
    pub category: Field<String>,
    #[schema(value_type = Option<String>, nullable, max_length = 32)]
    pub registration_number: Field<String>,
    #[schema(value_type = Option<String>, nullable, max_length = 64)]
    pub cost_center: Field<String>,
    #[schema(value_type = Option<NaiveDate>)]
    pub start_date: Field<String>,
    #[schema(value_type = Option<NaiveDate>)]
    pub end_date: Field<String>,
    #[schema(value_type = Option<NaiveDate>, nullable)]
    pub termination_date: Field<String>,
    #[schema(value_type = Option<MoneyInput>)]
    pub payment: Field<MoneyInput>,
    #[schema(value_type = Option<PaymentFrequency>)]
    pub payment_frequency: Field<String>,
    #[schema(value_type = Option<PaymentTiming>)]
    pub payment_timing: Field<String>,
    #[schema(value_type = Option<MoneyInput>, nullable)]
    pub residual_value: Field<MoneyInput>,
    #[schema(value_type = Option<String>, nullable)]
    pub interest_rate: Field<String>,
    #[schema(value_type = Option<RateReferenceInput>, nullable)]
    pub rate_reference: Field<RateReferenceInput>,
    #[schema(value_type = Option<String>, nullable, max_length = 4000)]
    pub notes: Field<String>,
}

/// The validated terms of a contract: what a client may set.
#[derive(Debug)]
pub(crate) struct Terms {
    contract_number: String,
    lessor: String,
    description: String,
    category: Category,
    registration_number: Option<String>,
    cost_center: Option<String>,
    start_date: NaiveDate,
    end_date: NaiveDate,
    termination_date: Option<NaiveDate>,
    payment: Money,
    payment_frequency: PaymentFrequency,
    payment_timing: PaymentTiming,
    residual_value: Option<Money>,
    interest_rate: Option<AnnualRate>,
    rate_reference: Option<RateReference>,
    notes: Option<String>,
}

fn contract_number(value: String) -> Result<String, FieldIssue> {
    text(&value, 64, false)
}

fn lessor(value: String) -> Result<String, FieldIssue> {
    text(&value, 200, false)
}

fn description(value: String) -> Result<String, FieldIssue> {
    text(&value, 500, false)
}

fn registration_number(value: String) -> Result<String, FieldIssue> {
    // Plates are written with and without a space ("ABC 12D"); keep one spelling.
    text(&value, 32, false).map(|v| v.replace(' ', "").to_uppercase())
}

fn cost_center(value: String) -> Result<String, FieldIssue> {
    text(&value, 64, false)
}

fn notes(value: String) -> Result<String, FieldIssue> {
    text(&value, 4000, true)
}

fn category(value: String) -> Result<Category, FieldIssue> {
    Category::parse(&value)
}

fn frequency(value: String) -> Result<PaymentFrequency, FieldIssue> {
    PaymentFrequency::parse(&value)
}

fn timing(value: String) -> Result<PaymentTiming, FieldIssue> {
    PaymentTiming::parse(&value)
}

fn day(value: String) -> Result<NaiveDate, FieldIssue> {
    date(&value)
}

fn rate(value: String) -> Result<AnnualRate, FieldIssue> {
    AnnualRate::parse(&value)
}

/// Each field of [`Terms`] as parsed: `None` where the field was invalid (and an error
/// was recorded).
struct PartialTerms {
    contract_number: Option<String>,
    lessor: Option<String>,
    description: Option<String>,
    category: Option<Category>,
    registration_number: Option<Option<String>>,
    cost_center: Option<Option<String>>,
    start_date: Option<NaiveDate>,
    end_date: Option<NaiveDate>,
    termination_date: Option<Option<NaiveDate>>,
    payment: Option<Money>,
    payment_frequency: Option<PaymentFrequency>,
    payment_timing: Option<PaymentTiming>,
    residual_value: Option<Option<Money>>,
    interest_rate: Option<Option<AnnualRate>>,
    rate_reference: Option<Option<RateReference>>,
    notes: Option<Option<String>>,
}

impl PartialTerms {
    /// The terms, when every field parsed and the rules across fields hold. A field is
    /// `None` only where an error was recorded.
    fn finish(self, errors: ValidationErrors) -> Result<Terms, ValidationErrors> {
        if !errors.is_empty() {
            return Err(errors);
        }
        let terms = (|| {
            Some(Terms {
                contract_number: self.contract_number?,
                lessor: self.lessor?,
                description: self.description?,
                category: self.category?,
                registration_number: self.registration_number?,
                cost_center: self.cost_center?,
                start_date: self.start_date?,
                end_date: self.end_date?,
                termination_date: self.termination_date?,
                payment: self.payment?,
                payment_frequency: self.payment_frequency?,
                payment_timing: self.payment_timing?,
                residual_value: self.residual_value?,
                interest_rate: self.interest_rate?,
                rate_reference: self.rate_reference?,
                notes: self.notes?,
            })
        })();
        terms.map_or(Err(errors), Terms::checked)
    }
}

impl NewContract {
    pub(crate) fn validate(self) -> Result<Terms, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let e = &mut errors;
        let terms = PartialTerms {
            contract_number: self
                .contract_number
                .required(e, "/contractNumber", contract_number),
            lessor: self.lessor.required(e, "/lessor", lessor),
            description: self.description.required(e, "/description", description),
            category: self.category.required(e, "/category", category),
            registration_number: self.registration_number.optional(
                e,
                "/registrationNumber",
                registration_number,
            ),
            cost_center: self.cost_center.optional(e, "/costCenter", cost_center),
            start_date: self.start_date.required(e, "/startDate", day),
            end_date: self.end_date.required(e, "/endDate", day),
            termination_date: self.termination_date.optional(e, "/terminationDate", day),
            payment: parse_money_required(e, self.payment, "/payment"),
            payment_frequency: self
                .payment_frequency
                .required(e, "/paymentFrequency", frequency),
            payment_timing: self.payment_timing.required(e, "/paymentTiming", timing),
            residual_value: parse_money_optional(e, self.residual_value, "/residualValue"),
            interest_rate: self.interest_rate.optional(e, "/interestRate", rate),
            rate_reference: parse_reference(e, self.rate_reference, "/rateReference"),
            notes: self.notes.optional(e, "/notes", notes),
        };
        terms.finish(errors)
    }
}

/// A full description of a contract read as changes to an existing one: a field left
/// out stays as it is, an explicit `null` clears it.
impl From<NewContract> for ContractChanges {
    fn from(new: NewContract) -> Self {
        Self {
            contract_number: new.contract_number,
            lessor: new.lessor,
            description: new.description,
            category: new.category,
            registration_number: new.registration_number,
            cost_center: new.cost_center,
            start_date: new.start_date,
            end_date: new.end_date,
            termination_date: new.termination_date,
            payment: new.payment,
            payment_frequency: new.payment_frequency,
            payment_timing: new.payment_timing,
            residual_value: new.residual_value,
            interest_rate: new.interest_rate,
            rate_reference: new.rate_reference,
            notes: new.notes,
        }
    }
}

impl ContractChanges {
    pub(crate) fn apply(self, current: &Contract) -> Result<Terms, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let e = &mut errors;
        let c = current.clone();
        let terms = PartialTerms {
            contract_number: self.contract_number.patch_required(
                e,
                "/contractNumber",
                c.contract_number,
                contract_number,
            ),
            lessor: self.lessor.patch_required(e, "/lessor", c.lessor, lessor),
            description: self.description.patch_required(
                e,
                "/description",
                c.description,
                description,
            ),
            category: self
                .category
                .patch_required(e, "/category", c.category, category),
            registration_number: self.registration_number.patch_optional(
                e,
                "/registrationNumber",
                c.registration_number,
                registration_number,
            ),
            cost_center: self.cost_center.patch_optional(
                e,
                "/costCenter",
                c.cost_center,
                cost_center,
            ),
            start_date: self
                .start_date
                .patch_required(e, "/startDate", c.start_date, day),
            end_date: self.end_date.patch_required(e, "/endDate", c.end_date, day),
            termination_date: self.termination_date.patch_optional(
                e,
                "/terminationDate",
                c.termination_date,
                day,
            ),
            payment: match self.payment {
                Field::Missing => Some(c.payment),
                other => parse_money_required(e, other, "/payment"),
            },
            payment_frequency: self.payment_frequency.patch_required(
                e,
                "/paymentFrequency",
                c.payment_frequency,
                frequency,
            ),
            payment_timing: self.payment_timing.patch_required(
                e,
                "/paymentTiming",
                c.payment_timing,
                timing,
            ),
            residual_value: match self.residual_value {
                Field::Missing => Some(c.residual_value),
                other => parse_money_optional(e, other, "/residualValue"),
            },
            interest_rate: self.interest_rate.patch_optional(
                e,
                "/interestRate",
                c.interest_rate,
                rate,
            ),
            rate_reference: match self.rate_reference {
                Field::Missing => Some(c.rate_reference),
                other => parse_reference(e, other, "/rateReference"),
            },
            notes: self.notes.patch_optional(e, "/notes", c.notes, notes),
        };
        terms.finish(errors)
    }
}

fn parse_reference(
    errors: &mut ValidationErrors,
    field: Field<RateReferenceInput>,
    pointer: &str,
) -> Option<Option<RateReference>> {
    match field {
        Field::Value(input) => match input.parse() {
            Ok(reference) => Some(Some(reference)),
            Err((sub, issue)) => {
                errors.add(format!("{pointer}{sub}"), issue);
                None
            }
        },
        Field::Missing | Field::Null => Some(None),
    }
}

fn parse_money_required(
    errors: &mut ValidationErrors,
    field: Field<MoneyInput>,
    pointer: &str,
) -> Option<Money> {
    match field {
        Field::Value(input) => parse_money(errors, input, pointer, true),
        Field::Missing => {
            errors.add(pointer, FieldIssue::Required);
            None
        }
        Field::Null => {
            errors.add(pointer, FieldIssue::NotNullable);
            None
        }
    }
}

fn parse_money_optional(
    errors: &mut ValidationErrors,
    field: Field<MoneyInput>,
    pointer: &str,
) -> Option<Option<Money>> {
    match field {
        Field::Value(input) => parse_money(errors, input, pointer, false).map(Some),
        Field::Missing | Field::Null => Some(None),
    }
}

fn parse_money(
    errors: &mut ValidationErrors,
    input: MoneyInput,
    pointer: &str,
    positive: bool,
) -> Option<Money> {
    match input.parse(positive) {
        Ok(money) => Some(money),
        Err((sub, issue)) => {
            errors.add(format!("{pointer}{sub}"), issue);
            None
        }
    }
}

impl Terms {
    /// Rules that span fields.
    fn checked(self) -> Result<Terms, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if self.end_date <= self.start_date {
            errors.add("/endDate", FieldIssue::EndNotAfterStart);
        }
        if self
            .termination_date
            .is_some_and(|day| day < self.start_date)
        {
            errors.add("/terminationDate", FieldIssue::BeforeStart);
        }
        if self
            .residual_value
            .is_some_and(|residual| residual.currency != self.payment.currency)
        {
            errors.add("/residualValue/currency", FieldIssue::CurrencyMismatch);
        }
        if self.interest_rate.is_some() && self.rate_reference.is_some() {
            errors.add("/rateReference", FieldIssue::RateConflict);
        }
        errors.finish(|| self)
    }

    pub(crate) fn into_contract(self, id: ContractId, by: UserId, at: DateTime<Utc>) -> Contract {
        Contract {
            id,
            contract_number: self.contract_number,
            lessor: self.lessor,
            description: self.description,
            category: self.category,
            registration_number: self.registration_number,
            cost_center: self.cost_center,
            start_date: self.start_date,
            end_date: self.end_date,
            termination_date: self.termination_date,
            payment: self.payment,
            payment_frequency: self.payment_frequency,
            payment_timing: self.payment_timing,
            residual_value: self.residual_value,
            current_rate: self.interest_rate,
            current_rate_date: None,
            interest_rate: self.interest_rate,
            rate_reference: self.rate_reference,
            notes: self.notes,
            status: ContractStatus::default(),
            version: 1,
            created_at: at,
            updated_at: at,
            created_by: by,
            updated_by: by,
        }
    }
}

/// Filters of the contract list. All given filters must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContractFilter {
    pub status: Option<ContractStatus>,
    pub category: Option<Category>,
    /// Compared without regard to letter case.
    pub lessor: Option<String>,
    /// End date strictly before this day.
    pub ends_before: Option<NaiveDate>,
    /// Free text, matched without regard to case against contract number, description and
    /// registration number.
    pub q: Option<String>,
}

impl ContractFilter {
    fn matches(&self, contract: &Contract) -> bool {
        let text_matches = |needle: &str| {
            let needle = needle.to_lowercase();
            contract.contract_number.to_lowercase().contains(&needle)
                || contract.description.to_lowercase().contains(&needle)
                || contract
                    .registration_number
                    .as_deref()
                    .is_some_and(|r| r.to_lowercase().contains(&needle.replace(' ', "")))
        };
        self.status.is_none_or(|s| contract.status == s)
            && self.category.is_none_or(|c| contract.category == c)
            && self
                .lessor
                .as_deref()
                .is_none_or(|l| contract.lessor.to_lowercase() == l.trim().to_lowercase())
            && self.ends_before.is_none_or(|d| contract.end_date < d)
            && self.q.as_deref().is_none_or(text_matches)
    }

    /// The end-date range the filter confines results to, if any; lets the list walk the
    /// by-end-date index instead of every contract.
    fn end_date_range(&self, today: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        let mut range: Option<(NaiveDate, NaiveDate)> = match self.status {
            Some(ContractStatus::Ending) => {
                Some((today, today + Days::new(ContractStatus::ENDING_WINDOW_DAYS)))
            }
            Some(ContractStatus::Extended) => Some((NaiveDate::MIN, today.pred_opt()?)),
            _ => None,
        };
        if let Some(before) = self.ends_before {
            let last = before.pred_opt()?;
            range = Some(match range {
                Some((first, end)) => (first, end.min(last)),
                None => (NaiveDate::MIN, last),
            });
        }
        range
    }
}

/// Where a list page ended. Clients see it only as an opaque token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPosition {
    /// Sort key of the last contract examined.
    #[serde(rename = "s")]
    pub sort_key: String,
    /// Its by-end-date index key, when the list walked that index.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub end_index_key: Option<String>,
}

/// One page of the contract list.
#[derive(Clone, Debug, PartialEq)]
pub struct ContractPage {
    pub contracts: Vec<Contract>,
    /// Present exactly when more contracts may follow.
    pub next: Option<ListPosition>,
}

/// Asks for a create to be idempotent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The client's key (1 to 255 visible ASCII characters).
    pub key: String,
    /// A hash of the request, to tell a retry from a different request.
    pub request_hash: String,
}

impl IdempotencyKey {
    pub fn parse(key: &str, request_body: &[u8]) -> Result<Self, FieldIssue> {
        if key.is_empty() || key.len() > 255 {
            return Err(FieldIssue::TooLong { max: 255 });
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldIssue::ControlCharacters);
        }
        // Hash the JSON value rather than the bytes, so whitespace and key order do not
        // make a retry look like a new request.
        let canonical = serde_json::from_slice::<serde_json::Value>(request_body)
            .map(|value| value.to_string().into_bytes())
            .unwrap_or_else(|_| request_body.to_vec());
        let request_hash = format!("{:x}", Sha256::digest(&canonical));
        Ok(Self {
            key: key.to_owned(),
            request_hash,
        })
    }
}

/// The result of a create.
#[derive(Clone, Debug, PartialEq)]
pub struct Created {
    pub contract: Contract,
    /// True when this answers a retry of an earlier, identical request.
    pub replayed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdempotencyRecord {
    request_hash: String,
    /// The contract as first answered (its `version` is not part of its serialized form).
    contract: Contract,
    contract_version: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("no such contract")]
    NotFound,
    #[error("the contract has changed since version {expected}; it is at {current}")]
    VersionMismatch { expected: u64, current: u64 },
    #[error("the contract number is already in use")]
    ContractNumberTaken,
    #[error("the idempotency key was used for a different request")]
    IdempotencyKeyReused,
    #[error("the store is busy with a concurrent change; retry")]
    Contention,
    #[error("the list position is not valid for this list")]
    InvalidPosition,
    #[error("role {0} may not do this")]
    Forbidden(Role),
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long an idempotency key is remembered.
const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 60 * 60;
/// The most contracts one list request examines, so a narrow filter over a large
/// register answers in bounded time (with a cursor to go on from).
const LIST_EXAMINE_BUDGET: usize = 2000;

#[derive(Clone)]
pub struct ContractService {
    pub(crate) table: Arc<dyn Table>,
    pub(crate) clock: Arc<dyn Clock>,
    /// An import's transactions in flight at once.
    pub(crate) import_transactions_in_flight: usize,
}

impl ContractService {
    pub const MAX_PAGE: usize = 200;
    /// The most contracts one export holds.
    pub const MAX_EXPORT: usize = 200_000;

    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self {
            table,
            clock,
            import_transactions_in_flight: crate::import::TRANSACTIONS_IN_FLIGHT,
        }
    }

    /// Imports with at most `transactions` in flight at once (at least one): for a store
    /// that takes concurrent transactions badly, such as moto's DynamoDB, which copies
    /// the table under a transaction while another writes to it.
    pub fn with_import_transactions_in_flight(mut self, transactions: usize) -> Self {
        self.import_transactions_in_flight = transactions.max(1);
        self
    }

    /// Today by the service's clock.
    pub fn today(&self) -> NaiveDate {
        self.clock.today()
    }

    pub(crate) fn require_write(actor: &Actor) -> Result<(), ContractError> {
        if actor.role.allows(crate::access::Permission::WriteContracts) {
            Ok(())
        } else {
            Err(ContractError::Forbidden(actor.role))
        }
    }

    pub async fn create(
        &self,
        actor: &Actor,
        input: NewContract,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Created, ContractError> {
        Self::require_write(actor)?;
        let idempotency_key = idempotency
            .as_ref()
            .map(|i| keys::idempotency(actor.tenant, "contracts.create", actor.user, &i.key));
        if let (Some(key), Some(idempotency)) = (&idempotency_key, &idempotency)
            && let Some(replay) = self.replay(key, idempotency).await?
        {
            return Ok(replay);
        }

        let terms = input.validate()?;
        let now = self.clock.now();
        let mut contract = terms.into_contract(ContractId::generate(), actor.user, now);
        contract.status = contract.status_on(now.date_naive());
        self.price(&mut contract).await?;
        let audit = AuditEvent::change(
            actor,
            now,
            "contract.created",
            format!("contract:{}", contract.id),
            None,
            Some(contract.audit_snapshot()),
        );
        let mut ops = vec![
            WriteOp::Put {
                item: contract.item(actor.tenant)?,
                condition: Condition::NotExists,
            },
            claim_contract_number(actor.tenant, &contract)?,
            audit.write_op(),
        ];
        if let (Some(key), Some(idempotency)) = (&idempotency_key, &idempotency) {
            let record = IdempotencyRecord {
                request_hash: idempotency.request_hash.clone(),
                contract: contract.clone(),
                contract_version: contract.version,
            };
            ops.push(WriteOp::Put {
                item: Item::new(key.clone(), to_attributes(&record)?)
                    .expiring_at(now.timestamp() + IDEMPOTENCY_TTL_SECONDS),
                condition: Condition::NotExistsOrExpired {
                    now: now.timestamp(),
                },
            });
        }
        ops.extend(reference_marker(actor.tenant, &contract)?);
        let changes = [LedgerChange::created(&contract)];
        match commit_with_portfolio(self.table.as_ref(), actor.tenant, ops, &changes, Increment)
            .await
        {
            Ok(()) => Ok(Created {
                contract,
                replayed: false,
            }),
            Err(StoreError::TransactionCanceled { failed }) if failed.contains(&3) => {
                // A concurrent request with the same key won the race.
                match (&idempotency_key, &idempotency) {
                    (Some(key), Some(idempotency)) => self
                        .replay(key, idempotency)
                        .await?
                        .ok_or(ContractError::Contention),
                    _ => Err(ContractError::Contention),
                }
            }
            Err(StoreError::TransactionCanceled { failed }) if failed.contains(&1) => {
                Err(ContractError::ContractNumberTaken)
            }
            Err(StoreError::TransactionCanceled { .. }) => Err(ContractError::Contention),
            Err(other) => Err(other.into()),
        }
    }

    async fn replay(
        &self,
        key: &Key,
        idempotency: &IdempotencyKey,
    ) -> Result<Option<Created>, ContractError> {
        let now = self.clock.now();
        let Some(item) = self.table.get(key).await? else {
            return Ok(None);
        };
        if item.is_expired(now.timestamp()) {
            return Ok(None);
        }
        let record: IdempotencyRecord = from_item(item)?;
        if record.request_hash != idempotency.request_hash {
            return Err(ContractError::IdempotencyKeyReused);
        }
        let mut contract = record.contract;
        contract.version = record.contract_version;
        contract.status = contract.status_on(now.date_naive());
        Ok(Some(Created {
            contract,
            replayed: true,
        }))
    }

    pub async fn get(&self, tenant: TenantId, id: ContractId) -> Result<Contract, ContractError> {
        let item = self
            .table
            .get(&keys::contract(tenant, id))
            .await?
            .ok_or(ContractError::NotFound)?;
        Ok(Contract::from_item(item, self.clock.today())?)
    }

    pub async fn list(
        &self,
        tenant: TenantId,
        filter: &ContractFilter,
        limit: usize,
        after: Option<ListPosition>,
    ) -> Result<ContractPage, ContractError> {
        let limit = limit.clamp(1, Self::MAX_PAGE);
        let today = self.clock.today();
        let range = filter.end_date_range(today);
        if let Some((first, last)) = range
            && first > last
        {
            return Ok(ContractPage {
                contracts: Vec::new(),
                next: None,
            });
        }
        let partition = keys::tenant_partition(tenant);
        let base = match range {
            Some((first, last)) => {
                let (low, high) = keys::end_date_range(first, last);
                Query::partition(keys::contracts_by_end_partition(tenant))
                    .on_index(Index::Gsi1)
                    .between(low, high)
            }
            None => Query::partition(partition.clone()).begins_with(keys::CONTRACT_PREFIX),
        };
        let mut start_after = match after {
            None => None,
            Some(position) => {
                if position.end_index_key.is_some() != range.is_some()
                    || !position.sort_key.starts_with(keys::CONTRACT_PREFIX)
                {
                    return Err(ContractError::InvalidPosition);
                }
                Some(Cursor {
                    key: Key::new(partition.clone(), position.sort_key),
                    index_key: position
                        .end_index_key
                        .map(|sk| IndexKey::new(keys::contracts_by_end_partition(tenant), sk)),
                })
            }
        };

        let mut contracts = Vec::with_capacity(limit);
        let mut examined = 0;
        loop {
            // Without filters every item matches, so ask for exactly one more than needed.
            let want = if filter == &ContractFilter::default() {
                limit + 1 - contracts.len()
            } else {
                (LIST_EXAMINE_BUDGET - examined).min(500)
            };
            let page = self
                .table
                .query(base.clone().limit(want).start_after(start_after.take()))
                .await?;
            let page_len = page.items.len();
            let mut last_examined = None;
            for item in page.items {
                examined += 1;
                let position = ListPosition {
                    sort_key: item.key.sk.clone(),
                    end_index_key: range.and(item.index_key.as_ref().map(|k| k.sk.clone())),
                };
                let contract = Contract::from_item(item, today)?;
                if filter.matches(&contract) {
                    if contracts.len() == limit {
                        // One match beyond the page proves there is more.
                        let last: &Contract = &contracts[limit - 1];
                        return Ok(ContractPage {
                            next: Some(position_of(last, range.is_some())),
                            contracts,
                        });
                    }
                    contracts.push(contract);
                }
                last_examined = Some(position);
            }
            let exhausted = page.next.is_none() || page_len == 0;
            if exhausted {
                return Ok(ContractPage {
                    contracts,
                    next: None,
                });
            }
            if examined >= LIST_EXAMINE_BUDGET {
                return Ok(ContractPage {
                    contracts,
                    next: last_examined,
                });
            }
            start_after = page.next;
        }
    }

    /// Every contract matching `filter`, each with its leasing debt today (`None` when it
    /// has no rate to discount with), for an export. The export itself is audited.
    pub async fn export(
        &self,
        actor: &Actor,
        filter: &ContractFilter,
    ) -> Result<Vec<(Contract, Option<rust_decimal::Decimal>)>, ContractError> {
        let today = self.clock.today();
        let mut rows = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .list(actor.tenant, filter, Self::MAX_PAGE, after.take())
                .await?;
            for contract in page.contracts {
                let debt = crate::schedule::build(&contract, None, Some(today))
                    .ok()
                    .map(|schedule| schedule.liability_at(today));
                rows.push((contract, debt));
            }
            match page.next {
                Some(next) if rows.len() < Self::MAX_EXPORT => after = Some(next),
                _ => break,
            }
        }
        let audit = AuditEvent::change(
            actor,
            self.clock.now(),
            "contracts.exported",
            format!("organization:{}", actor.tenant),
            None,
            Some(serde_json::json!({
                "filter": {
                    "status": filter.status,
                    "category": filter.category,
                    "lessor": filter.lessor,
                    "endsBefore": filter.ends_before,
                    "q": filter.q,
                },
                "rows": rows.len(),
            })),
        );
        self.table.transact_write(vec![audit.write_op()]).await?;
        Ok(rows)
    }

    /// The contract's liability schedule (to `until` for an extended contract) and its
    /// leasing debt today.
    pub async fn schedule(
        &self,
        tenant: TenantId,
        id: ContractId,
        until: Option<NaiveDate>,
    ) -> Result<(LiabilitySchedule, rust_decimal::Decimal), ContractError> {
        let contract = self.get(tenant, id).await?;
        let today = self.clock.today();
        let schedule = crate::schedule::build(&contract, None, until.or(Some(today)))?;
        let debt_today = schedule.liability_at(today);
        Ok((schedule, debt_today))
    }

    pub async fn update(
        &self,
        actor: &Actor,
        id: ContractId,
        expected_version: Option<u64>,
        changes: ContractChanges,
    ) -> Result<Contract, ContractError> {
        Self::require_write(actor)?;
        let current = self.get(actor.tenant, id).await?;
        if let Some(expected) = expected_version
            && expected != current.version
        {
            return Err(ContractError::VersionMismatch {
                expected,
                current: current.version,
            });
        }
        let terms = changes.apply(&current)?;
        let now = self.clock.now();
        let mut updated = terms.into_contract(id, actor.user, now);
        updated.created_at = current.created_at;
        updated.created_by = current.created_by;
        updated.version = current.version + 1;
        updated.status = updated.status_on(now.date_naive());
        self.price(&mut updated).await?;

        let audit = AuditEvent::change(
            actor,
            now,
            "contract.updated",
            format!("contract:{id}"),
            Some(current.audit_snapshot()),
            Some(updated.audit_snapshot()),
        );
        let mut ops = vec![
            WriteOp::Put {
                item: updated.item(actor.tenant)?,
                condition: Condition::VersionIs(current.version),
            },
            audit.write_op(),
        ];
        let renumbered =
            updated.contract_number.to_uppercase() != current.contract_number.to_uppercase();
        if renumbered {
            ops.push(claim_contract_number(actor.tenant, &updated)?);
            ops.push(WriteOp::Delete {
                key: keys::contract_number(actor.tenant, &current.contract_number),
                condition: Condition::None,
            });
        }
        let old_series = current.rate_reference.as_ref().map(|r| &r.series);
        let new_series = updated.rate_reference.as_ref().map(|r| &r.series);
        if old_series != new_series {
            if let Some(series) = old_series {
                ops.push(WriteOp::Delete {
                    key: keys::rate_reference(series, actor.tenant, id),
                    condition: Condition::None,
                });
            }
            ops.extend(reference_marker(actor.tenant, &updated)?);
        }
        let changes = [LedgerChange::updated(&current, &updated)];
        match commit_with_portfolio(self.table.as_ref(), actor.tenant, ops, &changes, Increment)
            .await
        {
            Ok(()) => Ok(updated),
            Err(StoreError::TransactionCanceled { failed }) if failed.contains(&0) => {
                self.stale_or_gone(actor.tenant, id, current.version).await
            }
            Err(StoreError::TransactionCanceled { failed })
                if renumbered && failed.contains(&2) =>
            {
                Err(ContractError::ContractNumberTaken)
            }
            Err(StoreError::TransactionCanceled { .. }) => Err(ContractError::Contention),
            Err(other) => Err(other.into()),
        }
    }

    pub async fn delete(
        &self,
        actor: &Actor,
        id: ContractId,
        expected_version: Option<u64>,
    ) -> Result<(), ContractError> {
        Self::require_write(actor)?;
        let current = self.get(actor.tenant, id).await?;
        if let Some(expected) = expected_version
            && expected != current.version
        {
            return Err(ContractError::VersionMismatch {
                expected,
                current: current.version,
            });
        }
        let audit = AuditEvent::change(
            actor,
            self.clock.now(),
            "contract.deleted",
            format!("contract:{id}"),
            Some(current.audit_snapshot()),
            None,
        );
        let mut ops = vec![
            WriteOp::Delete {
                key: keys::contract(actor.tenant, id),
                condition: Condition::VersionIs(current.version),
            },
            WriteOp::Delete {
                key: keys::contract_number(actor.tenant, &current.contract_number),
                condition: Condition::None,
            },
            audit.write_op(),
        ];
        if let Some(reference) = &current.rate_reference {
            ops.push(WriteOp::Delete {
                key: keys::rate_reference(&reference.series, actor.tenant, id),
                condition: Condition::None,
            });
        }
        let changes = [LedgerChange::deleted(&current)];
        match commit_with_portfolio(self.table.as_ref(), actor.tenant, ops, &changes, Increment)
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::TransactionCanceled { failed }) if failed.contains(&0) => self
                .stale_or_gone(actor.tenant, id, current.version)
                .await
                .map(|_| ()),
            Err(StoreError::TransactionCanceled { .. }) => Err(ContractError::Contention),
            Err(other) => Err(other.into()),
        }
    }

    /// Sets the rate in force: the fixed rate, or the reference's latest value plus the
    /// margin. A reference must name an interest-rate series of the catalogue.
    async fn price(&self, contract: &mut Contract) -> Result<(), ContractError> {
        let info = match &contract.rate_reference {
            Some(reference) => {
                crate::rates::service::series_info(self.table.as_ref(), &reference.series)
                    .await
                    .map_err(rates_error)?
            }
            None => None,
        };
        price_with(contract, info.as_ref())
            .map_err(|issue| ValidationErrors::single("/rateReference/series", issue).into())
    }

    /// Explains a lost race on a versioned write.
    async fn stale_or_gone(
        &self,
        tenant: TenantId,
        id: ContractId,
        expected: u64,
    ) -> Result<Contract, ContractError> {
        match self.get(tenant, id).await {
            Ok(now) => Err(ContractError::VersionMismatch {
                expected,
                current: now.version,
            }),
            Err(error) => Err(error),
        }
    }
}

fn position_of(contract: &Contract, by_end_date: bool) -> ListPosition {
    ListPosition {
        sort_key: keys::contract_sort_key(contract.id),
        end_index_key: by_end_date.then(|| format!("{}#{}", contract.end_date, contract.id)),
    }
}

/// Prices `contract` with `info`, what the catalogue holds on its reference series.
pub(crate) fn price_with(
    contract: &mut Contract,
    info: Option<&crate::rates::SeriesInfo>,
) -> Result<(), FieldIssue> {
    let Some(reference) = &contract.rate_reference else {
        contract.current_rate = contract.interest_rate;
        contract.current_rate_date = None;
        return Ok(());
    };
    let Some(info) = info.filter(|info| info.kind == SeriesKind::InterestRate) else {
        return Err(FieldIssue::UnknownSeries);
    };
    contract.current_rate = info
        .last_observation
        .map(|observation| reference_rate(observation, reference));
    contract.current_rate_date = info.last_observation.map(|observation| observation.date);
    Ok(())
}

pub(crate) fn rates_error(error: crate::rates::RatesError) -> ContractError {
    match error {
        crate::rates::RatesError::Store(store) => ContractError::Store(store),
        other => ContractError::Store(StoreError::Unavailable(other.to_string())),
    }
}

fn reference_rate(observation: Observation, reference: &RateReference) -> AnnualRate {
    AnnualRate::from_percent(observation.value + reference.margin.percent())
}

/// Where a reference marker points.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReferenceMarker {
    tenant_id: TenantId,
    contract_id: ContractId,
}

/// The marker that lets a new observation of the contract's reference series find it.
pub(crate) fn reference_marker(
    tenant: TenantId,
    contract: &Contract,
) -> Result<Option<WriteOp>, StoreError> {
    let Some(reference) = &contract.rate_reference else {
        return Ok(None);
    };
    let marker = ReferenceMarker {
        tenant_id: tenant,
        contract_id: contract.id,
    };
    Ok(Some(WriteOp::Put {
        item: Item::new(
            keys::rate_reference(&reference.series, tenant, contract.id),
            to_attributes(&marker)?,
        ),
        condition: Condition::None,
    }))
}

/// Moves every contract priced off `series` to its `latest` observation plus the
/// contract's margin; returns how many changed. Each change is a new version with an
/// audit event by the system. Found through the reference markers, never a scan.
pub async fn reprice_contracts(
    table: &dyn Table,
    clock: &dyn Clock,
    series: &SeriesId,
    latest: Observation,
) -> Result<usize, ContractError> {
    let mut repriced = 0;
    let mut after = None;
    loop {
        let page = table
            .query(
                Query::partition(keys::rate_references_partition(series))
                    .limit(200)
                    .start_after(after.take()),
            )
            .await?;
        for item in page.items {
            let marker: ReferenceMarker = from_item(item)?;
            if reprice(
                table,
                clock,
                marker.tenant_id,
                marker.contract_id,
                series,
                latest,
            )
            .await?
            {
                repriced += 1;
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(repriced),
        }
    }
}

async fn reprice(
    table: &dyn Table,
    clock: &dyn Clock,
    tenant: TenantId,
    id: ContractId,
    series: &SeriesId,
    latest: Observation,
) -> Result<bool, ContractError> {
    // A user may change the contract at the same moment; read again and retry.
    for _ in 0..3 {
        let Some(item) = table.get(&keys::contract(tenant, id)).await? else {
            return Ok(false);
        };
        let now = clock.now();
        let current = Contract::from_item(item, now.date_naive())?;
        let Some(reference) = current
            .rate_reference
            .as_ref()
            .filter(|r| &r.series == series)
        else {
            return Ok(false);
        };
        let rate = reference_rate(latest, reference);
        let newer = current
            .current_rate_date
            .is_none_or(|date| latest.date >= date);
        if !newer
            || (current.current_rate == Some(rate)
                && current.current_rate_date == Some(latest.date))
        {
            return Ok(false);
        }
        let mut updated = current.clone();
        updated.current_rate = Some(rate);
        updated.current_rate_date = Some(latest.date);
        updated.version = current.version + 1;
        updated.updated_at = now;
        let audit = AuditEvent::system(
            tenant,
            now,
            "contract.repriced",
            format!("contract:{id}"),
            Some(current.audit_snapshot()),
            Some(updated.audit_snapshot()),
        );
        let ops = vec![
            WriteOp::Put {
                item: updated.item(tenant)?,
                condition: Condition::VersionIs(current.version),
            },
            audit.write_op(),
        ];
        let changes = [LedgerChange::updated(&current, &updated)];
        match commit_with_portfolio(table, tenant, ops, &changes, Increment).await {
            Ok(()) => return Ok(true),
            Err(StoreError::TransactionCanceled { .. }) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(ContractError::Contention)
}

pub(crate) fn claim_contract_number(
    tenant: TenantId,
    contract: &Contract,
) -> Result<WriteOp, StoreError> {
    let mut attributes = crate::store::Attributes::new();
    attributes.insert(
        "contractId".into(),
        serde_json::Value::String(contract.id.to_string()),
    );
    Ok(WriteOp::Put {
        item: Item::new(
            keys::contract_number(tenant, &contract.contract_number),
            attributes,
        ),
        condition: Condition::NotExists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn wire_names_are_serdes() {
        fn check<T: Serialize + std::fmt::Debug>(
            names: &[&str],
            parse: impl Fn(&str) -> Result<T, FieldIssue>,
            as_str: impl Fn(T) -> &'static str,
        ) {
            for name in names {
                let value = parse(name).unwrap();
                assert_eq!(serde_json::to_value(&value).unwrap(), *name, "{value:?}");
                assert_eq!(as_str(value), *name);
            }
            assert!(parse("nonsense").is_err());
        }
        check(Category::NAMES, Category::parse, Category::as_str);
        check(
            PaymentFrequency::NAMES,
            PaymentFrequency::parse,
            PaymentFrequency::as_str,
        );
        check(
            PaymentTiming::NAMES,
            PaymentTiming::parse,
            PaymentTiming::as_str,
        );
        check(
            ContractStatus::NAMES,
            ContractStatus::parse,
            ContractStatus::as_str,
        );
    }

    #[test]
    fn status_follows_the_calendar() {
        let (start, end) = (d("2025-01-01"), d("2027-12-31"));
        let status = |today: &str, terminated: Option<&str>| {
            ContractStatus::on(d(today), start, end, terminated.map(d))
        };
        assert_eq!(status("2024-12-31", None), ContractStatus::Upcoming);
        assert_eq!(status("2025-01-01", None), ContractStatus::Active);
        assert_eq!(status("2027-10-01", None), ContractStatus::Active);
        assert_eq!(status("2027-10-02", None), ContractStatus::Ending);
        assert_eq!(status("2027-12-31", None), ContractStatus::Ending);
        assert_eq!(status("2028-01-01", None), ContractStatus::Extended);
        assert_eq!(
            status("2028-01-01", Some("2028-01-01")),
            ContractStatus::Terminated
        );
        assert_eq!(
            status("2026-01-01", Some("2026-06-30")),
            ContractStatus::Active
        );
    }

    fn valid_input() -> NewContract {
        serde_json::from_value(serde_json::json!({
            "contractNumber": "LC-1",
            "lessor": "Volvofinans Bank AB",
            "description": "Volvo XC60",
            "category": "vehicle",
            "registrationNumber": "abc 12d",
            "startDate": "2024-03-01",
            "endDate": "2027-02-28",
            "payment": {"amount": 689900, "currency": "SEK"},
            "paymentFrequency": "monthly",
            "paymentTiming": "advance",
            "residualValue": {"amount": 21000000, "currency": "SEK"},
            "interestRate": "4.95"
        }))
        .unwrap()
    }

    #[test]
    fn a_valid_contract_validates() {
        let terms = valid_input().validate().unwrap();
        assert_eq!(terms.registration_number.as_deref(), Some("ABC12D"));
        assert_eq!(terms.interest_rate.unwrap().to_string(), "4.95");
    }

    #[test]
    fn every_problem_is_reported_with_its_pointer() {
        let input: NewContract = serde_json::from_value(serde_json::json!({
            "contractNumber": " ",
            "category": "car",
            "startDate": "2024-03-01",
            "endDate": "2024-02-01",
            "payment": {"amount": -5, "currency": "sek"},
            "paymentFrequency": "weekly",
            "paymentTiming": "advance",
            "interestRate": "four"
        }))
        .unwrap();
        let errors = input.validate().unwrap_err();
        let found: Vec<(String, &str)> = errors
            .errors()
            .iter()
            .map(|e| (e.pointer.clone(), e.issue.code()))
            .collect();
        let expected = [
            ("/contractNumber", "blank"),
            ("/lessor", "required"),
            ("/description", "required"),
            ("/category", "invalid_choice"),
            ("/payment/currency", "unknown_currency"),
            ("/paymentFrequency", "invalid_choice"),
            ("/interestRate", "invalid_decimal"),
        ];
        for (pointer, code) in expected {
            assert!(
                found.iter().any(|(p, c)| p == pointer && *c == code),
                "{pointer} {code} missing from {found:?}"
            );
        }
    }

    #[test]
    fn cross_field_rules() {
        let mut input = valid_input();
        input.end_date = Field::Value("2024-03-01".into());
        input.residual_value = Field::Value(MoneyInput {
            amount: 1,
            currency: "EUR".into(),
        });
        let errors = input.validate().unwrap_err();
        let pointers: Vec<_> = errors.errors().iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/endDate", "/residualValue/currency"]);
    }

    #[test]
    fn negative_and_zero_amounts() {
        let mut input = valid_input();
        input.payment = Field::Value(MoneyInput {
            amount: 0,
            currency: "SEK".into(),
        });
        input.residual_value = Field::Value(MoneyInput {
            amount: -1,
            currency: "SEK".into(),
        });
        let errors = input.validate().unwrap_err();
        let found: Vec<_> = errors
            .errors()
            .iter()
            .map(|e| (e.pointer.as_str(), e.issue.code()))
            .collect();
        assert_eq!(
            found,
            [
                ("/payment/amount", "not_positive"),
                ("/residualValue/amount", "negative")
            ]
        );
    }

    #[test]
    fn end_date_ranges_for_filters() {
        let today = d("2026-11-21");
        let ending = ContractFilter {
            status: Some(ContractStatus::Ending),
            ..Default::default()
        };
        assert_eq!(ending.end_date_range(today), Some((today, d("2027-02-19"))));
        let extended_before = ContractFilter {
            status: Some(ContractStatus::Extended),
            ends_before: Some(d("2026-01-01")),
            ..Default::default()
        };
        assert_eq!(
            extended_before.end_date_range(today),
            Some((NaiveDate::MIN, d("2025-12-31")))
        );
        assert_eq!(ContractFilter::default().end_date_range(today), None);
    }

    #[test]
    fn idempotency_hash_ignores_formatting() {
        let a = IdempotencyKey::parse("k", br#"{"a":1,"b":2}"#).unwrap();
        let b = IdempotencyKey::parse("k", b"{ \"b\": 2, \"a\": 1 }").unwrap();
        let c = IdempotencyKey::parse("k", br#"{"a":1,"b":3}"#).unwrap();
        assert_eq!(a.request_hash, b.request_hash);
        assert_ne!(a.request_hash, c.request_hash);
        assert!(IdempotencyKey::parse("", b"{}").is_err());
        assert!(IdempotencyKey::parse("a b", b"{}").is_err());
    }
}
