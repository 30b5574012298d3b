//! The portfolio dashboard end to end: its figures against a calculation from scratch
//! over the contracts the API serves, kept right through changes, a rebuild that finds
//! nothing to correct, tips in the caller's language, and who may do what.

use chrono::{Months, NaiveDate};
use domain::access::Role;
use domain::contracts::{Contract, ContractStatus};
use domain::schedule;
use e2e::{TestApp, contract, ecb_xml, loopback_feeds, problem};
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TODAY: &str = "2026-11-21";
/// SEK per EUR in the ECB's reference rates of the 20th.
const EUR_SEK: &str = "11.1000";
/// The benchmark (3-month STIBOR) on the 20th, and the default margin over it.
const STIBOR: &str = "2.10";
const MARGIN: &str = "1.5";

async fn publish_rates(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/swea/Series"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"seriesId": "SEDP3MSTIBORDELAYC", "shortDescription": "STIBOR 3M",
             "midDescription": "STIBOR 3 months (delayed)", "observationMinDate": "1987-01-02",
             "observationMaxDate": "2026-11-20", "seriesClosed": false}
        ])))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/swea/Observations/SEDP3MSTIBORDELAYC/.*"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            format!(r#"[{{"date":"2026-11-20","value":{STIBOR}}}]"#),
            "application/json",
        ))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/swea/Observations/.*"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(5)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/swestr/all/SWESTR"))
        .respond_with(ResponseTemplate::new(204))
        .mount(server)
        .await;
    let xml = ecb_xml(&[("2026-11-20", &[("SEK", EUR_SEK)])]);
    Mock::given(method("GET"))
        .and(path_regex("^/ecb/eurofxref-.*"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(xml, "text/xml"))
        .mount(server)
        .await;
}

async fn app_with_rates(server: &MockServer) -> TestApp {
    let feeds = loopback_feeds(&server.uri());
    TestApp::spawn_with(tempfile::tempdir().unwrap(), feeds).await
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// A contract body: `contract(number)` with these fields replaced.
fn with(number: &str, changes: Value) -> Value {
    let mut body = contract(number);
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            body.as_object_mut().unwrap().remove(name);
        } else {
            body[name] = value.clone();
        }
    }
    body
}

/// The register the tests work with: one contract in each state, two currencies, a
/// variable rate, one without a rate.
fn register() -> Vec<Value> {
    vec![
        // Active, 4.95 % fixed, monthly in advance with a residual value.
        contract("LC-ACTIVE"),
        // Ending within 90 days, quarterly in arrears, a different lessor and cost center.
        with(
            "LC-ENDING",
            json!({"lessor": "Nordea Finans Sverige AB", "costCenter": "4200",
                   "category": "it", "startDate": "2024-02-01", "endDate": "2027-01-31",
                   "paymentFrequency": "quarterly", "paymentTiming": "arrears",
                   "payment": {"amount": 1250000, "currency": "SEK"},
                   "residualValue": null, "interestRate": "3.2"}),
        ),
        // Extended: past its end date, yearly payments, never terminated.
        with(
            "LC-EXTENDED",
            json!({"lessor": "Siemens Financial Services AB", "category": "machinery",
                   "costCenter": null, "startDate": "2021-07-01", "endDate": "2026-06-30",
                   "paymentFrequency": "yearly", "payment": {"amount": 9600000, "currency": "SEK"},
                   "residualValue": {"amount": 5000000, "currency": "SEK"},
                   "interestRate": "5.4"}),
        ),
        // Terminated early last January.
        with(
            "LC-TERMINATED",
            json!({"startDate": "2023-02-01", "endDate": "2026-01-31",
                   "terminationDate": "2025-12-31", "residualValue": null}),
        ),
        // In euros, well above market.
        with(
            "LC-EUR",
            json!({"lessor": "BMW Financial Services", "startDate": "2025-09-01",
                   "endDate": "2028-08-31", "payment": {"amount": 98000, "currency": "EUR"},
                   "residualValue": {"amount": 1800000, "currency": "EUR"},
                   "interestRate": "6.5"}),
        ),
        // Starts in the new year.
        with(
            "LC-UPCOMING",
            json!({"startDate": "2027-01-01", "endDate": "2029-12-31", "interestRate": "3.9",
                   "residualValue": null}),
        ),
        // No rate: no debt can be computed.
        with(
            "LC-NORATE",
            json!({"interestRate": null, "residualValue": null, "costCenter": "4200"}),
        ),
        // Variable: the benchmark series plus a margin (2.10 + 0.8 = 2.9 %).
        with(
            "LC-VARIABLE",
            json!({"interestRate": null, "startDate": "2025-01-15", "endDate": "2029-01-14",
                   "rateReference": {"series": "SEDP3MSTIBORDELAYC", "margin": "0.8"},
                   "residualValue": null}),
        ),
    ]
}

/// What the dashboard must show, computed from the contracts alone: each contract's
/// debt from its own schedule on each day, rounded to its minor unit; euros converted
/// at the ECB rate; rounded once at the end.
struct Expected {
    monthly: Vec<i64>,
    average_rate: Option<Decimal>,
    counts: HashMap<ContractStatus, i64>,
    without_rate: i64,
    savings_interest: i64,
    extended_yearly: i64,
    lessor_debt: BTreeMap<String, i64>,
}

fn from_scratch(contracts: &[Contract]) -> Expected {
    let today = d(TODAY);
    let to_sek = |amount: Decimal, currency: &str| {
        if currency == "EUR" {
            amount * dec(EUR_SEK)
        } else {
            amount
        }
    };
    let round = |value: Decimal| -> i64 {
        value
            .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
            .try_into()
            .unwrap()
    };
    let market = dec(STIBOR) + dec(MARGIN);
    let mut monthly = vec![Decimal::ZERO; 25];
    let (mut weighted, mut weights, mut above) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    let mut counts = HashMap::new();
    let mut without_rate = 0;
    let mut extended_yearly = 0;
    let mut lessor_debt: BTreeMap<String, Decimal> = BTreeMap::new();
    for contract in contracts {
        let status = contract.status_on(today);
        *counts.entry(status).or_insert(0) += 1;
        let currency = contract.payment.currency;
        let rate = contract.current_rate.map(|r| r.percent());
        let Some(rate) = rate else {
            if status != ContractStatus::Terminated {
                without_rate += 1;
            }
            continue;
        };
        // A contract terminated since counts in the months before.
        for (index, offset) in (-12_i32..=12).enumerate() {
            let day = if offset < 0 {
                today - Months::new(offset.unsigned_abs())
            } else {
                today + Months::new(offset as u32)
            };
            let debt = schedule::build(contract, None, Some(day))
                .unwrap()
                .liability_at(day);
            let debt = Decimal::from(schedule::to_minor_units(debt, currency).unwrap());
            monthly[index] += to_sek(debt, currency.code());
            if offset == 0 && status != ContractStatus::Terminated {
                let debt = to_sek(debt, currency.code());
                weighted += debt * rate;
                weights += debt;
                if rate > market {
                    above += debt * (rate - market) / Decimal::ONE_HUNDRED;
                }
                *lessor_debt.entry(contract.lessor.clone()).or_default() += debt;
            }
        }
        if status == ContractStatus::Extended {
            let per_year = match contract.payment_frequency {
                domain::contracts::PaymentFrequency::Monthly => 12,
                domain::contracts::PaymentFrequency::Quarterly => 4,
                domain::contracts::PaymentFrequency::Yearly => 1,
            };
            extended_yearly += contract.payment.amount * per_year;
        }
    }
    Expected {
        monthly: monthly.into_iter().map(round).collect(),
        average_rate: (weights > Decimal::ZERO).then(|| {
            (weighted / weights)
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        }),
        counts,
        without_rate,
        savings_interest: round(above),
        extended_yearly,
        lessor_debt: lessor_debt
            .into_iter()
            .map(|(lessor, debt)| (lessor, round(debt)))
            .collect(),
    }
}

async fn all_contracts(app: &TestApp, token: &str) -> Vec<Contract> {
    let list = app.get_json(token, "/contracts?limit=200").await;
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| serde_json::from_value(item.clone()).unwrap())
        .collect()
}

/// Checks every figure of `dashboard` against the calculation from scratch.
async fn assert_matches_scratch(app: &TestApp, token: &str, dashboard: &Value) {
    let contracts = all_contracts(app, token).await;
    let expected = from_scratch(&contracts);
    let monthly: Vec<i64> = dashboard["leasingDebt"]["monthly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|point| point["debt"]["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(monthly, expected.monthly, "the debt series");
    let debt = &dashboard["leasingDebt"];
    assert_eq!(debt["today"]["amount"], expected.monthly[12]);
    assert_eq!(debt["today"]["currency"], "SEK");
    assert_eq!(debt["twelveMonthsAgo"]["amount"], expected.monthly[0]);
    assert_eq!(debt["inTwelveMonths"]["amount"], expected.monthly[24]);
    assert_eq!(
        debt["changePastTwelveMonths"]["amount"],
        expected.monthly[12] - expected.monthly[0]
    );
    assert_eq!(debt["monthly"][0]["date"], "2025-11-21");
    assert_eq!(debt["monthly"][24]["date"], "2027-11-21");
    assert_eq!(debt["monthly"][13]["projected"], true);
    assert_eq!(debt["monthly"][12]["projected"], false);
    assert_eq!(
        dashboard["averageInterestRate"],
        json!(expected.average_rate.map(|r| r.to_string()))
    );
    for (status, name) in [
        (ContractStatus::Upcoming, "upcoming"),
        (ContractStatus::Active, "active"),
        (ContractStatus::Ending, "ending"),
        (ContractStatus::Extended, "extended"),
        (ContractStatus::Terminated, "terminated"),
    ] {
        assert_eq!(
            dashboard["contracts"][name],
            expected.counts.get(&status).copied().unwrap_or(0),
            "{name}"
        );
    }
    assert_eq!(dashboard["contracts"]["total"], contracts.len());
    assert_eq!(dashboard["contracts"]["withoutRate"], expected.without_rate);
    let savings = &dashboard["savings"];
    assert_eq!(
        savings["interestAboveMarketPerYear"]["amount"],
        expected.savings_interest
    );
    assert_eq!(
        savings["extendedBeyondTermPerYear"]["amount"],
        expected.extended_yearly
    );
    assert_eq!(
        savings["perYear"]["amount"],
        expected.savings_interest + expected.extended_yearly
    );
    for row in dashboard["breakdowns"]["lessor"].as_array().unwrap() {
        let lessor = row["key"].as_str().unwrap();
        assert_eq!(
            row["leasingDebt"]["amount"],
            expected.lessor_debt.get(lessor).copied().unwrap_or(0),
            "{lessor}"
        );
    }
}

#[tokio::test]
async fn the_dashboard_agrees_with_a_calculation_from_scratch_through_changes() {
    let server = MockServer::start().await;
    publish_rates(&server).await;
    let app = app_with_rates(&server).await;
    let owner = app.sign_up().await;
    let refreshed = app
        .authed(&owner.token, Method::POST, "/rates/refresh")
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);

    // The first dashboard is built before any contract exists; from then on every
    // change keeps it up to date.
    let empty = app.get_json(&owner.token, "/portfolio").await;
    assert_eq!(empty["leasingDebt"]["today"]["amount"], 0);
    assert_eq!(empty["contracts"]["total"], 0);
    assert_eq!(empty["averageInterestRate"], Value::Null);

    let mut ids = BTreeMap::new();
    for body in register() {
        let created = app.create_contract(&owner.token, &body).await;
        ids.insert(
            body["contractNumber"].as_str().unwrap().to_owned(),
            created["id"].as_str().unwrap().to_owned(),
        );
    }
    let dashboard = app.get_json(&owner.token, "/portfolio").await;
    assert_eq!(dashboard["asOf"], TODAY);
    assert_matches_scratch(&app, &owner.token, &dashboard).await;
    assert_eq!(dashboard["contracts"]["extended"], 1);
    assert_eq!(dashboard["contracts"]["withoutRate"], 1);
    assert!(
        dashboard["leasingDebt"]["today"]["amount"]
            .as_i64()
            .unwrap()
            > 0
    );
    assert_eq!(
        dashboard["exchangeRates"],
        json!([
            {"currency": "EUR", "rate": "11.1000", "rateDate": "2026-11-20", "source": "ecb"},
            {"currency": "SEK", "rate": "1", "rateDate": TODAY}
        ])
    );

    // The lists.
    let extended = &dashboard["extendedContracts"];
    assert_eq!(extended["count"], 1);
    assert_eq!(extended["monthlyCost"]["amount"], 800000); // 96,000 kr a year
    assert_eq!(extended["contracts"][0]["contractNumber"], "LC-EXTENDED");
    assert_eq!(extended["contracts"][0]["endDate"], "2026-06-30");
    let ending = &dashboard["endingContracts"];
    assert_eq!(ending["count"], 1);
    assert_eq!(ending["contracts"][0]["contractNumber"], "LC-ENDING");
    assert_eq!(
        ending["contracts"][0]["monthlyCost"],
        json!({"amount": 416667, "currency": "SEK"})
    );

    // Savings: the market is STIBOR 2.10 + 1.5 = 3.6 %.
    let savings = &dashboard["savings"];
    assert_eq!(savings["marketRate"], "3.60");
    assert_eq!(
        savings["benchmark"],
        json!({"series": "SEDP3MSTIBORDELAYC", "margin": "1.5",
               "referenceRate": "2.10", "referenceDate": "2026-11-20"})
    );
    assert!(savings["formula"].as_str().unwrap().contains("max(0"));
    let top: Vec<&str> = savings["topContracts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contract"]["contractNumber"].as_str().unwrap())
        .collect();
    assert_eq!(top[0], "LC-EXTENDED", "{savings}");
    for number in ["LC-EUR", "LC-ACTIVE"] {
        assert!(top.contains(&number), "{number} in {top:?}");
    }
    for number in ["LC-ENDING", "LC-VARIABLE", "LC-TERMINATED", "LC-UPCOMING"] {
        assert!(!top.contains(&number), "{number} in {top:?}");
    }
    let eur = savings["topContracts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["contract"]["contractNumber"] == "LC-EUR")
        .unwrap();
    assert_eq!(eur["pointsAboveMarket"], "2.90");
    assert_eq!(eur["potentialPerYear"]["currency"], "EUR");

    // Breakdowns count the contracts not terminated.
    let categories = &dashboard["breakdowns"]["category"];
    let vehicle = categories
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == "vehicle")
        .unwrap();
    assert_eq!(vehicle["contracts"], 5);
    let cost_centers: Vec<&str> = dashboard["breakdowns"]["costCenter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["key"].as_str().unwrap())
        .collect();
    assert!(cost_centers.contains(&"4200") && cost_centers.contains(&""));

    // Tips name the contracts.
    let tips = dashboard["tips"].as_array().unwrap();
    let tip = |code: &str| tips.iter().find(|t| t["code"] == code).cloned();
    let overdue = tip("extended-contracts").expect("an extended tip");
    assert_eq!(overdue["contracts"], json!(["LC-EXTENDED"]));
    assert!(
        overdue["message"]
            .as_str()
            .unwrap()
            .starts_with("1 contracts have passed their end date"),
        "{overdue}"
    );
    let above = tips
        .iter()
        .find(|t| t["code"] == "above-market" && t["params"]["contract"] == "LC-EUR")
        .expect("an above-market tip for the euro contract");
    assert_eq!(above["params"]["points"], "2.9");
    assert!(
        above["message"]
            .as_str()
            .unwrap()
            .contains("pays 2.9 percentage points above market"),
        "{above}"
    );
    assert!(tip("ending-soon").is_some() && tip("without-rate").is_some());
    let swedish = app
        .authed(&owner.token, Method::GET, "/portfolio")
        .header("accept-language", "sv-SE")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let message = swedish["tips"][0]["message"].as_str().unwrap();
    assert!(message.contains("har passerat sitt slutdatum"), "{message}");

    // Changes: a new payment and an earlier end, a termination, a deletion.
    let active = &ids["LC-ACTIVE"];
    let response = app
        .authed(&owner.token, Method::PATCH, &format!("/contracts/{active}"))
        .header("if-match", "*")
        .json(&json!({"payment": {"amount": 720000, "currency": "SEK"}, "interestRate": "5.25"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let extended_id = &ids["LC-EXTENDED"];
    let response = app
        .authed(
            &owner.token,
            Method::PATCH,
            &format!("/contracts/{extended_id}"),
        )
        .header("if-match", "*")
        .json(&json!({"terminationDate": "2026-12-31"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let eur_id = &ids["LC-EUR"];
    let response = app
        .authed(
            &owner.token,
            Method::DELETE,
            &format!("/contracts/{eur_id}"),
        )
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let after = app.get_json(&owner.token, "/portfolio").await;
    assert_matches_scratch(&app, &owner.token, &after).await;
    // Terminated at year end, the contract is no longer extended... until then it is.
    assert_eq!(after["contracts"]["extended"], 1);
    assert_eq!(after["exchangeRates"].as_array().unwrap().len(), 1);
    let top: Vec<&str> = after["savings"]["topContracts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contract"]["contractNumber"].as_str().unwrap())
        .collect();
    assert!(!top.contains(&"LC-EUR"), "{top:?}");

    // A rebuild from the contracts finds nothing the maintained figures got wrong.
    let response = app
        .authed(&owner.token, Method::POST, "/portfolio/recompute")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["differences"], json!([]), "{report}");
    assert_eq!(report["contracts"], 7);
    assert_eq!(report["asOf"], TODAY);
    assert_eq!(app.get_json(&owner.token, "/portfolio").await, after);
}

#[tokio::test]
async fn the_figures_move_to_the_next_day_and_follow_the_settings() {
    let server = MockServer::start().await;
    publish_rates(&server).await;
    let app = app_with_rates(&server).await;
    let owner = app.sign_up().await;
    app.authed(&owner.token, Method::POST, "/rates/refresh")
        .send()
        .await
        .unwrap();
    for body in register() {
        app.create_contract(&owner.token, &body).await;
    }
    let today = app.get_json(&owner.token, "/portfolio").await;
    assert_eq!(today["contracts"]["ending"], 1);

    // Ten weeks on, LC-ENDING has run past its end date: the day's first read rolls the
    // figures forward.
    app.clock.set("2027-02-01T08:00:00Z".parse().expect("time"));
    let token = app.log_in(&owner.email, e2e::PASSWORD).await;
    let later = app.get_json(&token, "/portfolio").await;
    assert_eq!(later["asOf"], "2027-02-01");
    assert_eq!(later["contracts"]["extended"], 2);
    assert_eq!(later["contracts"]["upcoming"], 0);
    let extended: Vec<&str> = later["extendedContracts"]["contracts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contractNumber"].as_str().unwrap())
        .collect();
    assert_eq!(extended, ["LC-EXTENDED", "LC-ENDING"]);
    app.clock.set(e2e::TODAY.parse().expect("time"));

    // Settings: owners and admins change them; the savings follow the new margin.
    let settings = app.get_json(&owner.token, "/portfolio/settings").await;
    assert_eq!(
        settings,
        json!({"reportingCurrency": "SEK",
               "benchmark": {"series": "SEDP3MSTIBORDELAYC", "margin": "1.5"}})
    );
    let response = app
        .authed(&owner.token, Method::PATCH, "/portfolio/settings")
        .json(&json!({"benchmarkMargin": "0.5", "reportingCurrency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let dashboard = app.get_json(&owner.token, "/portfolio").await;
    assert_eq!(dashboard["savings"]["marketRate"], "2.60");
    assert_eq!(dashboard["reportingCurrency"], "EUR");
    assert_eq!(dashboard["leasingDebt"]["today"]["currency"], "EUR");
    let response = app
        .authed(&owner.token, Method::PATCH, "/portfolio/settings")
        .json(&json!({"benchmarkSeries": "NOPE", "reportingCurrency": "XYZ"}))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    let codes = e2e::error_codes(&body);
    assert!(codes.contains(&("/reportingCurrency".into(), "unknown_currency".into())));
    assert!(codes.contains(&("/benchmarkSeries".into(), "unknown_series".into())));

    // Everyone in the organization reads the dashboard; only owners and admins
    // rebuild it or change its settings.
    for role in [Role::Admin, Role::Editor, Role::Viewer] {
        let token = app.token_with_role(&owner, role).await;
        app.get_json(&token, "/portfolio").await;
        let recompute = app
            .authed(&token, Method::POST, "/portfolio/recompute")
            .send()
            .await
            .unwrap();
        let change = app
            .authed(&token, Method::PATCH, "/portfolio/settings")
            .json(&json!({"benchmarkMargin": "1"}))
            .send()
            .await
            .unwrap();
        let allowed = role == Role::Admin;
        for response in [recompute, change] {
            if allowed {
                assert_eq!(response.status(), StatusCode::OK, "{role}");
            } else {
                problem(response, StatusCode::FORBIDDEN).await;
            }
        }
    }
    let anonymous = app.request(Method::GET, "/portfolio").send().await.unwrap();
    problem(anonymous, StatusCode::UNAUTHORIZED).await;
}
