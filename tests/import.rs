//! CSV import end to end: a Swedish Excel file and an English one, a dry run that finds
//! problems, an import that refuses a bad file whole, the same file twice, and the
//! export read back in.

use e2e::{TestApp, error_codes, problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// What Swedish Excel saves as "CSV (semikolonavgränsad)": Windows-1252, semicolons,
/// decimal commas, a space as thousands separator.
const SWEDISH: &str = "Avtalsnummer;Leasegivare;Beskrivning;Kategori;Registreringsnummer;Kostnadsställe;Startdatum;Slutdatum;Uppsägningsdatum;Betalning per period;Valuta;Betalningsintervall;Betalningstidpunkt;Restvärde;Ränta (%);Referensränta\r\n\
SE-001;Skåne Leasing AB;Volvo XC40, tjänstebil;vehicle;ABC12D;4100;2025-01-01;2027-12-31;;6 899,00;SEK;monthly;advance;120 000,00;4,95;\r\n\
SE-002;Nordea Finans Sverige AB;\"Servrar; rack och kylning\";it;;4200;2024-06-01;2027-05-31;;45 000,50;SEK;quarterly;arrears;;3,2;\r\n\
SE-003;Örebro Maskin AB;Grävmaskin;machinery;;;2023-03-15;2028-03-14;;120 000;SEK;yearly;advance;;5,1;\r\n\
;;;;;;;;;;;;;;;\r\n";

const ENGLISH: &str = "contractNumber,lessor,description,category,startDate,endDate,payment,currency,paymentFrequency,paymentTiming,interestRate,notes\n\
EN-1,BMW Financial Services,BMW i4 eDrive40,vehicle,2025-05-01,2028-04-30,\"1,150.00\",EUR,monthly,advance,6.1,Imported from the old register\n\
EN-2,Dell Financial Services,Laptops for the sales team,it,2025-02-01,2027-01-31,2499.5,SEK,monthly,arrears,2.9,\n";

/// Text as Windows-1252 bytes (the Latin-1 range maps one to one).
fn windows_1252(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("a Latin-1 character"))
        .collect()
}

async fn import(app: &TestApp, token: &str, query: &str, body: Vec<u8>) -> reqwest::Response {
    app.authed(token, Method::POST, &format!("/contracts/import{query}"))
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn imported(app: &TestApp, token: &str, query: &str, body: Vec<u8>) -> Value {
    let response = import(app, token, query, body).await;
    let status = response.status();
    let report: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{report}");
    report
}

async fn by_number(app: &TestApp, token: &str) -> std::collections::BTreeMap<String, Value> {
    app.get_json(token, "/contracts?limit=200").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["contractNumber"].as_str().unwrap().to_owned(), c.clone()))
        .collect()
}

#[tokio::test]
async fn a_swedish_excel_file_imports_and_the_same_file_twice_changes_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    // With a dashboard open, the import keeps its figures as it writes.
    let before = app.get_json(&owner.token, "/portfolio").await;
    assert_eq!(before["contracts"]["total"], 0);

    let report = imported(&app, &owner.token, "", windows_1252(SWEDISH)).await;
    assert_eq!(
        (
            &report["rows"],
            &report["created"],
            &report["updated"],
            &report["unchanged"]
        ),
        (&json!(3), &json!(3), &json!(0), &json!(0)),
        "{report}"
    );
    assert_eq!(
        report["file"],
        json!({"encoding": "windows-1252", "delimiter": ";", "decimalComma": true})
    );
    let contracts = by_number(&app, &owner.token).await;
    let volvo = &contracts["SE-001"];
    assert_eq!(volvo["lessor"], "Skåne Leasing AB");
    assert_eq!(
        volvo["payment"],
        json!({"amount": 689900, "currency": "SEK"})
    );
    assert_eq!(
        volvo["residualValue"],
        json!({"amount": 12000000, "currency": "SEK"})
    );
    assert_eq!(volvo["interestRate"], "4.95");
    assert_eq!(
        contracts["SE-002"]["description"],
        "Servrar; rack och kylning"
    );
    assert_eq!(contracts["SE-002"]["payment"]["amount"], 4500050);
    assert_eq!(contracts["SE-003"]["lessor"], "Örebro Maskin AB");
    assert!(contracts["SE-003"].get("costCenter").is_none());

    // The same file again: nothing changes, not even a version.
    let again = imported(&app, &owner.token, "", windows_1252(SWEDISH)).await;
    assert_eq!(
        (&again["created"], &again["unchanged"]),
        (&json!(0), &json!(3))
    );
    let after = by_number(&app, &owner.token).await;
    assert_eq!(after, contracts);

    // The same rows as UTF-8 with a byte-order mark, one payment changed: one update.
    let changed = "\u{feff}".to_owned() + &SWEDISH.replace("6 899,00", "7 100,00");
    let report = imported(&app, &owner.token, "", changed.into_bytes()).await;
    assert_eq!(report["file"]["encoding"], "UTF-8");
    assert_eq!(
        (&report["created"], &report["updated"], &report["unchanged"]),
        (&json!(0), &json!(1), &json!(2))
    );
    let volvo = &by_number(&app, &owner.token).await["SE-001"];
    assert_eq!(volvo["payment"]["amount"], 710000);
    assert_eq!(volvo["version"], 2);

    // The dashboard counts what was imported, folded into its totals.
    let dashboard = app.get_json(&owner.token, "/portfolio").await;
    assert_eq!(dashboard["contracts"]["total"], 3);
    assert_eq!(dashboard["contracts"]["active"], 3);
    assert!(
        dashboard["leasingDebt"]["today"]["amount"]
            .as_i64()
            .unwrap()
            > 0
    );
    let recompute = app
        .authed(&owner.token, Method::POST, "/portfolio/recompute")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(recompute["differences"], json!([]), "{recompute}");
}

#[tokio::test]
async fn an_english_file_with_api_field_names_imports() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let report = imported(&app, &owner.token, "", ENGLISH.as_bytes().to_vec()).await;
    assert_eq!(report["created"], 2, "{report}");
    assert_eq!(
        report["file"],
        json!({"encoding": "UTF-8", "delimiter": ",", "decimalComma": false})
    );
    let contracts = by_number(&app, &owner.token).await;
    assert_eq!(
        contracts["EN-1"]["payment"],
        json!({"amount": 115000, "currency": "EUR"})
    );
    assert_eq!(contracts["EN-1"]["notes"], "Imported from the old register");
    assert_eq!(contracts["EN-2"]["payment"]["amount"], 249950);
    assert_eq!(contracts["EN-2"]["paymentTiming"], "arrears");
}

#[tokio::test]
async fn a_dry_run_reports_every_problem_and_a_bad_file_imports_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    let bad = "Avtalsnummer;Leasegivare;Beskrivning;Kategori;Startdatum;Slutdatum;Betalning per period;Valuta;Betalningsintervall;Betalningstidpunkt;Ränta (%)\n\
OK-1;Volvofinans Bank AB;Volvo V60;vehicle;2025-01-01;2027-12-31;5 000,00;SEK;monthly;advance;4,5\n\
BAD-1;Volvofinans Bank AB;Volvo V90;vehicle;2025-01-01;2024-12-31;5 000,00;SEK;monthly;advance;4,5\n\
BAD-2;;Truck;truck;2025-13-01;2027-12-31;fem tusen;SEK;weekly;advance;4,5\n\
OK-1;Volvofinans Bank AB;Duplicate;vehicle;2025-01-01;2027-12-31;5 000,00;SEK;monthly;advance;4,5\n";

    let report = imported(&app, &owner.token, "?dryRun=true", bad.as_bytes().to_vec()).await;
    assert_eq!(report["dryRun"], true);
    assert_eq!(report["rows"], 4);
    let problems: Vec<(u64, String, String)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["row"].as_u64().unwrap(),
                p["pointer"].as_str().unwrap().to_owned(),
                p["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        (3, "/endDate", "end_not_after_start"),
        (4, "/category", "invalid_choice"),
        (4, "/lessor", "required"),
        (4, "/startDate", "invalid_date"),
        (4, "/payment/amount", "invalid_decimal"),
        (4, "/paymentFrequency", "invalid_choice"),
        (5, "/contractNumber", "already_in_use"),
    ] {
        let expected = (expected.0, expected.1.to_owned(), expected.2.to_owned());
        assert!(problems.contains(&expected), "{expected:?} in {problems:?}");
    }
    assert!(
        !problems
            .iter()
            .any(|(row, pointer, code)| *row == 4 && pointer == "/payment" && code == "required"),
        "a cell that could not be read is not also reported missing: {problems:?}"
    );
    assert!(
        !problems.iter().any(|(row, _, _)| *row == 2),
        "{problems:?}"
    );
    let swedish = app
        .authed(&owner.token, Method::POST, "/contracts/import?dryRun=true")
        .header("content-type", "text/csv; charset=utf-8")
        .header("accept-language", "sv")
        .body(bad)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(swedish["problems"][0]["detail"].as_str().unwrap().len() > 5);
    assert!(
        by_number(&app, &owner.token).await.is_empty(),
        "a dry run writes nothing"
    );

    // For real: refused whole, every problem listed with its row.
    let response = import(&app, &owner.token, "", bad.as_bytes().to_vec()).await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(body["type"].as_str().unwrap().ends_with("/invalid-rows"));
    assert_eq!(body["errors"].as_array().unwrap().len(), problems.len());
    assert_eq!(body["errors"][0]["row"], 3);
    assert!(
        by_number(&app, &owner.token).await.is_empty(),
        "nothing imported"
    );

    // Files that cannot be read at all.
    let unknown = "Avtalsnummer;Färgkod\nX-1;röd\n";
    let response = import(&app, &owner.token, "", unknown.as_bytes().to_vec()).await;
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"].as_str().unwrap().contains("Färgkod"),
        "{body}"
    );
    let response = import(&app, &owner.token, "", Vec::new()).await;
    problem(response, StatusCode::BAD_REQUEST).await;
    let response = app
        .authed(&owner.token, Method::POST, "/contracts/import")
        .json(&json!({"contractNumber": "X"}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let response = import(&app, &owner.token, "?dryRun=maybe", ENGLISH.into()).await;
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        error_codes(&body),
        [("dryRun".to_owned(), "invalid_choice".to_owned())]
    );
    let viewer = app
        .token_with_role(&owner, domain::access::Role::Viewer)
        .await;
    let response = import(&app, &viewer, "?dryRun=true", ENGLISH.into()).await;
    problem(response, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn an_export_in_either_language_imports_back_unchanged() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up().await;
    imported(&app, &owner.token, "", windows_1252(SWEDISH)).await;
    imported(&app, &owner.token, "", ENGLISH.as_bytes().to_vec()).await;
    let before = by_number(&app, &owner.token).await;
    for lang in ["sv", "en", "fi"] {
        let export = app
            .authed(&owner.token, Method::GET, "/contracts/export")
            .header("accept-language", lang)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let report = imported(&app, &owner.token, "", export.to_vec()).await;
        assert_eq!(
            (&report["rows"], &report["unchanged"]),
            (&json!(5), &json!(5)),
            "{lang}: {report}"
        );
    }
    assert_eq!(by_number(&app, &owner.token).await, before);
}
