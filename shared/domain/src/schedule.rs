//! The liability schedule of a contract: its leasing debt (the lease liability of
//! IFRS 16 / K3) period by period, the present value of the payments still to come
//! discounted at the contract's rate.
//!
//! # Conventions
//!
//! - **Period rate**: the annual rate is nominal, compounded once per payment period:
//!   `r/12`, `r/4` or `r/1`. Swedish leasing contracts quote the nominal rate and lessors'
//!   annuity calculators divide it by the number of payments a year, so this reproduces
//!   the lessor's own figures; the effective rate `(1+r/n)^n − 1` follows from it.
//! - **Periods**: period *k* runs from `start + (k−1)·n` months to `start + k·n` months
//!   (n = 1, 3, 12), always counted from the start date so a month-end anchor survives
//!   short months (Jan 31, Feb 29, Mar 31, …). A row's `end` is that boundary: the first
//!   day of the next period, exclusive.
//! - **Term**: `end_date` is the contract's last day, so the term ends at `end_date + 1`.
//!   An end date written on an anniversary of the start (`2024-03-01 – 2027-03-01`) is
//!   read as that boundary, the common way of writing the same 36 months.
//! - **Short last period**: when the term is not a whole number of periods, the last row
//!   is short and carries a full payment (Swedish terms: a started period is charged in
//!   full). Its interest is the period rate times its days over the days of the full
//!   period it starts.
//! - **Payment dates**: in advance on each row's `start` (the first at commencement); in
//!   arrears on its `end`. Discounting counts periods, not days.
//! - **Advance at commencement**: the initial liability includes the first payment, paid
//!   at once; interest accrues on the balance after each payment.
//! - **Residual value**: due at the schedule's horizon, the `end` of the last row, and
//!   part of that row's `payment` (also shown in `residual`).
//! - **Horizon**: the termination date when there is one (earlier or later than the end
//!   date: it is the best estimate of the lease term); else, when `until` is after the end
//!   date, the end of the period containing `until` (an extended contract keeps paying
//!   the same payment each period, on the same calendar, so a short last period of the
//!   planned term becomes a full one); else the planned term end. `until` never shortens a
//!   contract. For an open-ended extension, pass `until` = today + the notice period to
//!   get IFRS 16's non-cancellable term.
//! - **Rate**: an explicit rate, else the contract's `current_rate`, else its
//!   `interest_rate`. Zero gives the plain sum of payments; negative rates are allowed
//!   above −100 %.
//! - **Precision**: balances are computed backward from the horizon, each kept to
//!   [`WORKING_SCALE`] decimals, so every closing balance is the present value of what
//!   remains, the last closing is exactly zero, `opening + interest − payment = closing`
//!   holds exactly, and interest equals the balance outstanding × period rate to within
//!   10⁻¹⁶. Balances of 10¹² currency units or more are refused as [`ScheduleError::Overflow`]
//!   rather than computed inexactly. Amounts are rounded to the currency's minor unit only
//!   by [`LiabilitySchedule::rounded`].
//! - **Debt at a date** ([`LiabilitySchedule::liability_at`]): the balance at the start
//!   of the day, after the payments due that day, plus the period's interest accrued
//!   linearly over its actual days. Zero before commencement (IFRS 16 recognises the
//!   liability at the commencement date) and from the horizon on.

use crate::contracts::{Contract, PaymentFrequency, PaymentTiming};
use crate::money::Currency;
use chrono::{Datelike, Days, Months, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

/// Decimal places kept on balances and interest while computing.
pub const WORKING_SCALE: u32 = 16;

/// The most periods a schedule runs to: 200 years of monthly payments.
pub const MAX_PERIODS: u32 = 2400;

/// Balances stay below 10^(28 − WORKING_SCALE) so that sums at the working scale fit
/// `Decimal`'s 28 digits and stay exact.
const EXACT_LIMIT: i64 = 1_000_000_000_000;

/// One period of a liability schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRow {
    /// 1-based.
    pub period: u32,
    /// The period's first day.
    pub start: NaiveDate,
    /// The boundary closing the period: the next period's `start`.
    pub end: NaiveDate,
    /// When the periodic payment falls due: `start` in advance, `end` in arrears.
    pub payment_date: NaiveDate,
    /// The liability at `start`, before a payment in advance.
    pub opening: Decimal,
    pub interest: Decimal,
    /// Everything paid in the period, the residual value included.
    pub payment: Decimal,
    /// The part of `payment` that is the residual value, due at `end`.
    pub residual: Decimal,
    /// The liability at `end`, after the period's payments.
    pub closing: Decimal,
    /// The period starts on or after the planned term end: the contract has been extended.
    pub extension: bool,
}

/// The lease liability of a contract, period by period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiabilitySchedule {
    #[schema(value_type = String, example = "SEK")]
    pub currency: Currency,
    /// Nominal annual rate in percent.
    pub annual_rate: Decimal,
    /// Rate per full period as a fraction: `annual_rate / 100 / periods a year`.
    pub period_rate: Decimal,
    pub payment_frequency: PaymentFrequency,
    pub payment_timing: PaymentTiming,
    /// Where the planned term ends: the day after the end date (or the end date itself
    /// when written on an anniversary of the start).
    pub term_end: NaiveDate,
    /// Where the schedule ends: the last row's `end`.
    pub horizon: NaiveDate,
    /// The liability at commencement, a payment in advance included.
    pub initial_liability: Decimal,
    pub total_payments: Decimal,
    pub total_interest: Decimal,
    pub rows: Vec<ScheduleRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("no interest rate: the contract has none and none was given")]
    NoRate,
    #[error("an annual rate of {0} % is not above -100 %")]
    RateTooLow(Decimal),
    #[error("the end date {end} is before the start date {start}")]
    EndBeforeStart { start: NaiveDate, end: NaiveDate },
    #[error("the residual value is in {residual}, the payments in {payment}")]
    CurrencyMismatch {
        payment: Currency,
        residual: Currency,
    },
    #[error("the schedule would run to more than {MAX_PERIODS} periods")]
    TooManyPeriods,
    #[error("the amounts are too large to compute exactly")]
    Overflow,
}

impl LiabilitySchedule {
    /// The leasing debt at the start of `date`, after the payments due that day: the
    /// current period's opening balance, less a payment in advance already made, plus
    /// the period's interest times the share of its days elapsed before `date`. Zero
    /// before the first period and from the horizon on.
    pub fn liability_at(&self, date: NaiveDate) -> Decimal {
        let started = self.rows.partition_point(|row| row.start <= date);
        let Some(row) = started
            .checked_sub(1)
            .and_then(|index| self.rows.get(index))
        else {
            return Decimal::ZERO;
        };
        let length = (row.end - row.start).num_days();
        if date >= row.end || length <= 0 {
            return row.closing;
        }
        let paid = if row.payment_date <= date {
            row.payment - row.residual
        } else {
            Decimal::ZERO
        };
        let elapsed = (date - row.start).num_days();
        row.opening - paid + row.interest * Decimal::from(elapsed) / Decimal::from(length)
    }

    /// What the periods after the planned term cost, the residual value aside.
    pub fn extension_payments(&self) -> Decimal {
        self.rows
            .iter()
            .filter(|row| row.extension)
            .map(|row| row.payment - row.residual)
            .sum()
    }

    /// The schedule for display: balances and payments rounded to the currency's minor
    /// unit (half away from zero), each row's interest derived from them so that every
    /// row still rolls forward to the öre.
    pub fn rounded(&self) -> LiabilitySchedule {
        let digits = self.currency.minor_unit_digits();
        let round = |value: Decimal| {
            let mut rounded =
                value.round_dp_with_strategy(digits, RoundingStrategy::MidpointAwayFromZero);
            // Always as many decimals as the minor unit has: "0.00", not "0".
            rounded.rescale(digits);
            rounded
        };
        let rows: Vec<ScheduleRow> = self
            .rows
            .iter()
            .map(|row| {
                let (opening, payment, closing) =
                    (round(row.opening), round(row.payment), round(row.closing));
                ScheduleRow {
                    opening,
                    interest: closing + payment - opening,
                    payment,
                    residual: round(row.residual),
                    closing,
                    ..*row
                }
            })
            .collect();
        LiabilitySchedule {
            initial_liability: round(self.initial_liability),
            total_payments: rows.iter().map(|row| row.payment).sum(),
            total_interest: rows.iter().map(|row| row.interest).sum(),
            rows,
            ..self.clone()
        }
    }
}

/// The liability schedule of `contract` at `rate` (annual percent; `None`: the
/// contract's current rate, else its fixed rate), running to the horizon described in
/// the module's conventions; `until` extends a contract that is not terminated.
pub fn build(
    contract: &Contract,
    rate: Option<Decimal>,
    until: Option<NaiveDate>,
) -> Result<LiabilitySchedule, ScheduleError> {
    let annual_rate = rate
        .or(contract.current_rate.map(|rate| rate.percent()))
        .or(contract.interest_rate.map(|rate| rate.percent()))
        .ok_or(ScheduleError::NoRate)?;
    if annual_rate <= -Decimal::ONE_HUNDRED {
        return Err(ScheduleError::RateTooLow(annual_rate));
    }
    let (start, end) = (contract.start_date, contract.end_date);
    if end < start {
        return Err(ScheduleError::EndBeforeStart { start, end });
    }
    let currency = contract.payment.currency;
    let residual = match contract.residual_value {
        Some(value) if value.currency != currency => {
            return Err(ScheduleError::CurrencyMismatch {
                payment: currency,
                residual: value.currency,
            });
        }
        Some(value) => minor_units(value.amount, currency),
        None => Decimal::ZERO,
    };
    let payment = minor_units(contract.payment.amount, currency);
    let frequency = contract.payment_frequency;
    let months_per_period = months_per_period(frequency);
    let period_rate = (annual_rate / Decimal::ONE_HUNDRED)
        .checked_div(Decimal::from(12 / months_per_period))
        .ok_or(ScheduleError::Overflow)?;

    let term_end = term_boundary(start, end)?;
    let horizon = match (contract.termination_date, until) {
        (Some(terminated), _) => terminated,
        (None, Some(until)) if until > end => {
            let mut k = 1;
            loop {
                let boundary = anniversary(start, k, months_per_period)?;
                if boundary > until {
                    break boundary;
                }
                k += 1;
            }
        }
        _ => term_end,
    };

    let periods = periods(start, horizon, months_per_period)?;
    let last = periods.len();
    let mut rows = Vec::with_capacity(last);
    let mut closing = Decimal::ZERO;
    for (index, period) in periods.iter().enumerate().rev() {
        let residual_here = if index + 1 == last {
            residual
        } else {
            Decimal::ZERO
        };
        let rate = if period.end == period.full_end {
            period_rate
        } else {
            // A short last period: its share of the full period's interest.
            let days = Decimal::from((period.end - period.start).num_days());
            let full_days = Decimal::from((period.full_end - period.start).num_days());
            period_rate
                .checked_mul(days)
                .and_then(|rate| rate.checked_div(full_days))
                .ok_or(ScheduleError::Overflow)?
        };
        let growth = Decimal::ONE
            .checked_add(rate)
            .ok_or(ScheduleError::Overflow)?;
        let (opening, interest, payment_date) = match contract.payment_timing {
            PaymentTiming::Arrears => {
                let due = exact(sum(closing, sum(payment, residual_here)?)?)?;
                let opening = exact(due.checked_div(growth).ok_or(ScheduleError::Overflow)?)?;
                (opening, exact(due - opening)?, period.end)
            }
            PaymentTiming::Advance => {
                let due = exact(sum(closing, residual_here)?)?;
                let after_payment = exact(due.checked_div(growth).ok_or(ScheduleError::Overflow)?)?;
                let opening = exact(sum(after_payment, payment)?)?;
                (opening, exact(due - after_payment)?, period.start)
            }
        };
        rows.push(ScheduleRow {
            period: u32::try_from(index + 1).map_err(|_| ScheduleError::TooManyPeriods)?,
            start: period.start,
            end: period.end,
            payment_date,
            opening,
            interest,
            payment: payment + residual_here,
            residual: residual_here,
            closing,
            extension: period.start >= term_end,
        });
        closing = opening;
    }
    rows.reverse();

    let total_payments = exact(rows.iter().map(|row| row.payment).sum())?;
    let total_interest = exact(rows.iter().map(|row| row.interest).sum())?;
    Ok(LiabilitySchedule {
        currency,
        annual_rate,
        period_rate,
        payment_frequency: frequency,
        payment_timing: contract.payment_timing,
        term_end,
        horizon: rows.last().map_or(start, |row| row.end),
        initial_liability: rows.first().map_or(Decimal::ZERO, |row| row.opening),
        total_payments,
        total_interest,
        rows,
    })
}

/// The leasing debt on each of `dates`, each exactly as
/// `build(contract, None, Some(date)).liability_at(date)` gives it: the planned term's
/// schedule for days up to the end date (or with a termination date), and for a day of
/// an open-ended extension only the period that contains it, as the extension is
/// cancellable period by period. Builds at most two schedules, however many dates.
pub fn debts_on(contract: &Contract, dates: &[NaiveDate]) -> Result<Vec<Decimal>, ScheduleError> {
    let planned = build(contract, None, None)?;
    let months_per_period = months_per_period(contract.payment_frequency);
    // Every extension period is a full one at the same payment and rate, so one
    // schedule ending in an extension period gives the shape of them all.
    let mut extension_row: Option<ScheduleRow> = None;
    let mut debts = Vec::with_capacity(dates.len());
    for &date in dates {
        if contract.termination_date.is_some() || date <= contract.end_date {
            debts.push(planned.liability_at(date));
            continue;
        }
        let row = match extension_row {
            Some(row) => row,
            None => {
                let schedule = build(contract, None, Some(date))?;
                let row = *schedule.rows.last().ok_or(ScheduleError::Overflow)?;
                extension_row = Some(row);
                row
            }
        };
        let (start, end) = period_containing(contract.start_date, date, months_per_period)?;
        let length = (end - start).num_days();
        let elapsed = (date - start).num_days();
        let paid = if contract.payment_timing == PaymentTiming::Advance {
            row.payment - row.residual
        } else {
            Decimal::ZERO
        };
        debts.push(
            row.opening - paid + row.interest * Decimal::from(elapsed) / Decimal::from(length),
        );
    }
    Ok(debts)
}

/// An amount rounded to the currency's minor unit (half away from zero, as
/// [`LiabilitySchedule::rounded`] shows it), in minor units.
pub fn to_minor_units(value: Decimal, currency: Currency) -> Option<i64> {
    let digits = currency.minor_unit_digits();
    let scaled = value
        .checked_mul(Decimal::from(10_i64.pow(digits)))?
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    i64::try_from(scaled).ok()
}

/// The payment period `[start, end)` of the calendar anchored at `anchor` that contains
/// `date` (on or after `anchor`).
fn period_containing(
    anchor: NaiveDate,
    date: NaiveDate,
    months_per_period: u32,
) -> Result<(NaiveDate, NaiveDate), ScheduleError> {
    let months = (date.year() - anchor.year()) * 12 + date.month() as i32 - anchor.month() as i32;
    // An estimate at most one period late; step back until the period starts in time.
    let mut k =
        u32::try_from(months.max(0)).map_err(|_| ScheduleError::Overflow)? / months_per_period + 1;
    loop {
        let start = if k == 1 {
            anchor
        } else {
            anniversary(anchor, k - 1, months_per_period)?
        };
        if start <= date {
            let end = anniversary(anchor, k, months_per_period)?;
            if date < end {
                return Ok((start, end));
            }
            k += 1;
        } else if k > 1 {
            k -= 1;
        } else {
            return Err(ScheduleError::EndBeforeStart {
                start: anchor,
                end: date,
            });
        }
    }
}

fn months_per_period(frequency: PaymentFrequency) -> u32 {
    match frequency {
        PaymentFrequency::Monthly => 1,
        PaymentFrequency::Quarterly => 3,
        PaymentFrequency::Yearly => 12,
    }
}

/// A period on the calendar: `end` is `full_end` unless the horizon cuts it short.
struct Period {
    start: NaiveDate,
    end: NaiveDate,
    full_end: NaiveDate,
}

fn periods(
    start: NaiveDate,
    horizon: NaiveDate,
    months_per_period: u32,
) -> Result<Vec<Period>, ScheduleError> {
    let mut periods = Vec::new();
    let mut period_start = start;
    let mut k = 1;
    while period_start < horizon {
        if k > MAX_PERIODS {
            return Err(ScheduleError::TooManyPeriods);
        }
        let full_end = anniversary(start, k, months_per_period)?;
        periods.push(Period {
            start: period_start,
            end: full_end.min(horizon),
            full_end,
        });
        period_start = full_end;
        k += 1;
    }
    Ok(periods)
}

/// `start` plus `k` periods, counted from `start` so a month-end anchor is kept.
fn anniversary(
    start: NaiveDate,
    k: u32,
    months_per_period: u32,
) -> Result<NaiveDate, ScheduleError> {
    if k > MAX_PERIODS {
        return Err(ScheduleError::TooManyPeriods);
    }
    start
        .checked_add_months(Months::new(k * months_per_period))
        .ok_or(ScheduleError::Overflow)
}

/// Where a term whose last day is `last_day` ends: the day after, unless `last_day` is
/// itself a monthly anniversary of `start`, the other common way of writing the term.
fn term_boundary(start: NaiveDate, last_day: NaiveDate) -> Result<NaiveDate, ScheduleError> {
    let months =
        (last_day.year() - start.year()) * 12 + last_day.month() as i32 - start.month() as i32;
    let on_anniversary = u32::try_from(months)
        .ok()
        .filter(|&months| months > 0)
        .and_then(|months| start.checked_add_months(Months::new(months)))
        == Some(last_day);
    if on_anniversary {
        Ok(last_day)
    } else {
        last_day
            .checked_add_days(Days::new(1))
            .ok_or(ScheduleError::Overflow)
    }
}

fn minor_units(amount: i64, currency: Currency) -> Decimal {
    Decimal::new(amount, currency.minor_unit_digits())
}

fn sum(a: Decimal, b: Decimal) -> Result<Decimal, ScheduleError> {
    a.checked_add(b).ok_or(ScheduleError::Overflow)
}

/// `value` at the working scale, refused when too large for exact sums at that scale.
fn exact(value: Decimal) -> Result<Decimal, ScheduleError> {
    let value = value.round_dp_with_strategy(WORKING_SCALE, RoundingStrategy::MidpointNearestEven);
    if value.abs() >= Decimal::from(EXACT_LIMIT) {
        return Err(ScheduleError::Overflow);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::ContractStatus;
    use crate::ids::{ContractId, UserId};
    use crate::money::{AnnualRate, Money};
    use std::str::FromStr;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn sek() -> Currency {
        Currency::parse("SEK").unwrap()
    }

    /// A contract paying `payment` kronor per period at `rate` percent.
    fn contract(
        start: &str,
        end: &str,
        payment: i64,
        frequency: PaymentFrequency,
        timing: PaymentTiming,
        residual: Option<i64>,
        rate: &str,
    ) -> Contract {
        let user = UserId::generate();
        Contract {
            id: ContractId::generate(),
            contract_number: "LC-1".into(),
            lessor: "Volvofinans Bank AB".into(),
            description: "Volvo XC60".into(),
            category: crate::contracts::Category::Vehicle,
            registration_number: None,
            cost_center: None,
            start_date: d(start),
            end_date: d(end),
            termination_date: None,
            payment: Money::new(payment * 100, sek()).unwrap(),
            payment_frequency: frequency,
            payment_timing: timing,
            residual_value: residual.map(|kronor| Money::new(kronor * 100, sek()).unwrap()),
            interest_rate: Some(AnnualRate::parse(rate).unwrap()),
            rate_reference: None,
            current_rate: Some(AnnualRate::parse(rate).unwrap()),
            current_rate_date: None,
            notes: None,
            status: ContractStatus::Active,
            version: 1,
            created_at: Default::default(),
            updated_at: Default::default(),
            created_by: user,
            updated_by: user,
        }
    }

    fn öre(value: Decimal) -> Decimal {
        value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
    }

    /// Checks every row of `schedule` against the identities a liability schedule owes.
    fn assert_rolls_forward(schedule: &LiabilitySchedule) {
        let rows = &schedule.rows;
        let first = rows.first().expect("a schedule with rows");
        assert_eq!(schedule.initial_liability, first.opening);
        for (index, row) in rows.iter().enumerate() {
            assert_eq!(row.period as usize, index + 1);
            assert!(row.start < row.end, "{row:?}");
            assert_eq!(
                row.opening + row.interest - row.payment,
                row.closing,
                "{row:?}"
            );
            // Interest is earned on the balance outstanding over the period.
            let outstanding = if row.payment_date == row.start {
                row.opening - (row.payment - row.residual)
            } else {
                row.opening
            };
            let months_per_period = match schedule.payment_frequency {
                PaymentFrequency::Monthly => 1,
                PaymentFrequency::Quarterly => 3,
                PaymentFrequency::Yearly => 12,
            };
            let full_end = first
                .start
                .checked_add_months(Months::new(row.period * months_per_period))
                .unwrap();
            if row.end == full_end {
                let expected = outstanding * schedule.period_rate;
                assert!(
                    (row.interest - expected).abs() < dec("1e-14"),
                    "{row:?}: interest {} expected {expected}",
                    row.interest
                );
            }
        }
        for pair in rows.windows(2) {
            assert_eq!(pair[0].closing, pair[1].opening, "{:?}", pair);
            assert_eq!(pair[0].end, pair[1].start);
            assert_eq!(pair[0].residual, Decimal::ZERO);
        }
        let last = rows.last().unwrap();
        assert_eq!(last.closing, Decimal::ZERO);
        assert_eq!(schedule.horizon, last.end);
        assert_eq!(
            schedule.total_interest,
            schedule.total_payments - schedule.initial_liability
        );
        assert_eq!(
            schedule.total_payments,
            rows.iter().map(|row| row.payment).sum::<Decimal>()
        );
    }

    fn built(contract: &Contract, until: Option<&str>) -> LiabilitySchedule {
        let schedule = build(contract, None, until.map(d)).unwrap();
        assert_rolls_forward(&schedule);
        schedule
    }

    use PaymentFrequency::{Monthly, Quarterly, Yearly};
    use PaymentTiming::{Advance, Arrears};

    // Expected values below were computed with Python's decimal module at 50 digits
    // (python3 -c 'from decimal import *; getcontext().prec = 50; ...'), summing
    // P·v^k over the payment times, v = 1/(1 + period rate), and rounded half up to öre.

    #[test]
    fn schedule_annuities_match_hand_computed_present_values() {
        let cases = [
            // 36 × 1 000 monthly at 6 %: 1000·(1 − 1.005^−36)/0.005 = 32 871.02;
            // in advance ×1.005 = 33 035.37.
            (Monthly, 1000, Arrears, "32871.02", 36),
            (Monthly, 1000, Advance, "33035.37", 36),
            // 12 × 3 000 quarterly at 6 %: 3000·(1 − 1.015^−12)/0.015 = 32 722.52; ×1.015.
            (Quarterly, 3000, Arrears, "32722.52", 12),
            (Quarterly, 3000, Advance, "33213.35", 12),
            // 3 × 12 000 yearly at 6 %: 12000·(1 − 1.06^−3)/0.06 = 32 076.14; ×1.06.
            (Yearly, 12000, Arrears, "32076.14", 3),
            (Yearly, 12000, Advance, "34000.71", 3),
        ];
        for (frequency, payment, timing, expected, periods) in cases {
            let contract = contract(
                "2024-01-01",
                "2026-12-31",
                payment,
                frequency,
                timing,
                None,
                "6",
            );
            let schedule = built(&contract, None);
            assert_eq!(schedule.rows.len(), periods, "{frequency:?} {timing:?}");
            assert_eq!(
                öre(schedule.initial_liability),
                dec(expected),
                "{frequency:?} {timing:?}"
            );
            assert_eq!(schedule.horizon, d("2027-01-01"));
        }
    }

    #[test]
    fn schedule_of_a_real_contract_in_all_six_combinations() {
        // 36 months, 6 899 SEK a month (20 697 a quarter, 82 788 a year), 4.95 % nominal,
        // residual 210 000 due at the end: PV = P·a(n, i)[·(1+i) in advance] + 210000·(1+i)^−n.
        // The residual alone: monthly 181 075.30, quarterly 181 185.05, yearly 181 665.29.
        let cases = [
            (Monthly, 6899, Advance, "412388.03", 36, "0.004125"),
            (Monthly, 6899, Arrears, "411437.78", 36, "0.004125"),
            (Quarterly, 20697, Advance, "413513.41", 12, "0.012375"),
            (Quarterly, 20697, Arrears, "410673.49", 12, "0.012375"),
            (Yearly, 82788, Advance, "418499.29", 3, "0.0495"),
            (Yearly, 82788, Arrears, "407328.94", 3, "0.0495"),
        ];
        for (frequency, payment, timing, expected, periods, period_rate) in cases {
            let contract = contract(
                "2024-03-01",
                "2027-02-28",
                payment,
                frequency,
                timing,
                Some(210_000),
                "4.95",
            );
            let schedule = built(&contract, None);
            let label = format!("{frequency:?} {timing:?}");
            assert_eq!(schedule.rows.len(), periods, "{label}");
            assert_eq!(schedule.period_rate, dec(period_rate), "{label}");
            assert_eq!(öre(schedule.initial_liability), dec(expected), "{label}");
            let last = schedule.rows.last().unwrap();
            assert_eq!(last.end, d("2027-03-01"), "{label}");
            assert_eq!(last.residual, dec("210000.00"), "{label}");
            assert_eq!(last.payment, Decimal::from(payment + 210_000), "{label}");
            let first = schedule.rows[0];
            let expected_date = match timing {
                Advance => d("2024-03-01"),
                Arrears => first.end,
            };
            assert_eq!(first.payment_date, expected_date, "{label}");
            assert_eq!(
                schedule.total_payments,
                Decimal::from(payment * periods as i64 + 210_000),
                "{label}"
            );
        }
    }

    #[test]
    fn schedule_at_zero_rate_is_the_plain_sum() {
        for timing in [Advance, Arrears] {
            let contract = contract(
                "2024-03-01",
                "2027-02-28",
                6899,
                Monthly,
                timing,
                Some(210_000),
                "0",
            );
            let schedule = built(&contract, None);
            // 36 · 6 899 + 210 000, exactly.
            assert_eq!(schedule.initial_liability, Decimal::from(458_364));
            assert_eq!(schedule.total_interest, Decimal::ZERO);
        }
    }

    #[test]
    fn schedule_at_a_negative_rate_is_worth_more_than_the_sum() {
        // 3 × 12 000 yearly in arrears at −0.5 %: Σ 12000·0.995^−k, k = 1..3 = 36 363.02.
        let contract = contract(
            "2024-01-01",
            "2026-12-31",
            12000,
            Yearly,
            Arrears,
            None,
            "-0.5",
        );
        let schedule = built(&contract, None);
        assert_eq!(öre(schedule.initial_liability), dec("36363.02"));
        assert!(schedule.total_interest < Decimal::ZERO);
    }

    #[test]
    fn schedule_keeps_a_month_end_anchor() {
        let anchored = |end: &str| {
            let contract = contract("2024-01-31", end, 1000, Monthly, Arrears, None, "4.95");
            built(&contract, None)
        };
        let schedule = anchored("2025-01-30");
        let starts: Vec<String> = schedule
            .rows
            .iter()
            .map(|row| row.start.to_string())
            .collect();
        assert_eq!(
            starts,
            [
                "2024-01-31",
                "2024-02-29",
                "2024-03-31",
                "2024-04-30",
                "2024-05-31",
                "2024-06-30",
                "2024-07-31",
                "2024-08-31",
                "2024-09-30",
                "2024-10-31",
                "2024-11-30",
                "2024-12-31"
            ]
        );
        assert_eq!(schedule.horizon, d("2025-01-31"));
        // The same term written with the end date on the anniversary.
        assert_eq!(anchored("2025-01-31"), schedule);
        // And a 36-month term written both ways.
        let written = |end: &str| {
            let contract = contract("2024-03-01", end, 1000, Monthly, Advance, None, "4.95");
            built(&contract, None)
        };
        assert_eq!(written("2027-03-01"), written("2027-02-28"));
    }

    #[test]
    fn schedule_charges_a_short_last_period_in_full() {
        // 40 months quarterly from 2024-01-01: 13 quarters, then 2027-04-01 – 2027-05-01,
        // 30 of the 91 days of the quarter it starts, at 1.5 % × 30/91. Residual 10 000 at
        // 2027-05-01. Arrears: Σ_{k=1..13} 3000·v^k + 13000·v^13/(1 + 0.015·30/91)
        // = 45 854.24; advance: Σ_{k=0..13} 3000·v^k + 10000·v^13/(1 + 0.015·30/91)
        // = 46 394.32, v = 1/1.015.
        for (timing, expected) in [(Arrears, "45854.24"), (Advance, "46394.32")] {
            let contract = contract(
                "2024-01-01",
                "2027-04-30",
                3000,
                Quarterly,
                timing,
                Some(10_000),
                "6",
            );
            let schedule = built(&contract, None);
            assert_eq!(schedule.rows.len(), 14);
            assert_eq!(öre(schedule.initial_liability), dec(expected), "{timing:?}");
            let stub = schedule.rows[13];
            assert_eq!((stub.start, stub.end), (d("2027-04-01"), d("2027-05-01")));
            assert_eq!(stub.payment, Decimal::from(13_000));
            let outstanding = if timing == Advance {
                stub.opening - Decimal::from(3000)
            } else {
                stub.opening
            };
            let stub_rate = dec("0.015") * Decimal::from(30) / Decimal::from(91);
            assert!((stub.interest - outstanding * stub_rate).abs() < dec("1e-14"));
        }
    }

    #[test]
    fn schedule_continues_an_extended_contract() {
        let base = contract(
            "2024-01-01",
            "2024-12-31",
            1000,
            Monthly,
            Advance,
            Some(5000),
            "6",
        );
        let planned = built(&base, None);
        assert_eq!(planned.rows.len(), 12);
        assert_eq!(planned.liability_at(d("2025-01-15")), Decimal::ZERO);
        assert_eq!(planned.extension_payments(), Decimal::ZERO);
        // `until` before the end never shortens the term.
        assert_eq!(built(&base, Some("2024-06-30")), planned);

        // Extended to the end of the period containing 2025-03-15: 15 payments in
        // advance and the residual at 2025-04-01.
        // Σ_{k=0..14} 1000·1.005^−k + 5000·1.005^−15 = 19 128.29.
        let extended = built(&base, Some("2025-03-15"));
        assert_eq!(extended.rows.len(), 15);
        assert_eq!(extended.term_end, d("2025-01-01"));
        assert_eq!(extended.horizon, d("2025-04-01"));
        assert_eq!(öre(extended.initial_liability), dec("19128.29"));
        let flags: Vec<bool> = extended.rows.iter().map(|row| row.extension).collect();
        assert_eq!(flags, [[false; 12].as_slice(), &[true; 3]].concat());
        assert_eq!(extended.extension_payments(), Decimal::from(3000));
        assert_eq!(extended.rows[14].residual, Decimal::from(5000));
        // In March 2025 only the residual is left, 14 of 31 days into the period:
        // 5000·1.005^−1·(1 + 0.005·14/31) = 4 986.36.
        assert_eq!(öre(extended.liability_at(d("2025-03-15"))), dec("4986.36"));
        assert_eq!(extended.liability_at(d("2025-04-01")), Decimal::ZERO);

        // A known termination date is the horizon, whatever `until` says.
        let mut terminated_later = base.clone();
        terminated_later.termination_date = Some(d("2025-06-01"));
        let later = built(&terminated_later, Some("2025-03-15"));
        assert_eq!(later.rows.len(), 17);
        assert_eq!(later.horizon, d("2025-06-01"));
        assert_eq!(later.extension_payments(), Decimal::from(5000));

        // Terminated early, mid-period: a short last period, the residual at termination.
        let mut terminated_early = base.clone();
        terminated_early.termination_date = Some(d("2024-07-15"));
        let early = built(&terminated_early, Some("2025-03-15"));
        assert_eq!(early.rows.len(), 7);
        assert_eq!(early.rows[6].end, d("2024-07-15"));
        assert_eq!(early.rows[6].residual, Decimal::from(5000));

        // Terminated before commencement: nothing is owed.
        let mut never = base;
        never.termination_date = Some(d("2024-01-01"));
        let none = build(&never, None, None).unwrap();
        assert!(none.rows.is_empty());
        assert_eq!(none.initial_liability, Decimal::ZERO);
        assert_eq!(none.liability_at(d("2024-06-01")), Decimal::ZERO);
    }

    #[test]
    fn liability_at_follows_payments_and_accrues_interest() {
        // 36 × 1 000 monthly at 6 % from 2024-01-01.
        let arrears = built(
            &contract(
                "2024-01-01",
                "2026-12-31",
                1000,
                Monthly,
                Arrears,
                None,
                "6",
            ),
            None,
        );
        assert_eq!(arrears.liability_at(d("2023-12-31")), Decimal::ZERO);
        assert_eq!(
            arrears.liability_at(d("2024-01-01")),
            arrears.initial_liability
        );
        // 15 of January's 31 days accrued: 32 871.0248…·(1 + 0.005·15/31) = 32 950.54.
        assert_eq!(öre(arrears.liability_at(d("2024-01-16"))), dec("32950.54"));
        // On a payment date: after the payment, the row's closing balance.
        assert_eq!(
            arrears.liability_at(d("2024-02-01")),
            arrears.rows[0].closing
        );
        assert!(arrears.liability_at(d("2026-12-31")) > Decimal::from(990));
        assert_eq!(arrears.liability_at(d("2027-01-01")), Decimal::ZERO);
        assert_eq!(arrears.liability_at(d("2030-01-01")), Decimal::ZERO);

        let advance = built(
            &contract(
                "2024-01-01",
                "2026-12-31",
                1000,
                Monthly,
                Advance,
                None,
                "6",
            ),
            None,
        );
        assert_eq!(advance.liability_at(d("2023-12-31")), Decimal::ZERO);
        assert_eq!(
            advance.liability_at(d("2024-01-01")),
            advance.initial_liability - Decimal::from(1000)
        );
        // After February's payment the 34 payments left: Σ_{k=1..34} 1000·1.005^−k
        // = 31 195.55; 9 of February's 29 days later ×(1 + 0.005·9/29) = 31 243.96.
        assert_eq!(öre(advance.liability_at(d("2024-02-01"))), dec("31195.55"));
        assert_eq!(öre(advance.liability_at(d("2024-02-10"))), dec("31243.96"));
        // The last payment was made on 2026-12-01; its month's interest is nil.
        assert_eq!(advance.liability_at(d("2026-12-15")), Decimal::ZERO);
        assert_eq!(advance.liability_at(d("2027-01-01")), Decimal::ZERO);
    }

    #[test]
    fn schedule_rate_comes_from_the_argument_then_the_contract() {
        let mut contract = contract(
            "2024-01-01",
            "2026-12-31",
            1000,
            Monthly,
            Arrears,
            None,
            "6",
        );
        contract.interest_rate = Some(AnnualRate::parse("1").unwrap());
        assert_eq!(build(&contract, None, None).unwrap().annual_rate, dec("6"));
        assert_eq!(
            build(&contract, Some(dec("2.5")), None)
                .unwrap()
                .annual_rate,
            dec("2.5")
        );
        contract.current_rate = None;
        assert_eq!(build(&contract, None, None).unwrap().annual_rate, dec("1"));
        contract.interest_rate = None;
        assert_eq!(build(&contract, None, None), Err(ScheduleError::NoRate));
    }

    #[test]
    fn schedule_refuses_what_it_cannot_compute() {
        let valid = contract(
            "2024-01-01",
            "2026-12-31",
            1000,
            Monthly,
            Arrears,
            None,
            "6",
        );
        assert_eq!(
            build(&valid, Some(dec("-100")), None),
            Err(ScheduleError::RateTooLow(dec("-100")))
        );
        assert!(build(&valid, Some(dec("-99.99")), None).is_ok());
        let mut backwards = valid.clone();
        backwards.end_date = d("2023-12-31");
        assert_eq!(
            build(&backwards, None, None),
            Err(ScheduleError::EndBeforeStart {
                start: d("2024-01-01"),
                end: d("2023-12-31")
            })
        );
        let mut foreign = valid.clone();
        foreign.residual_value = Some(Money::new(1, Currency::parse("EUR").unwrap()).unwrap());
        assert!(matches!(
            build(&foreign, None, None),
            Err(ScheduleError::CurrencyMismatch { .. })
        ));
        let mut huge = valid.clone();
        huge.payment.amount = i64::MAX;
        assert_eq!(build(&huge, None, None), Err(ScheduleError::Overflow));
        assert_eq!(
            build(&valid, None, Some(d("2400-01-01"))),
            Err(ScheduleError::TooManyPeriods)
        );
    }

    #[test]
    fn schedule_rolls_forward_for_every_term_rate_and_frequency() {
        let mut checked = 0;
        for frequency in [Monthly, Quarterly, Yearly] {
            for timing in [Advance, Arrears] {
                for rate in ["-0.5", "0", "0.01", "4.95", "25"] {
                    for months in 1..=60u32 {
                        for (start, residual) in [("2024-01-31", None), ("2024-03-15", Some(9999))]
                        {
                            let start = d(start);
                            let end = start
                                .checked_add_months(Months::new(months))
                                .unwrap()
                                .pred_opt()
                                .unwrap();
                            let mut contract = contract(
                                "2024-01-01",
                                "2024-01-01",
                                6899,
                                frequency,
                                timing,
                                residual,
                                rate,
                            );
                            contract.start_date = start;
                            contract.end_date = end;
                            let schedule = build(&contract, None, None).unwrap();
                            assert_rolls_forward(&schedule);
                            let per_period = match frequency {
                                Monthly => 1,
                                Quarterly => 3,
                                Yearly => 12,
                            };
                            assert_eq!(
                                schedule.rows.len() as u32,
                                months.div_ceil(per_period),
                                "{frequency:?} {months}"
                            );
                            if rate == "0" {
                                assert_eq!(schedule.initial_liability, schedule.total_payments);
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 3 * 2 * 5 * 60 * 2);
    }

    #[test]
    fn rounded_schedule_foots_to_the_öre_and_serializes_as_strings() {
        let contract = contract(
            "2024-03-01",
            "2027-02-28",
            6899,
            Monthly,
            Advance,
            Some(210_000),
            "4.95",
        );
        let exact = built(&contract, None);
        let shown = exact.rounded();
        assert_eq!(shown.initial_liability, dec("412388.03"));
        for (row, exact_row) in shown.rows.iter().zip(&exact.rows) {
            assert_eq!(row.opening + row.interest - row.payment, row.closing);
            assert_eq!(row.opening.scale(), 2);
            assert!((row.interest - exact_row.interest).abs() <= dec("0.01"));
        }
        assert_eq!(
            shown.total_interest,
            shown.total_payments - shown.initial_liability
        );
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(json["currency"], "SEK");
        assert_eq!(json["initialLiability"], "412388.03");
        assert_eq!(json["annualRate"], "4.95");
        assert_eq!(json["paymentTiming"], "advance");
        assert_eq!(json["rows"][0]["paymentDate"], "2024-03-01");
        assert_eq!(json["rows"][0]["payment"], "6899.00");
        assert_eq!(json["rows"][35]["closing"], "0.00");
        assert_eq!(json["rows"][35]["residual"], "210000.00");
    }

    #[test]
    fn debts_on_many_dates_equal_one_schedule_per_date() {
        use PaymentFrequency::*;
        use PaymentTiming::*;
        let mut compared = 0;
        for frequency in [Monthly, Quarterly, Yearly] {
            for timing in [Advance, Arrears] {
                for (start, end, terminated) in [
                    ("2023-01-31", "2025-01-30", None),
                    ("2024-03-15", "2025-09-14", None),
                    ("2024-03-15", "2025-09-14", Some("2026-02-01")),
                    ("2022-06-01", "2024-06-01", Some("2023-12-31")),
                ] {
                    let mut contract =
                        contract(start, end, 6899, frequency, timing, Some(25_000), "4.95");
                    contract.termination_date = terminated.map(d);
                    // Every day from before the start to long into the extension.
                    let dates: Vec<NaiveDate> = d("2021-12-25")
                        .iter_days()
                        .step_by(3)
                        .take_while(|day| *day < d("2027-03-01"))
                        .collect();
                    let debts = debts_on(&contract, &dates).unwrap();
                    for (date, debt) in dates.iter().zip(debts) {
                        let one = build(&contract, None, Some(*date)).unwrap();
                        assert_eq!(debt, one.liability_at(*date), "{date} {contract:?}");
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, 3 * 2 * 4 * 631);
    }

    #[test]
    fn minor_units_round_half_away_from_zero() {
        assert_eq!(to_minor_units(dec("12.345"), sek()), Some(1235));
        assert_eq!(to_minor_units(dec("-12.345"), sek()), Some(-1235));
        assert_eq!(to_minor_units(dec("12.3449999"), sek()), Some(1234));
        let yen = Currency::parse("JPY").unwrap();
        assert_eq!(to_minor_units(dec("1234.5"), yen), Some(1235));
    }
}
