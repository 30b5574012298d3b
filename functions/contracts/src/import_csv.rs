//! Reading contract CSV files as people export them from Excel, for `POST /contracts/import`.
//!
//! Excel writes what the user's regional settings say: Swedish Excel saves Windows-1252
//! with semicolons and decimal commas, English Excel UTF-8 with commas and decimal
//! points, and our own export (`GET /contracts/export`) writes UTF-8 with a byte-order
//! mark and localized headers. This module accepts all of them and turns each row into
//! the same [`NewContract`] that `POST /contracts` reads from JSON. It reports only what
//! stops it from filling a field (a number that is not a number); the rules of a
//! contract (required fields, date order) are the domain's, checked by the caller.

use api::i18n::{Lang, message};
use domain::contracts::{MoneyInput, NewContract, RateReferenceInput};
use domain::input::Field;
use domain::money::Currency;
use domain::validation::FieldIssue;
use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252, WINDOWS_1257};
use rust_decimal::Decimal;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The most data rows one file may hold.
pub(crate) const MAX_ROWS: usize = 200_000;

/// One data row of the file.
#[derive(Debug)]
pub(crate) struct CsvRow {
    /// The row's number as a spreadsheet shows it: the header is row 1, the first data
    /// row is row 2. A quoted cell spanning several lines is still one row, and blank
    /// lines count as rows (Excel shows them), so without blank lines this is the
    /// record's index + 2.
    pub row: usize,
    /// A blank cell is `Field::Null` (the file says the field is empty: an update clears
    /// it); a column the file does not have is `Field::Missing` (an update keeps it).
    pub contract: NewContract,
    /// Problems reading this row's cells: (API JSON pointer of the field, e.g.
    /// `/payment/amount`, `/startDate`, `/rateReference`; the issue). The pointer `""`
    /// is the row itself (too few cells, or values under no column).
    ///
    /// A field with an issue here, at its pointer or below it (`/payment/amount` for
    /// `payment`), is left `Field::Missing`, so the domain's validation will call it
    /// `Required` as well: drop those `Required` issues for fields reported here.
    pub issues: Vec<(String, FieldIssue)>,
}

/// A whole file, read.
#[derive(Debug)]
pub(crate) struct CsvFile {
    /// The data rows that are not blank, in file order.
    pub rows: Vec<CsvRow>,
    /// What the bytes were: `UTF-8`, `windows-1252`, `windows-1257` (Baltic Excel),
    /// `UTF-16LE` or `UTF-16BE`.
    pub encoding: &'static str,
    /// `;`, `,` or tab.
    pub delimiter: char,
    /// Whether amounts were read with a decimal comma (`;` and tab files).
    pub decimal_comma: bool,
}

/// Problems with the file as a whole: nothing of it is imported.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CsvError {
    #[error("the file is empty: it has no header row")]
    Empty,
    #[error("the file is not text; an Excel workbook must be saved as CSV first")]
    NotText,
    #[error("the file says it is {encoding} but is not valid {encoding}")]
    NotDecodable { encoding: &'static str },
    #[error("unknown columns: {}", .headers.join(", "))]
    UnknownColumns { headers: Vec<String> },
    #[error("columns given more than once: {}", .headers.join(", "))]
    DuplicateColumns { headers: Vec<String> },
    #[error("the file has no contract number column")]
    NoContractNumber,
    #[error("the file has amounts but no currency column")]
    NoCurrency,
    #[error("the file has more than {max} rows")]
    TooManyRows { max: usize },
    #[error("row {row}: a quoted cell is never closed")]
    UnterminatedQuote { row: usize },
    #[error("row {row}: {detail}")]
    Syntax { row: usize, detail: String },
}

/// Reads the bytes of an uploaded CSV file into contract rows.
pub(crate) fn read_contracts_csv(bytes: &[u8]) -> Result<CsvFile, CsvError> {
    let (text, encoding) = decode(bytes)?;
    let (declared, text) = split_sep_line(&text);
    let delimiter = declared.unwrap_or_else(|| detect_delimiter(text));
    let decimal_comma = delimiter != b',';
    let raw = text.as_bytes();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(raw);
    let mut record = csv::StringRecord::new();
    let syntax = |row: usize, error: csv::Error| CsvError::Syntax {
        row,
        detail: error.to_string(),
    };

    // The header is the first row with anything in it.
    let mut row = 0;
    let layout = loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Err(CsvError::Empty),
            Err(error) => return Err(syntax(row + 1, error)),
        }
        let start = record_start(&record);
        row += 1 + blank_lines_before(raw, start);
        if is_blank(&record) {
            continue;
        }
        match Layout::from_header(&record) {
            Ok(layout) => break layout,
            // An unclosed quote swallows the rest of the file into the header; say so
            // rather than list that text as an unknown column.
            Err(error) => {
                return Err(if quote_left_open(raw, start, delimiter) {
                    CsvError::UnterminatedQuote { row }
                } else {
                    error
                });
            }
        }
    };

    let mut rows = Vec::new();
    let mut last_start = None;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => return Err(syntax(row + 1, error)),
        }
        let start = record_start(&record);
        row += 1 + blank_lines_before(raw, start);
        last_start = Some((start, row));
        // Excel appends rows of bare delimiters where cells were once formatted.
        if is_blank(&record) {
            continue;
        }
        if rows.len() == MAX_ROWS {
            return Err(CsvError::TooManyRows { max: MAX_ROWS });
        }
        rows.push(layout.read_row(&record, row, decimal_comma));
    }
    // The csv reader ends an unclosed quoted cell at the end of the file without
    // complaint; only the last record can hold one, since it runs to the end.
    if let Some((start, row)) = last_start
        && quote_left_open(raw, start, delimiter)
    {
        return Err(CsvError::UnterminatedQuote { row });
    }

    Ok(CsvFile {
        rows,
        encoding: encoding.name(),
        delimiter: char::from(delimiter),
        decimal_comma,
    })
}

/// The text of the file: UTF-8 (with or without a byte-order mark), UTF-16 with a
/// byte-order mark (Excel's "Unicode text"), else Windows-1252 (what Excel writes for
/// "CSV" in Western European locales).
fn decode(bytes: &[u8]) -> Result<(Cow<'_, str>, &'static Encoding), CsvError> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return match std::str::from_utf8(rest) {
            Ok(text) => Ok((Cow::Borrowed(text), UTF_8)),
            Err(_) => Err(CsvError::NotDecodable { encoding: "UTF-8" }),
        };
    }
    for (bom, encoding) in [(b"\xFF\xFE", UTF_16LE), (b"\xFE\xFF", UTF_16BE)] {
        if let Some(rest) = bytes.strip_prefix(bom) {
            return encoding
                .decode_without_bom_handling_and_without_replacement(rest)
                .map(|text| (text, encoding))
                .ok_or(CsvError::NotDecodable {
                    encoding: encoding.name(),
                });
        }
    }
    // Text never holds NUL; workbooks (.xlsx, .xls) and UTF-16 without a mark do.
    if bytes.contains(&0) {
        return Err(CsvError::NotText);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok((Cow::Borrowed(text), UTF_8)),
        Err(_) => {
            // Every byte is a character in these code pages: this cannot fail.
            let encoding = windows_code_page(bytes);
            Ok((encoding.decode_without_bom_handling(bytes).0, encoding))
        }
    }
}

/// Excel saves "CSV" in the Windows code page of the user's locale: Windows-1252 in the
/// Nordic countries, Windows-1257 in the Baltic states. The one under which the header
/// names more of our columns wins; Windows-1252 on a tie.
fn windows_code_page(bytes: &[u8]) -> &'static Encoding {
    // The header is at the start; a few KiB hold it.
    let head = &bytes[..bytes.len().min(8 * 1024)];
    let known_columns = |encoding: &'static Encoding| {
        let (text, _) = encoding.decode_without_bom_handling(head);
        header_fit(split_sep_line(&text).1).1
    };
    if known_columns(WINDOWS_1257) > known_columns(WINDOWS_1252) {
        WINDOWS_1257
    } else {
        WINDOWS_1252
    }
}

/// Excel honours a first line `sep=;` that names the delimiter, and does not show it.
fn split_sep_line(text: &str) -> (Option<u8>, &str) {
    let Some(rest) = text.strip_prefix("sep=") else {
        return (None, text);
    };
    let Some(&delimiter @ (b';' | b',' | b'\t')) = rest.as_bytes().first() else {
        return (None, text);
    };
    let after = &rest[1..];
    let body = if after.is_empty() {
        after
    } else if let Some(body) = after.strip_prefix("\r\n") {
        body
    } else if let Some(body) = after.strip_prefix(['\r', '\n']) {
        body
    } else {
        return (None, text);
    };
    (Some(delimiter), body)
}

const DELIMITERS: [u8; 3] = [b';', b',', b'\t'];

/// The delimiter that splits the header into the most known columns; on a tie, the one
/// that splits it into the most cells, then `;` before `,` before tab.
fn detect_delimiter(text: &str) -> u8 {
    header_fit(text).0
}

/// The best delimiter for the header of `text`, and how many known columns it finds.
fn header_fit(text: &str) -> (u8, usize) {
    let labels = labels();
    let mut best = (DELIMITERS[0], 0, 0);
    for delimiter in DELIMITERS {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(text.as_bytes());
        let mut header = csv::StringRecord::new();
        // A row of bare delimiters (of any kind) is not the header.
        let blank = |cell: &str| {
            cell.trim_matches(|c: char| {
                c.is_whitespace() || DELIMITERS.iter().any(|&d| char::from(d) == c)
            })
            .is_empty()
        };
        while let Ok(true) = reader.read_record(&mut header) {
            if !header.iter().all(blank) {
                break;
            }
        }
        let known = header
            .iter()
            .filter(|cell| labels.contains_key(&cell.trim().to_lowercase()))
            .count();
        if (known, header.len()) > (best.1, best.2) {
            best = (delimiter, known, header.len());
        }
    }
    (best.0, best.1)
}

fn record_start(record: &csv::StringRecord) -> usize {
    record
        .position()
        .map_or(0, |position| position.byte() as usize)
}

/// Blank lines just before a record: the csv reader skips them, a spreadsheet shows
/// them as rows.
fn blank_lines_before(text: &[u8], start: usize) -> usize {
    let mut at = start;
    // The reader stops after the `\r` of a `\r\n`; that `\n` ends the previous line.
    if at > 0 && text.get(at - 1) == Some(&b'\r') && text.get(at) == Some(&b'\n') {
        at += 1;
    }
    let mut lines = 0;
    while let Some(&byte) = text.get(at) {
        match byte {
            b'\n' => at += 1,
            b'\r' => {
                at += if text.get(at + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                }
            }
            _ => break,
        }
        lines += 1;
    }
    lines
}

fn is_blank(record: &csv::StringRecord) -> bool {
    record.iter().all(|cell| cell.trim().is_empty())
}

/// Whether the record starting at `start` ends inside a quoted cell, read as the csv
/// reader reads it: a cell that starts with `"` is quoted, `""` inside it is a quote,
/// and a `"` anywhere else is just a character.
fn quote_left_open(text: &[u8], start: usize, delimiter: u8) -> bool {
    #[derive(Clone, Copy)]
    enum State {
        CellStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::CellStart;
    let rest = text.get(start..).unwrap_or_default();
    let content = rest.iter().position(|b| !matches!(b, b'\r' | b'\n'));
    for &byte in &rest[content.unwrap_or(rest.len())..] {
        state = match (state, byte) {
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, _) => State::Quoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (_, b'\r' | b'\n') => return false,
            (_, b) if b == delimiter => State::CellStart,
            (State::CellStart, b'"') => State::Quoted,
            _ => State::Unquoted,
        };
    }
    matches!(state, State::Quoted)
}

/// A column the import knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    ContractNumber,
    Lessor,
    Description,
    Category,
    RegistrationNumber,
    CostCenter,
    StartDate,
    EndDate,
    TerminationDate,
    Status,
    Payment,
    Currency,
    PaymentFrequency,
    PaymentTiming,
    ResidualValue,
    InterestRate,
    RateReference,
    CurrentRate,
    DebtToday,
    Notes,
}

impl Column {
    const ALL: [Column; 20] = [
        Column::ContractNumber,
        Column::Lessor,
        Column::Description,
        Column::Category,
        Column::RegistrationNumber,
        Column::CostCenter,
        Column::StartDate,
        Column::EndDate,
        Column::TerminationDate,
        Column::Status,
        Column::Payment,
        Column::Currency,
        Column::PaymentFrequency,
        Column::PaymentTiming,
        Column::ResidualValue,
        Column::InterestRate,
        Column::RateReference,
        Column::CurrentRate,
        Column::DebtToday,
        Column::Notes,
    ];

    /// The API's name, as in `crate::CSV_COLUMNS` and the `csv.<name>` message keys.
    fn api_name(self) -> &'static str {
        match self {
            Column::ContractNumber => "contractNumber",
            Column::Lessor => "lessor",
            Column::Description => "description",
            Column::Category => "category",
            Column::RegistrationNumber => "registrationNumber",
            Column::CostCenter => "costCenter",
            Column::StartDate => "startDate",
            Column::EndDate => "endDate",
            Column::TerminationDate => "terminationDate",
            Column::Status => "status",
            Column::Payment => "payment",
            Column::Currency => "currency",
            Column::PaymentFrequency => "paymentFrequency",
            Column::PaymentTiming => "paymentTiming",
            Column::ResidualValue => "residualValue",
            Column::InterestRate => "interestRate",
            Column::RateReference => "rateReference",
            Column::CurrentRate => "currentRate",
            Column::DebtToday => "debtToday",
            Column::Notes => "notes",
        }
    }
}

/// Header text (trimmed, lower case) to column: the API names and every language's
/// export labels.
fn labels() -> &'static HashMap<String, Column> {
    static LABELS: OnceLock<HashMap<String, Column>> = OnceLock::new();
    LABELS.get_or_init(|| {
        let mut labels = HashMap::new();
        for column in Column::ALL {
            let name = column.api_name();
            labels.insert(name.to_lowercase(), column);
            // Only exported columns have labels; `message` would answer the key itself.
            if crate::CSV_COLUMNS.contains(&name) {
                let key = format!("csv.{name}");
                for lang in Lang::ALL {
                    let label = message(lang, &key, &[]);
                    if label != key {
                        labels.entry(label.trim().to_lowercase()).or_insert(column);
                    }
                }
            }
        }
        labels
    })
}

/// Which column each cell of a row belongs to; `None` under a blank header.
struct Layout {
    slots: Vec<Option<Column>>,
}

impl Layout {
    fn from_header(header: &csv::StringRecord) -> Result<Self, CsvError> {
        let labels = labels();
        let mut slots = Vec::with_capacity(header.len());
        let mut unknown = Vec::new();
        for cell in header.iter() {
            let text = cell.trim();
            if text.is_empty() {
                slots.push(None);
                continue;
            }
            let column = labels.get(&text.to_lowercase()).copied();
            if column.is_none() {
                unknown.push(text.to_owned());
            }
            slots.push(column);
        }
        // Refusing the file beats silently dropping a column the user filled in.
        if !unknown.is_empty() {
            return Err(CsvError::UnknownColumns { headers: unknown });
        }
        let appears_twice =
            |column: Column| slots.iter().filter(|slot| **slot == Some(column)).count() > 1;
        let duplicates: Vec<String> = header
            .iter()
            .zip(&slots)
            .filter(|(_, slot)| slot.is_some_and(appears_twice))
            .map(|(cell, _)| cell.trim().to_owned())
            .collect();
        if !duplicates.is_empty() {
            return Err(CsvError::DuplicateColumns {
                headers: duplicates,
            });
        }
        let has = |column| slots.contains(&Some(column));
        if !has(Column::ContractNumber) {
            return Err(CsvError::NoContractNumber);
        }
        if (has(Column::Payment) || has(Column::ResidualValue)) && !has(Column::Currency) {
            return Err(CsvError::NoCurrency);
        }
        Ok(Self { slots })
    }

    fn read_row(&self, record: &csv::StringRecord, row: usize, decimal_comma: bool) -> CsvRow {
        let mut contract = NewContract::default();
        for column in self.slots.iter().flatten() {
            blank(&mut contract, *column);
        }
        let mut issues = Vec::new();
        let (mut payment, mut residual_value, mut currency) = ("", "", "");
        // Too few cells, or values where no column is: the row is likely shifted.
        let mut ragged = record.len() < self.slots.len();
        let mut stray = false;
        for (index, cell) in record.iter().enumerate() {
            let value = cell.trim();
            if value.is_empty() {
                continue;
            }
            let column = match self.slots.get(index) {
                Some(Some(column)) => *column,
                Some(None) => {
                    stray = true;
                    continue;
                }
                None => {
                    ragged = true;
                    continue;
                }
            };
            let text = || Field::Value(value.to_owned());
            match column {
                Column::ContractNumber => contract.contract_number = text(),
                Column::Lessor => contract.lessor = text(),
                Column::Description => contract.description = text(),
                Column::RegistrationNumber => contract.registration_number = text(),
                Column::CostCenter => contract.cost_center = text(),
                Column::Notes => contract.notes = text(),
                Column::Category => contract.category = Field::Value(value.to_lowercase()),
                Column::PaymentFrequency => {
                    contract.payment_frequency = Field::Value(value.to_lowercase());
                }
                Column::PaymentTiming => {
                    contract.payment_timing = Field::Value(value.to_lowercase());
                }
                Column::StartDate => contract.start_date = Field::Value(date(value)),
                Column::EndDate => contract.end_date = Field::Value(date(value)),
                Column::TerminationDate => contract.termination_date = Field::Value(date(value)),
                Column::Payment => payment = value,
                Column::ResidualValue => residual_value = value,
                Column::Currency => currency = value,
                Column::InterestRate => match parse_percent(value) {
                    Ok(rate) => contract.interest_rate = Field::Value(rate.to_string()),
                    Err(issue) => issues.push(("/interestRate".to_owned(), issue)),
                },
                Column::RateReference => match parse_rate_reference(value) {
                    Some(reference) => contract.rate_reference = Field::Value(reference),
                    None => issues.push((
                        "/rateReference".to_owned(),
                        FieldIssue::InvalidType {
                            expected: "SERIES + MARGIN".to_owned(),
                        },
                    )),
                },
                // Computed by the server: an export carries them, an import ignores them.
                Column::Status | Column::CurrentRate | Column::DebtToday => {}
            }
        }
        if ragged {
            issues.push((
                String::new(),
                FieldIssue::InvalidType {
                    expected: format!("{} columns", self.slots.len()),
                },
            ));
        }
        if stray {
            issues.push((String::new(), FieldIssue::UnknownField));
        }
        let currency = (!currency.is_empty()).then(|| parse_currency(currency));
        let currency = currency.as_ref();
        if !payment.is_empty() {
            contract.payment = money(payment, currency, "/payment", decimal_comma, &mut issues);
        }
        if !residual_value.is_empty() {
            contract.residual_value = money(
                residual_value,
                currency,
                "/residualValue",
                decimal_comma,
                &mut issues,
            );
        }
        CsvRow {
            row,
            contract,
            issues,
        }
    }
}

/// Marks the field of a column the file has as blank, until a cell says otherwise.
fn blank(contract: &mut NewContract, column: Column) {
    match column {
        Column::ContractNumber => contract.contract_number = Field::Null,
        Column::Lessor => contract.lessor = Field::Null,
        Column::Description => contract.description = Field::Null,
        Column::RegistrationNumber => contract.registration_number = Field::Null,
        Column::CostCenter => contract.cost_center = Field::Null,
        Column::Notes => contract.notes = Field::Null,
        Column::Category => contract.category = Field::Null,
        Column::PaymentFrequency => contract.payment_frequency = Field::Null,
        Column::PaymentTiming => contract.payment_timing = Field::Null,
        Column::StartDate => contract.start_date = Field::Null,
        Column::EndDate => contract.end_date = Field::Null,
        Column::TerminationDate => contract.termination_date = Field::Null,
        Column::Payment => contract.payment = Field::Null,
        Column::ResidualValue => contract.residual_value = Field::Null,
        Column::InterestRate => contract.interest_rate = Field::Null,
        Column::RateReference => contract.rate_reference = Field::Null,
        Column::Currency | Column::Status | Column::CurrentRate | Column::DebtToday => {}
    }
}

/// A currency code in any letter case (`sek` is SEK).
fn parse_currency(text: &str) -> Result<Currency, FieldIssue> {
    if text.bytes().all(|b| b.is_ascii_uppercase()) {
        Currency::parse(text)
    } else {
        Currency::parse(&text.to_ascii_uppercase())
    }
}

/// An amount cell and the row's currency as money; `Missing` when the cell is empty or
/// has an issue (recorded in `issues`).
fn money(
    amount: &str,
    currency: Option<&Result<Currency, FieldIssue>>,
    pointer: &str,
    decimal_comma: bool,
    issues: &mut Vec<(String, FieldIssue)>,
) -> Field<MoneyInput> {
    if amount.is_empty() {
        return Field::Missing;
    }
    let currency = match currency {
        Some(Ok(currency)) => Some(*currency),
        Some(Err(issue)) => {
            issues.push((format!("{pointer}/currency"), issue.clone()));
            None
        }
        None => {
            issues.push((format!("{pointer}/currency"), FieldIssue::Required));
            None
        }
    };
    let amount = match parse_amount(amount, decimal_comma) {
        Ok(amount) => Some(amount),
        Err(issue) => {
            issues.push((format!("{pointer}/amount"), issue));
            None
        }
    };
    let (Some(currency), Some(amount)) = (currency, amount) else {
        return Field::Missing;
    };
    match minor_units(amount, currency.minor_unit_digits()) {
        Ok(minor) => Field::Value(MoneyInput {
            amount: minor,
            currency: currency.code().to_owned(),
        }),
        Err(issue) => {
            issues.push((format!("{pointer}/amount"), issue));
            Field::Missing
        }
    }
}

/// A major-unit amount in integer minor units (6899.50 SEK is 689950 öre).
fn minor_units(amount: Decimal, digits: u32) -> Result<i64, FieldIssue> {
    // Trailing zeros carry no precision: 6899.500 SEK is fine.
    let amount = amount.normalize();
    if amount.scale() > digits {
        return Err(FieldIssue::TooPrecise {
            max_decimals: digits,
        });
    }
    10i128
        .checked_pow(digits - amount.scale())
        .and_then(|factor| amount.mantissa().checked_mul(factor))
        .and_then(|minor| i64::try_from(minor).ok())
        .ok_or_else(|| FieldIssue::OutOfRange {
            min: "0".to_owned(),
            max: (i64::MAX / 10i64.pow(digits.min(18))).to_string(),
        })
}

/// Spaces people and Excel put between groups of thousands: space, no-break space,
/// narrow no-break space.
const GROUP_SPACES: [char; 3] = [' ', '\u{a0}', '\u{202f}'];

/// An amount as a spreadsheet writes it. With a decimal comma (`;` files) both `6899,50`
/// and `6899.50` are read, and thousands may be grouped by spaces or by the other mark
/// (`6 899,50`, `6.899,50`, `6,899.50`); a lone mark is the decimal mark, so `6.899` is
/// 6.899 (too precise for SEK, reported rather than guessed). With a decimal point
/// (`,` files) a comma only groups thousands (`"6,899.50"`).
fn parse_amount(text: &str, decimal_comma: bool) -> Result<Decimal, FieldIssue> {
    let (negative, body) = split_sign(text.trim());
    let (decimal_mark, group_mark) = if !decimal_comma {
        ('.', ',')
    } else {
        match (body.rfind(','), body.rfind('.')) {
            (Some(comma), Some(point)) if point > comma => ('.', ','),
            (Some(_), Some(_)) => (',', '.'),
            // Two or more of one mark can only group thousands.
            (Some(_), None) if body.matches(',').nth(1).is_some() => ('.', ','),
            (None, Some(_)) if body.matches('.').nth(1).is_some() => (',', '.'),
            (_, Some(_)) => ('.', ','),
            _ => (',', '.'),
        }
    };
    let (whole, fraction) = match body.split_once(decimal_mark) {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (body, None),
    };
    let grouping = [
        group_mark,
        GROUP_SPACES[0],
        GROUP_SPACES[1],
        GROUP_SPACES[2],
    ];
    decimal(negative, whole, fraction, &grouping)
}

/// A percentage (`4,95`, `4.95`, `4,95 %`): either mark is the decimal mark, since a
/// rate never needs thousands grouped.
fn parse_percent(text: &str) -> Result<Decimal, FieldIssue> {
    let text = text.trim();
    let text = text.strip_suffix('%').unwrap_or(text).trim_end();
    let (negative, body) = split_sign(text);
    let (whole, fraction) = match body.split_once([',', '.']) {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (body, None),
    };
    decimal(negative, whole, fraction, &[])
}

/// A leading sign: `-`, the Unicode minus some locales write, or `+`.
fn split_sign(text: &str) -> (bool, &str) {
    if let Some(rest) = text.strip_prefix(['-', '\u{2212}']) {
        (true, rest.trim_start())
    } else if let Some(rest) = text.strip_prefix('+') {
        (false, rest.trim_start())
    } else {
        (false, text)
    }
}

/// Digits in, a decimal out, without allocating. `whole` may group thousands by any of
/// `grouping` (1 to 3 digits, then groups of exactly 3).
fn decimal(
    negative: bool,
    whole: &str,
    fraction: Option<&str>,
    grouping: &[char],
) -> Result<Decimal, FieldIssue> {
    // 28 digits always fit a Decimal's 96-bit mantissa.
    const MAX_DIGITS: usize = 28;
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let fraction = fraction.unwrap_or_default();
    let grouped = whole.contains(grouping);
    let groups_valid = !grouped
        || whole.split(grouping).enumerate().all(|(index, group)| {
            let length_ok = if index == 0 {
                (1..=3).contains(&group.len())
            } else {
                group.len() == 3
            };
            length_ok && all_digits(group)
        });
    let digits = whole
        .bytes()
        .chain(fraction.bytes())
        .filter(u8::is_ascii_digit);
    let digit_count = digits.clone().count();
    if !groups_valid
        || (!grouped && !all_digits(whole))
        || !all_digits(fraction)
        || digit_count == 0
        || digit_count > MAX_DIGITS
    {
        return Err(FieldIssue::InvalidDecimal);
    }
    let mantissa = digits.fold(0i128, |value, digit| value * 10 + i128::from(digit - b'0'));
    let scale = fraction.len() as u32;
    let mut value = Decimal::try_from_i128_with_scale(mantissa, scale)
        .map_err(|_| FieldIssue::InvalidDecimal)?;
    value.set_sign_negative(negative && !value.is_zero());
    Ok(value)
}

/// A rate reference as the export writes it, `SERIES + MARGIN` (`SWESTR + 1,85`), also
/// with `-` (`SWESTR - 0,25`), a signed margin (`SWESTR + -0.25`), no spaces, or no
/// margin at all (margin 0).
fn parse_rate_reference(text: &str) -> Option<RateReferenceInput> {
    let text = text.trim();
    let end = text
        .find(|c: char| c.is_whitespace() || matches!(c, '+' | '-' | '\u{2212}'))
        .unwrap_or(text.len());
    let (series, rest) = text.split_at(end);
    let series_valid = !series.is_empty()
        && series
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
    if !series_valid {
        return None;
    }
    let rest = rest.trim_start();
    let margin = if rest.is_empty() {
        Decimal::ZERO
    } else {
        let (minus, margin) = if let Some(margin) = rest.strip_prefix('+') {
            (false, margin)
        } else if let Some(margin) = rest.strip_prefix(['-', '\u{2212}']) {
            (true, margin)
        } else {
            (false, rest)
        };
        let margin = parse_percent(margin).ok()?;
        if minus && !margin.is_zero() {
            -margin
        } else {
            margin
        }
    };
    Some(RateReferenceInput {
        series: series.to_ascii_uppercase(),
        margin: margin.to_string(),
    })
}

/// A date cell as ISO `YYYY-MM-DD`, when it is one in a spelling Excel writes: ISO with a
/// midnight time (`2024-01-15 00:00:00`), or day first with dots or dashes
/// (`15.1.2024`, `15-01-2024`), as Finnish, Norwegian, Danish and Baltic Excel save
/// dates. Anything else passes through for the domain to refuse.
fn date(value: &str) -> String {
    let day = match value.split_once([' ', 'T']) {
        Some((day, time)) if is_midnight(time.trim()) => day,
        _ => value,
    };
    let iso = |b: &[u8]| {
        b.len() == 10
            && b.iter().enumerate().all(|(index, byte)| match index {
                4 | 7 => *byte == b'-',
                _ => byte.is_ascii_digit(),
            })
    };
    if iso(day.as_bytes()) {
        return day.to_owned();
    }
    let number = |part: &str, lengths: std::ops::RangeInclusive<usize>| {
        lengths.contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit())
    };
    // One separator throughout, so `15.01-2024` is left alone.
    let one_separator = !(day.contains('.') && day.contains('-'));
    let mut parts = day.split(['.', '-']);
    if let (Some(d), Some(m), Some(y), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
        && one_separator
        && number(d, 1..=2)
        && number(m, 1..=2)
        && number(y, 4..=4)
    {
        return format!("{y}-{m:0>2}-{d:0>2}");
    }
    value.to_owned()
}

/// `00:00`, `0:00`, `00:00:00`, `00:00:00.000`, optionally with `Z`.
fn is_midnight(time: &str) -> bool {
    let time = time.strip_suffix('Z').unwrap_or(time);
    let parts: Vec<&str> = time.split(':').collect();
    let zero = |part: &&str| part.starts_with('0') && part.bytes().all(|b| b == b'0' || b == b'.');
    (2..=3).contains(&parts.len())
        && parts[0].len() <= 2
        && parts[1].len() == 2
        && parts.iter().all(zero)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWEDISH_HEADER: &str = "Avtalsnummer;Leasegivare;Beskrivning;Kategori;\
        Registreringsnummer;Kostnadsställe;Startdatum;Slutdatum;Uppsägningsdatum;Status;\
        Betalning per period;Valuta;Betalningsintervall;Betalningstidpunkt;Restvärde;\
        Ränta (%);Referensränta;Aktuell ränta (%);Leasingskuld i dag";

    /// What Swedish Excel saves as "CSV (semikolonavgränsad)": no byte-order mark, CRLF,
    /// a thousands space that is a no-break space, rows of bare semicolons at the end.
    fn swedish_export() -> String {
        [
            SWEDISH_HEADER,
            "LC-2024-0042;Nordea Finans Sverige AB;Volvo XC60 T6;Vehicle;ABC12D;Försäljning;\
             2024-01-15;2027-01-14;;active;6\u{a0}899,00;SEK;monthly;advance;150 000,00;4,95;;\
             4,95;187\u{a0}234,17",
            "LC-2023-0107;Skåne Leasing AB;Truckar, två st;machinery;;Lager Malmö;\
             2023-06-01;2026-05-31;;ending;12500,5;SEK;quarterly;arrears;;;SWESTR + 1,85;\
             5,10;98 000,00",
            ";;;;;;;;;;;;;;;;;;",
            ";;;;;;;;;;;;;;;;;;",
            "",
        ]
        .join("\r\n")
    }

    fn windows_1252(text: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = WINDOWS_1252.encode(text);
        assert!(!unmappable);
        bytes.into_owned()
    }

    fn read(text: &str) -> CsvFile {
        read_contracts_csv(text.as_bytes()).unwrap()
    }

    fn value(field: &Field<String>) -> Option<&str> {
        match field {
            Field::Value(value) => Some(value),
            Field::Missing | Field::Null => None,
        }
    }

    fn money(field: &Field<MoneyInput>) -> Option<(i64, &str)> {
        match field {
            Field::Value(money) => Some((money.amount, &money.currency)),
            Field::Missing | Field::Null => None,
        }
    }

    fn reference(field: &Field<RateReferenceInput>) -> Option<(&str, &str)> {
        match field {
            Field::Value(reference) => Some((&reference.series, &reference.margin)),
            Field::Missing | Field::Null => None,
        }
    }

    fn issues(row: &CsvRow) -> Vec<(&str, &FieldIssue)> {
        row.issues.iter().map(|(p, i)| (p.as_str(), i)).collect()
    }

    /// The amount cell of a one-row file in the file's conventions.
    fn read_payment(header: &str, row: &str) -> (Field<MoneyInput>, Vec<(String, FieldIssue)>) {
        let file = read(&format!("{header}\n{row}\n"));
        assert_eq!(file.rows.len(), 1);
        let row = file.rows.into_iter().next().unwrap();
        (row.contract.payment, row.issues)
    }

    fn assert_swedish_rows(file: &CsvFile) {
        assert_eq!((file.delimiter, file.decimal_comma), (';', true));
        assert_eq!(file.rows.len(), 2);
        let first = &file.rows[0];
        assert_eq!(first.row, 2);
        assert!(first.issues.is_empty(), "{:?}", first.issues);
        let c = &first.contract;
        assert_eq!(value(&c.contract_number), Some("LC-2024-0042"));
        assert_eq!(value(&c.lessor), Some("Nordea Finans Sverige AB"));
        assert_eq!(value(&c.description), Some("Volvo XC60 T6"));
        assert_eq!(value(&c.category), Some("vehicle"));
        assert_eq!(value(&c.registration_number), Some("ABC12D"));
        assert_eq!(value(&c.cost_center), Some("Försäljning"));
        assert_eq!(value(&c.start_date), Some("2024-01-15"));
        assert_eq!(value(&c.end_date), Some("2027-01-14"));
        assert_eq!(c.termination_date, Field::Null);
        assert_eq!(money(&c.payment), Some((689_900, "SEK")));
        assert_eq!(value(&c.payment_frequency), Some("monthly"));
        assert_eq!(value(&c.payment_timing), Some("advance"));
        assert_eq!(money(&c.residual_value), Some((15_000_000, "SEK")));
        assert_eq!(value(&c.interest_rate), Some("4.95"));
        assert_eq!(reference(&c.rate_reference), None);
        assert_eq!(c.notes, Field::Missing);

        let second = &file.rows[1];
        assert_eq!(second.row, 3);
        assert!(second.issues.is_empty(), "{:?}", second.issues);
        let c = &second.contract;
        assert_eq!(value(&c.lessor), Some("Skåne Leasing AB"));
        assert_eq!(value(&c.description), Some("Truckar, två st"));
        assert_eq!(value(&c.cost_center), Some("Lager Malmö"));
        assert_eq!(c.registration_number, Field::Null);
        assert_eq!(money(&c.payment), Some((1_250_050, "SEK")));
        assert_eq!(money(&c.residual_value), None);
        assert_eq!(c.interest_rate, Field::Null);
        assert_eq!(reference(&c.rate_reference), Some(("SWESTR", "1.85")));
    }

    #[test]
    fn reads_swedish_excel_csv_in_windows_1252() {
        let bytes = windows_1252(&swedish_export());
        assert!(std::str::from_utf8(&bytes).is_err(), "å must be one byte");
        let file = read_contracts_csv(&bytes).unwrap();
        assert_eq!(file.encoding, "windows-1252");
        assert_swedish_rows(&file);
    }

    #[test]
    fn reads_the_same_file_as_utf8_with_a_byte_order_mark() {
        let bytes = format!("\u{feff}{}", swedish_export()).into_bytes();
        let file = read_contracts_csv(&bytes).unwrap();
        assert_eq!(file.encoding, "UTF-8");
        assert_swedish_rows(&file);
    }

    #[test]
    fn reads_baltic_excel_csv_in_windows_1257() {
        let text = "Sutarties numeris;Nuomotojas;Išlaidų centras;Mokėjimas už laikotarpį;\
            Valiuta\r\nLT-1;UAB „Šiaulių lizingas“;Kaunas;1\u{a0}250,50;EUR\r\n";
        let (bytes, _, unmappable) = WINDOWS_1257.encode(text);
        assert!(!unmappable);
        let file = read_contracts_csv(&bytes).unwrap();
        assert_eq!(file.encoding, "windows-1257");
        let c = &file.rows[0].contract;
        assert_eq!(value(&c.lessor), Some("UAB „Šiaulių lizingas“"));
        assert_eq!(value(&c.cost_center), Some("Kaunas"));
        assert_eq!(money(&c.payment), Some((125_050, "EUR")));
        // Swedish letters read the same in both code pages; a tie stays Windows-1252.
        let swedish = windows_1252("Avtalsnummer;Leasegivare\r\nA;Skåne Leasing AB\r\n");
        let file = read_contracts_csv(&swedish).unwrap();
        assert_eq!(file.encoding, "windows-1252");
        assert_eq!(
            value(&file.rows[0].contract.lessor),
            Some("Skåne Leasing AB")
        );
    }

    #[test]
    fn reads_utf16_unicode_text() {
        let text = format!("\u{feff}{}", swedish_export().replace(';', "\t"));
        let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let file = read_contracts_csv(&bytes).unwrap();
        assert_eq!((file.encoding, file.delimiter), ("UTF-16LE", '\t'));
        assert_eq!(file.rows.len(), 2);
        assert_eq!(
            value(&file.rows[1].contract.lessor),
            Some("Skåne Leasing AB")
        );
        assert_eq!(
            money(&file.rows[0].contract.payment),
            Some((689_900, "SEK"))
        );
    }

    #[test]
    fn reads_english_comma_file_with_api_names() {
        let file = read(
            "contractNumber,lessor,description,category,startDate,endDate,payment,currency,\
             paymentFrequency,paymentTiming,residualValue,interestRate,notes\n\
             LC-1,Volvofinans Bank AB,\"Volvo XC60, company car\",vehicle,2024-01-15,\
             2027-01-14,\"6,899.50\",SEK,monthly,advance,150000,4.95,\"Call before \"\"renewal\"\"\"\n\
             LC-2,Siemens Financial Services,Forklift,MACHINERY,2024-02-01 00:00:00,\
             2029-01-31T00:00:00,1200.5,eur,Quarterly,arrears,,,\n",
        );
        assert_eq!((file.encoding, file.delimiter), ("UTF-8", ','));
        assert!(!file.decimal_comma);
        assert_eq!(file.rows.len(), 2);
        let [first, second] = &file.rows[..] else {
            unreachable!()
        };
        assert!(first.issues.is_empty() && second.issues.is_empty());
        assert_eq!(
            value(&first.contract.description),
            Some("Volvo XC60, company car")
        );
        assert_eq!(money(&first.contract.payment), Some((689_950, "SEK")));
        assert_eq!(
            money(&first.contract.residual_value),
            Some((15_000_000, "SEK"))
        );
        assert_eq!(value(&first.contract.interest_rate), Some("4.95"));
        assert_eq!(
            value(&first.contract.notes),
            Some("Call before \"renewal\"")
        );
        assert_eq!(value(&second.contract.category), Some("machinery"));
        assert_eq!(value(&second.contract.start_date), Some("2024-02-01"));
        assert_eq!(value(&second.contract.end_date), Some("2029-01-31"));
        assert_eq!(money(&second.contract.payment), Some((120_050, "EUR")));
        assert_eq!(value(&second.contract.payment_frequency), Some("quarterly"));
        assert_eq!(money(&second.contract.residual_value), None);
    }

    #[test]
    fn reads_finnish_and_lithuanian_headers() {
        let finnish = read(
            "Sopimusnumero;Vuokralleantaja;Alkupäivä;Loppupäivä;Maksu jaksolta;Valuutta;\
             Korko (%);Viitekorko\n\
             FI-7;Nordea Rahoitus Suomi Oy;1.3.2024;28.02.2029;1 250,00;EUR;3,2 %;\n",
        );
        let c = &finnish.rows[0].contract;
        assert_eq!(value(&c.contract_number), Some("FI-7"));
        assert_eq!(value(&c.lessor), Some("Nordea Rahoitus Suomi Oy"));
        assert_eq!(value(&c.start_date), Some("2024-03-01"));
        assert_eq!(value(&c.end_date), Some("2029-02-28"));
        assert_eq!(money(&c.payment), Some((125_000, "EUR")));
        assert_eq!(value(&c.interest_rate), Some("3.2"));

        let lithuanian = read(
            "Sutarties numeris;Nuomotojas;Išlaidų centras;Pradžios data;Mokėjimas už laikotarpį;\
             Valiuta;Bazinė palūkanų norma\n\
             LT-1;Luminor lizingas;Vilniaus biuras;2024-05-01;890,10;EUR;EURIBOR3M + 1,5\n",
        );
        let c = &lithuanian.rows[0].contract;
        assert_eq!(value(&c.lessor), Some("Luminor lizingas"));
        assert_eq!(value(&c.cost_center), Some("Vilniaus biuras"));
        assert_eq!(money(&c.payment), Some((89_010, "EUR")));
        assert_eq!(reference(&c.rate_reference), Some(("EURIBOR3M", "1.5")));
    }

    #[test]
    fn every_export_header_of_every_language_reads_back() {
        for lang in Lang::ALL {
            let header: Vec<String> = crate::CSV_COLUMNS
                .iter()
                .map(|column| message(lang, &format!("csv.{column}"), &[]))
                .collect();
            let layout = Layout::from_header(&csv::StringRecord::from(header)).unwrap();
            let names: Vec<&str> = layout.slots.iter().map(|s| s.unwrap().api_name()).collect();
            assert_eq!(names, crate::CSV_COLUMNS, "{lang:?}");
        }
    }

    #[test]
    fn no_label_names_two_columns() {
        let mut seen: HashMap<String, &str> = HashMap::new();
        for column in crate::CSV_COLUMNS {
            for lang in Lang::ALL {
                let label = message(lang, &format!("csv.{column}"), &[]).to_lowercase();
                let first = *seen.entry(label.clone()).or_insert(column);
                assert_eq!(first, column, "{label:?} ({lang:?})");
            }
        }
    }

    #[test]
    fn exports_of_every_language_re_import() {
        let contract: domain::contracts::Contract = serde_json::from_value(serde_json::json!({
            "id": "0190f0a0-0000-7000-8000-000000000001",
            "contractNumber": "LC-2024-0042",
            "lessor": "Skåne Leasing AB",
            "description": "Truck; two \"forks\", one\nlift",
            "category": "machinery",
            "costCenter": "4100",
            "startDate": "2024-01-15",
            "endDate": "2027-01-14",
            "payment": {"amount": 689950, "currency": "SEK"},
            "paymentFrequency": "monthly",
            "paymentTiming": "advance",
            "residualValue": {"amount": 15000000, "currency": "SEK"},
            "rateReference": {"series": "SWESTR", "margin": "-0.25"},
            "currentRate": "2.1",
            "createdAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2024-01-01T00:00:00Z",
            "createdBy": "0190f0a0-0000-7000-8000-000000000002",
            "updatedBy": "0190f0a0-0000-7000-8000-000000000002",
        }))
        .unwrap();
        let debt = Some(Decimal::new(18_723_417, 2));
        for lang in Lang::ALL {
            let bytes = crate::contracts_csv(&[(contract.clone(), debt)], lang).unwrap();
            let file = read_contracts_csv(&bytes).unwrap();
            assert_eq!(file.decimal_comma, lang.decimal_comma(), "{lang:?}");
            let [row] = &file.rows[..] else {
                panic!("{lang:?}: {} rows", file.rows.len())
            };
            assert!(row.issues.is_empty(), "{lang:?}: {:?}", row.issues);
            let c = &row.contract;
            assert_eq!(
                value(&c.description),
                Some("Truck; two \"forks\", one\nlift")
            );
            assert_eq!(value(&c.category), Some("machinery"));
            assert_eq!(value(&c.cost_center), Some("4100"));
            assert_eq!(money(&c.payment), Some((689_950, "SEK")), "{lang:?}");
            assert_eq!(money(&c.residual_value), Some((15_000_000, "SEK")));
            assert_eq!(reference(&c.rate_reference), Some(("SWESTR", "-0.25")));
            assert_eq!(c.registration_number, Field::Null);
            assert_eq!(c.interest_rate, Field::Null);
        }
    }

    #[test]
    fn quoted_cells_may_hold_delimiters_and_newlines_and_stay_one_row() {
        let file = read(
            "Avtalsnummer;Beskrivning;notes\r\n\
             A-1;\"Volvo; FH16\r\nwith trailer\";\"line one\nline two\"\r\n\
             A-2;Plain;\r\n",
        );
        assert_eq!(file.rows.len(), 2);
        assert_eq!(
            value(&file.rows[0].contract.description),
            Some("Volvo; FH16\r\nwith trailer")
        );
        assert_eq!(
            value(&file.rows[0].contract.notes),
            Some("line one\nline two")
        );
        // A spreadsheet shows the multi-line record as one row.
        assert_eq!(file.rows[0].row, 2);
        assert_eq!(file.rows[1].row, 3);
        assert_eq!(value(&file.rows[1].contract.contract_number), Some("A-2"));
    }

    #[test]
    fn row_numbers_count_blank_lines_and_skipped_rows_like_a_spreadsheet() {
        let file = read(
            "contractNumber;lessor\r\n\
             A-1;\"two\r\nlines\"\r\n\
             \r\n\
             ;\r\n\
             A-2;x\r\n\
             \n\
             A-3;y",
        );
        let rows: Vec<(usize, Option<&str>)> = file
            .rows
            .iter()
            .map(|r| (r.row, value(&r.contract.contract_number)))
            .collect();
        assert_eq!(rows, [(2, Some("A-1")), (5, Some("A-2")), (7, Some("A-3"))]);
    }

    #[test]
    fn reads_rate_references() {
        let cases = [
            ("SWESTR + 1,85", Some(("SWESTR", "1.85"))),
            (
                "SEDP3MSTIBORDELAYC + 2.1",
                Some(("SEDP3MSTIBORDELAYC", "2.1")),
            ),
            ("SWESTR - 0,25", Some(("SWESTR", "-0.25"))),
            ("SWESTR \u{2212} 0,25", Some(("SWESTR", "-0.25"))),
            ("SWESTR + -0.25", Some(("SWESTR", "-0.25"))),
            ("SWESTR - -0.25", Some(("SWESTR", "0.25"))),
            ("swestr+1,85 %", Some(("SWESTR", "1.85"))),
            ("ECB.EUR.SEK + 0", Some(("ECB.EUR.SEK", "0"))),
            ("SWESTR - 0", Some(("SWESTR", "0"))),
            ("SWESTR", Some(("SWESTR", "0"))),
            ("4,95", None),
            ("SWESTR + ", None),
            ("SWESTR + 1,8,5", None),
            ("SWESTR * 2", None),
            ("+ 1,85", None),
        ];
        for (cell, expected) in cases {
            let file = read(&format!("contractNumber;rateReference\nA;{cell}\n"));
            let row = &file.rows[0];
            assert_eq!(
                reference(&row.contract.rate_reference),
                expected,
                "{cell:?}"
            );
            let expected_issues: Vec<(String, FieldIssue)> = match expected {
                Some(_) => vec![],
                None => vec![(
                    "/rateReference".into(),
                    FieldIssue::InvalidType {
                        expected: "SERIES + MARGIN".into(),
                    },
                )],
            };
            assert_eq!(row.issues, expected_issues, "{cell:?}");
        }
    }

    #[test]
    fn reads_amounts_in_each_convention() {
        let semicolon = "contractNumber;payment;currency";
        let cases = [
            ("6899,50", 689_950),
            ("6899.50", 689_950),
            ("6 899,50", 689_950),
            ("6\u{a0}899,50", 689_950),
            ("6\u{202f}899,50", 689_950),
            ("6.899,50", 689_950),
            ("1.234.567", 123_456_700),
            ("6899,500", 689_950),
            ("6899", 689_900),
            ("-100,5", -10_050),
            ("\u{2212}100,5", -10_050),
        ];
        for (cell, amount) in cases {
            let (payment, issues) = read_payment(semicolon, &format!("A;{cell};SEK"));
            assert_eq!(money(&payment), Some((amount, "SEK")), "{cell:?}");
            assert!(issues.is_empty(), "{cell:?}: {issues:?}");
        }
        let comma = "contractNumber,payment,currency";
        for (cell, amount) in [("\"6,899.50\"", 689_950), ("1234567.1", 123_456_710)] {
            let (payment, issues) = read_payment(comma, &format!("A,{cell},SEK"));
            assert_eq!(money(&payment), Some((amount, "SEK")), "{cell:?}");
            assert!(issues.is_empty(), "{cell:?}: {issues:?}");
        }
    }

    #[test]
    fn yen_have_no_minor_unit() {
        let (payment, issues) = read_payment("contractNumber;payment;currency", "A;125 000;JPY");
        assert_eq!(money(&payment), Some((125_000, "JPY")));
        assert!(issues.is_empty());
        let (payment, issues) = read_payment("contractNumber;payment;currency", "A;125,5;JPY");
        assert_eq!(money(&payment), None);
        assert_eq!(
            issues,
            [(
                "/payment/amount".into(),
                FieldIssue::TooPrecise { max_decimals: 0 }
            )]
        );
    }

    #[test]
    fn too_precise_amounts_are_reported() {
        for (header, row) in [
            ("contractNumber;payment;currency", "A;6899,505;SEK"),
            ("contractNumber;payment;currency", "A;6.899;SEK"),
            ("contractNumber,payment,currency", "A,6899.505,SEK"),
        ] {
            let (payment, issues) = read_payment(header, row);
            assert_eq!(money(&payment), None);
            assert_eq!(
                issues,
                [(
                    "/payment/amount".into(),
                    FieldIssue::TooPrecise { max_decimals: 2 }
                )],
                "{row}"
            );
        }
    }

    #[test]
    fn amounts_that_are_not_numbers_are_reported() {
        for (header, row) in [
            ("contractNumber;payment;currency", "A;6 899 kr;SEK"),
            ("contractNumber;payment;currency", "A;n/a;SEK"),
            ("contractNumber;payment;currency", "A;6,899,50;SEK"),
            ("contractNumber;payment;currency", "A;68 99,50;SEK"),
            ("contractNumber;payment;currency", "A;1e5;SEK"),
            ("contractNumber;payment;currency", "A;-;SEK"),
            ("contractNumber;payment;currency", "A;1_000;SEK"),
            ("contractNumber,payment,currency", "A,\"6899,50\",SEK"),
            ("contractNumber,payment,currency", "A,6.899.50,SEK"),
        ] {
            let (payment, issues) = read_payment(header, row);
            assert_eq!(money(&payment), None);
            assert_eq!(
                issues,
                [("/payment/amount".into(), FieldIssue::InvalidDecimal)],
                "{row}"
            );
        }
    }

    #[test]
    fn currency_problems_are_reported_per_amount() {
        let file = read(
            "contractNumber;payment;residualValue;currency\n\
             A;100;;sek\n\
             B;100;5;KRONOR\n\
             C;100;;\n\
             D;;;XYZ\n\
             E;x;;XYZ\n",
        );
        let rows: Vec<_> = file.rows.iter().map(issues).collect();
        assert_eq!(money(&file.rows[0].contract.payment), Some((10_000, "SEK")));
        assert_eq!(rows[0], []);
        assert_eq!(
            rows[1],
            [
                ("/payment/currency", &FieldIssue::UnknownCurrency),
                ("/residualValue/currency", &FieldIssue::UnknownCurrency)
            ]
        );
        assert_eq!(rows[2], [("/payment/currency", &FieldIssue::Required)]);
        // No amount, nothing to price: the domain reports the missing payment.
        assert_eq!(rows[3], []);
        assert_eq!(
            rows[4],
            [
                ("/payment/currency", &FieldIssue::UnknownCurrency),
                ("/payment/amount", &FieldIssue::InvalidDecimal)
            ]
        );
    }

    #[test]
    fn interest_rates_are_normalised_to_a_point() {
        let file = read("contractNumber;interestRate\nA;4,95\nB;4.95%\nC;-0,5\nD;4,9,5\nE;4 %\n");
        let rates: Vec<_> = file
            .rows
            .iter()
            .map(|r| value(&r.contract.interest_rate))
            .collect();
        assert_eq!(
            rates,
            [Some("4.95"), Some("4.95"), Some("-0.5"), None, Some("4")]
        );
        assert_eq!(
            issues(&file.rows[3]),
            [("/interestRate", &FieldIssue::InvalidDecimal)]
        );
    }

    #[test]
    fn dates_are_passed_as_iso() {
        let cases = [
            ("2024-01-15", "2024-01-15"),
            ("2024-01-15 00:00:00", "2024-01-15"),
            ("2024-01-15T00:00:00", "2024-01-15"),
            ("2024-01-15 00:00", "2024-01-15"),
            ("15.1.2024", "2024-01-15"),
            ("15.01.2024 0:00", "2024-01-15"),
            ("15-01-2024", "2024-01-15"),
            // Not midnight, or not a spelling we know: the domain refuses it.
            ("2024-01-15 13:45", "2024-01-15 13:45"),
            ("1/15/2024", "1/15/2024"),
            ("15.01-2024", "15.01-2024"),
            ("2024-1-15", "2024-1-15"),
        ];
        for (cell, expected) in cases {
            let file = read(&format!("contractNumber;startDate\nA;{cell}\n"));
            assert_eq!(
                value(&file.rows[0].contract.start_date),
                Some(expected),
                "{cell}"
            );
            assert!(file.rows[0].issues.is_empty());
        }
    }

    #[test]
    fn empty_cells_are_blank_absent_columns_missing_and_computed_columns_ignored() {
        let file =
            read("contractNumber;lessor;status;currentRate;debtToday;notes\nA; ;active;x;y;\n");
        let row = &file.rows[0];
        assert_eq!(row.contract.lessor, Field::Null);
        assert_eq!(row.contract.notes, Field::Null);
        assert_eq!(row.contract.description, Field::Missing, "no such column");
        assert!(row.issues.is_empty());
    }

    #[test]
    fn unknown_headers_refuse_the_file() {
        let error = read_contracts_csv("Avtalsnummer;Leasegivare;Bil;Färg\nA;B;C;D\n".as_bytes())
            .unwrap_err();
        assert_eq!(
            error,
            CsvError::UnknownColumns {
                headers: vec!["Bil".into(), "Färg".into()]
            }
        );
        assert_eq!(error.to_string(), "unknown columns: Bil, Färg");
    }

    #[test]
    fn duplicate_columns_refuse_the_file() {
        let error = read_contracts_csv("Avtalsnummer;lessor;contractNumber\nA;B;C\n".as_bytes())
            .unwrap_err();
        assert_eq!(
            error,
            CsvError::DuplicateColumns {
                headers: vec!["Avtalsnummer".into(), "contractNumber".into()]
            }
        );
    }

    #[test]
    fn whole_file_problems() {
        let error = |bytes: &[u8]| read_contracts_csv(bytes).unwrap_err();
        assert_eq!(error(b""), CsvError::Empty);
        assert_eq!(error(b"\xEF\xBB\xBF\r\n;;;\r\n"), CsvError::Empty);
        assert_eq!(error(b"PK\x03\x04\x14\x00\x06\x00"), CsvError::NotText);
        assert_eq!(
            error(b"\xEF\xBB\xBFcontractNumber\n\xE5\n"),
            CsvError::NotDecodable { encoding: "UTF-8" }
        );
        assert_eq!(error(b"lessor;payment\nX;1\n"), CsvError::NoContractNumber);
        assert_eq!(
            error(b"contractNumber;payment\nX;1\n"),
            CsvError::NoCurrency
        );
        assert_eq!(
            error(b"contractNumber;notes\nA;\"ok\"\nB;\"never closed\nC;x\n"),
            CsvError::UnterminatedQuote { row: 3 }
        );
        assert_eq!(
            error(b"contractNumber;\"notes\nA;x\n"),
            CsvError::UnterminatedQuote { row: 1 }
        );
    }

    #[test]
    fn too_many_rows_refuse_the_file() {
        let mut text = String::from("contractNumber\n");
        for _ in 0..=MAX_ROWS {
            text.push_str("A\n");
        }
        assert_eq!(
            read_contracts_csv(text.as_bytes()).unwrap_err(),
            CsvError::TooManyRows { max: MAX_ROWS }
        );
    }

    #[test]
    fn ragged_rows_are_row_issues() {
        let file = read(
            "contractNumber;lessor;description;\n\
             A;B;C;\n\
             B;only two\n\
             C;B;C;;;\n\
             D;B;C;;x\n\
             E;B;C;stray\n",
        );
        let rows: Vec<_> = file.rows.iter().map(|r| (r.row, issues(r))).collect();
        let ragged = FieldIssue::InvalidType {
            expected: "4 columns".into(),
        };
        assert_eq!(
            rows,
            [
                (2, vec![]),
                (3, vec![("", &ragged)]),
                (4, vec![]),
                (5, vec![("", &ragged)]),
                (6, vec![("", &FieldIssue::UnknownField)]),
            ]
        );
        assert_eq!(value(&file.rows[1].contract.lessor), Some("only two"));
    }

    #[test]
    fn sep_line_names_the_delimiter() {
        let file = read("sep=,\r\ncontractNumber,payment,currency\r\nA,\"1,000.5\",SEK\r\n");
        assert_eq!(file.delimiter, ',');
        assert_eq!(file.rows[0].row, 2);
        assert_eq!(
            money(&file.rows[0].contract.payment),
            Some((100_050, "SEK"))
        );
    }

    #[test]
    fn the_delimiter_is_the_one_that_finds_known_columns() {
        // Only the header decides; the data's decimal commas do not vote for `,`.
        let file = read("Avtalsnummer;Ränta (%)\nA;4,95\n");
        assert_eq!(file.delimiter, ';');
        assert_eq!(read("contractNumber\tlessor\nA\tB\n").delimiter, '\t');
        assert_eq!(read("Contract number,Lessor\nA,B\n").delimiter, ',');
    }

    #[test]
    fn reads_a_hundred_thousand_rows() {
        let rows = 100_000;
        let mut text = format!("{SWEDISH_HEADER}\r\n");
        for index in 0..rows {
            text.push_str(&format!(
                "LC-{index};Nordea Finans Sverige AB;Volvo XC60;vehicle;ABC{index};4100;\
                 2024-01-15;2027-01-14;;active;6 899,00;SEK;monthly;advance;150 000,00;4,95;\
                 SWESTR + 1,85;4,95;187 234,17\r\n"
            ));
        }
        let bytes = windows_1252(&text);
        let started = std::time::Instant::now();
        let file = read_contracts_csv(&bytes).unwrap();
        let elapsed = started.elapsed();
        println!("read {rows} rows ({} bytes) in {elapsed:?}", bytes.len());
        assert_eq!(file.rows.len(), rows);
        assert_eq!(file.rows[rows - 1].row, rows + 1);
        assert!(file.rows.iter().all(|r| r.issues.is_empty()));
    }
}
