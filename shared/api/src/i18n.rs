//! Localized messages. Each language is a flat JSON catalog in `locales/`, compiled in;
//! a unit test holds every catalog to the English keys and placeholders.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The languages the product speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    #[default]
    En,
    Sv,
    Da,
    Nb,
    Fi,
    Lt,
    Lv,
    Et,
}

impl Lang {
    pub const ALL: [Lang; 8] = [
        Lang::En,
        Lang::Sv,
        Lang::Da,
        Lang::Nb,
        Lang::Fi,
        Lang::Lt,
        Lang::Lv,
        Lang::Et,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Sv => "sv",
            Lang::Da => "da",
            Lang::Nb => "nb",
            Lang::Fi => "fi",
            Lang::Lt => "lt",
            Lang::Lv => "lv",
            Lang::Et => "et",
        }
    }

    fn catalog_source(self) -> &'static str {
        match self {
            Lang::En => include_str!("../locales/en.json"),
            Lang::Sv => include_str!("../locales/sv.json"),
            Lang::Da => include_str!("../locales/da.json"),
            Lang::Nb => include_str!("../locales/nb.json"),
            Lang::Fi => include_str!("../locales/fi.json"),
            Lang::Lt => include_str!("../locales/lt.json"),
            Lang::Lv => include_str!("../locales/lv.json"),
            Lang::Et => include_str!("../locales/et.json"),
        }
    }

    /// Whether numbers are written with a decimal comma (and CSV fields then separated
    /// by semicolons, as Excel expects in these locales).
    pub fn decimal_comma(self) -> bool {
        self != Lang::En
    }

    /// The best language for an `Accept-Language` header; English when nothing matches.
    /// Norwegian `no` and `nn` are served Bokmål.
    pub fn negotiate(accept_language: Option<&str>) -> Lang {
        let Some(header) = accept_language else {
            return Lang::En;
        };
        // `parse` orders the ranges by quality; the first we speak wins ("sv-SE" is "sv").
        accept_language::parse(header)
            .iter()
            .find_map(|range| Lang::from_code(range))
            .unwrap_or_default()
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        let primary = code.split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "no" | "nn" => Some(Lang::Nb),
            other => Lang::ALL.into_iter().find(|lang| lang.code() == other),
        }
    }
}

/// The caller's language from `Accept-Language`, as a handler argument.
/// The caller's chosen language, put on a response so that its problem document is
/// rendered in it whatever `Accept-Language` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreferredLang(pub Lang);

/// The caller's chosen language when they set one, else `Accept-Language`.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        if let Some(lang) = parts
            .extensions
            .get::<crate::Caller>()
            .and_then(|caller| caller.language)
        {
            return Ok(lang);
        }
        Ok(Lang::negotiate(
            parts
                .headers
                .get(axum::http::header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        ))
    }
}

type Catalog = HashMap<String, String>;

fn catalog(lang: Lang) -> &'static Catalog {
    static CATALOGS: OnceLock<HashMap<Lang, Catalog>> = OnceLock::new();
    let catalogs = CATALOGS.get_or_init(|| {
        Lang::ALL
            .into_iter()
            .map(|lang| {
                // The catalogs are compiled in and checked by tests; an unreadable one
                // is a build defect, caught before release.
                let catalog: Catalog =
                    serde_json::from_str(lang.catalog_source()).unwrap_or_default();
                (lang, catalog)
            })
            .collect()
    });
    &catalogs[&lang]
}

/// The message for `key` in `lang` with `{name}` placeholders filled from `params`.
/// Falls back to English, then to the key itself, so a message is never empty.
pub fn message(lang: Lang, key: &str, params: &[(&str, String)]) -> String {
    let template = catalog(lang)
        .get(key)
        .or_else(|| catalog(Lang::En).get(key))
        .map(String::as_str)
        .unwrap_or(key);
    let mut text = template.to_owned();
    for (name, value) in params {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text
}

/// Checks every catalog of a set against the English one, for the tests of each set
/// (these messages, and the mails').
#[cfg(test)]
pub(crate) mod catalog_checks {
    use super::Lang;
    use std::collections::{BTreeSet, HashMap};

    /// The `{name}` placeholders of a text.
    pub fn placeholders(text: &str) -> BTreeSet<String> {
        text.split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
            .collect()
    }

    /// Every language has every English key, with the same placeholders and a text.
    pub fn assert_complete(catalog: impl Fn(Lang) -> HashMap<String, String>) {
        let english = catalog(Lang::En);
        assert!(!english.is_empty());
        let expected: BTreeSet<_> = english.keys().collect();
        for lang in Lang::ALL {
            let translated = catalog(lang);
            let keys: BTreeSet<_> = translated.keys().collect();
            assert_eq!(keys, expected, "keys of {}", lang.code());
            for (key, text) in &english {
                assert_eq!(
                    placeholders(&translated[key]),
                    placeholders(text),
                    "placeholders of {key} in {}",
                    lang.code()
                );
                assert!(
                    !translated[key].trim().is_empty(),
                    "{key} empty in {}",
                    lang.code()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_has_every_english_message_with_its_placeholders() {
        catalog_checks::assert_complete(|lang| {
            serde_json::from_str(lang.catalog_source())
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", lang.code()))
        });
    }

    #[test]
    fn negotiation() {
        assert_eq!(Lang::negotiate(None), Lang::En);
        assert_eq!(Lang::negotiate(Some("sv-SE,sv;q=0.9,en;q=0.8")), Lang::Sv);
        assert_eq!(Lang::negotiate(Some("de-DE, fi;q=0.5")), Lang::Fi);
        assert_eq!(Lang::negotiate(Some("no")), Lang::Nb);
        assert_eq!(Lang::negotiate(Some("de")), Lang::En);
        assert_eq!(Lang::negotiate(Some("en;q=0.1, lt;q=0.9")), Lang::Lt);
        assert_eq!(Lang::negotiate(Some("garbage;;;")), Lang::En);
    }

    #[test]
    fn messages_fill_placeholders() {
        assert_eq!(
            message(Lang::En, "field.too_long", &[("max", "64".into())]),
            "Must be at most 64 characters long."
        );
        assert_eq!(message(Lang::Sv, "no.such.key", &[]), "no.such.key");
    }
}
