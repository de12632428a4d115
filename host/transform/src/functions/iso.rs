//! Code conversions: convertCountryCode (ISO 3166-1), convertCountryRegion
//! (ISO 3166-2), convertLocaleCode (BCP 47 / ISO 639) and convertTimezoneCode
//! (SAP / IANA, the table published in SAP's documentation).
//!
//! Country data comes from the `rust_iso3166` crate (all ISO 3166-1 and
//! 3166-2 entries); full names prefer the short English names of SAP Cloud
//! Identity's country master data (`United States`, not `United States of
//! America`), which is what SAP's example shows.

use std::collections::HashMap;
use std::sync::LazyLock;

use rust_iso3166::CountryCode;
use serde_json::{Map, Value};

use super::Params;
use crate::error::ValidationError;

/// SAP Cloud Identity master data `Countries.properties` (alpha2=name).
const IAS_COUNTRIES: &str = include_str!("../data/countries-ias.txt");
/// SAP's documented timezone table (`SAPCODE,IANA`, first entry wins).
const TIMEZONES: &str = include_str!("../data/timezones.csv");

struct Countries {
    by_key: HashMap<String, &'static CountryCode>,
    sap_names: HashMap<&'static str, &'static str>,
}

static COUNTRIES: LazyLock<Countries> = LazyLock::new(|| {
    let mut by_key = HashMap::new();
    let mut sap_names = HashMap::new();
    for c in rust_iso3166::ALL {
        by_key.insert(c.alpha2.to_lowercase(), c);
        by_key.insert(c.alpha3.to_lowercase(), c);
        by_key.insert(format!("{:03}", c.numeric), c);
        by_key.insert(c.numeric.to_string(), c);
        by_key.insert(c.name.to_lowercase(), c);
    }
    for line in IAS_COUNTRIES.lines() {
        if let Some((code, name)) = line.split_once('=') {
            let (code, name) = (code.trim(), name.trim());
            if let Some(c) = rust_iso3166::ALL.iter().find(|c| c.alpha2 == code) {
                by_key.entry(name.to_lowercase()).or_insert(c);
                sap_names.insert(c.alpha2, name);
            }
        }
    }
    Countries { by_key, sap_names }
});

/// Finds a country by alpha-2, alpha-3, numeric code or English name (any case).
pub(crate) fn country_lookup(s: &str) -> Option<&'static CountryCode> {
    COUNTRIES.by_key.get(&s.trim().to_lowercase()).copied()
}

fn full_name(c: &CountryCode) -> &'static str {
    COUNTRIES.sap_names.get(c.alpha2).copied().unwrap_or(c.name)
}

/// SAP timezone table rows in documented order.
pub(crate) fn timezone_table() -> &'static [(&'static str, &'static str)] {
    static TABLE: LazyLock<Vec<(&'static str, &'static str)>> = LazyLock::new(|| {
        TIMEZONES
            .lines()
            .filter_map(|l| l.split_once(','))
            .map(|(s, i)| (s.trim(), i.trim()))
            .collect()
    });
    &TABLE
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CountryFormat {
    FullName,
    Alpha2,
    Alpha3,
    Numeric,
}

#[derive(Debug)]
pub(crate) enum IsoFn {
    Country {
        format: CountryFormat,
        inputs: Vec<String>,
        output: String,
    },
    Region {
        full_name: bool,
        inputs: Vec<String>,
        output: String,
    },
    Locale {
        bcp47: bool,
    },
    Timezone {
        iana: bool,
    },
}

fn string_list(p: &mut Params, key: &'static str) -> Result<Vec<String>, ValidationError> {
    let loc = p.loc(key);
    match p.required(key)? {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| loc.err("must hold strings"))
            })
            .collect(),
        _ => Err(loc.err("must be a string or a non-empty array of strings")),
    }
}

impl IsoFn {
    pub(crate) fn parse(name: &str, p: &mut Params) -> Result<IsoFn, ValidationError> {
        let format = p.required_string("outputFormat")?;
        let bad = |p: &Params, allowed: &str| p.loc("outputFormat").err(format!("must be one of {allowed}"));
        Ok(match name {
            "convertCountryCode" => IsoFn::Country {
                format: match format.as_str() {
                    "fullName" => CountryFormat::FullName,
                    "alpha2" => CountryFormat::Alpha2,
                    "alpha3" => CountryFormat::Alpha3,
                    "numeric" => CountryFormat::Numeric,
                    _ => return Err(bad(p, "fullName, alpha2, alpha3, numeric")),
                },
                inputs: string_list(p, "inputAttributes")?,
                output: p.required_string("outputAttribute")?,
            },
            "convertCountryRegion" => IsoFn::Region {
                full_name: match format.as_str() {
                    "fullName" => true,
                    "alpha2" => false,
                    _ => return Err(bad(p, "fullName, alpha2")),
                },
                inputs: string_list(p, "inputAttributes")?,
                output: p.required_string("outputAttribute")?,
            },
            "convertLocaleCode" => IsoFn::Locale {
                bcp47: match format.as_str() {
                    "bcp47" => true,
                    "iso639" => false,
                    _ => return Err(bad(p, "bcp47, iso639")),
                },
            },
            _ => IsoFn::Timezone {
                iana: match format.as_str() {
                    "iana" => true,
                    "sap" => false,
                    _ => return Err(bad(p, "iana, sap")),
                },
            },
        })
    }

    /// The value to use when the source has none (only timezones have one).
    pub(crate) fn on_missing(&self) -> Option<Value> {
        match self {
            IsoFn::Timezone { iana } => Some(Value::String(timezone_default(*iana).into())),
            _ => None,
        }
    }

    /// Converts a value (a string, or the attributes of an address map).
    /// Unknown countries and regions pass unchanged.
    pub(crate) fn apply(&self, v: Value) -> Value {
        match self {
            IsoFn::Country { format, inputs, output } => match v {
                Value::Object(mut o) => {
                    let found = inputs
                        .iter()
                        .filter_map(|k| o.get(k).and_then(Value::as_str))
                        .find_map(country_lookup);
                    if let Some(c) = found {
                        o.insert(output.clone(), country_value(c, *format));
                    }
                    Value::Object(o)
                }
                Value::String(s) => country_lookup(&s).map_or(Value::String(s), |c| country_value(c, *format)),
                other => other,
            },
            IsoFn::Region {
                full_name,
                inputs,
                output,
            } => match v {
                Value::Object(mut o) => {
                    if let Some(r) = region(&o, inputs, output, *full_name) {
                        o.insert(output.clone(), Value::String(r));
                    }
                    Value::Object(o)
                }
                Value::String(s) => {
                    let code = rust_iso3166::iso3166_2::from_code(&s.to_uppercase());
                    match code {
                        Some(sd) if *full_name => Value::String(sd.name.into()),
                        Some(sd) => Value::String(sd.code.into()),
                        None => Value::String(s),
                    }
                }
                other => other,
            },
            IsoFn::Locale { bcp47 } => match v {
                Value::String(s) => Value::String(locale(&s, *bcp47)),
                other => other,
            },
            IsoFn::Timezone { iana } => match v {
                Value::String(s) => Value::String(timezone(&s, *iana).to_string()),
                _ => Value::String(timezone_default(*iana).into()),
            },
        }
    }
}

fn country_value(c: &CountryCode, f: CountryFormat) -> Value {
    Value::String(match f {
        CountryFormat::FullName => full_name(c).to_string(),
        CountryFormat::Alpha2 => c.alpha2.to_string(),
        CountryFormat::Alpha3 => c.alpha3.to_string(),
        CountryFormat::Numeric => format!("{:03}", c.numeric),
    })
}

/// The region of an address map: `US-AL`, or `AL` with the country from
/// the other input attribute; also accepts the subdivision's name.
fn region(o: &Map<String, Value>, inputs: &[String], output: &str, full_name: bool) -> Option<String> {
    let region_key = inputs.iter().find(|k| *k == output).map_or(output, |k| k.as_str());
    let region = o.get(region_key)?.as_str()?.trim();
    let country = inputs
        .iter()
        .filter(|k| k.as_str() != region_key)
        .filter_map(|k| o.get(k).and_then(Value::as_str))
        .find_map(country_lookup);
    let sd = rust_iso3166::iso3166_2::from_code(&region.to_uppercase()).or_else(|| {
        let c = country?;
        rust_iso3166::iso3166_2::from_code(&format!("{}-{}", c.alpha2, region.to_uppercase())).or_else(|| {
            c.subdivisions()?
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(region))
                .copied()
        })
    })?;
    Some(if full_name {
        sd.name.to_string()
    } else {
        sd.code.to_string()
    })
}

/// ISO 639 languages with a defined mapping and the region their BCP 47 tag
/// defaults to. Others become English, as SAP documents. (The region choice
/// is ours where SAP is silent: the language's main country.)
const LANGUAGES: &[(&str, &str)] = &[
    ("af", "ZA"),
    ("ar", "SA"),
    ("be", "BY"),
    ("bg", "BG"),
    ("bn", "BD"),
    ("ca", "ES"),
    ("cs", "CZ"),
    ("cy", "GB"),
    ("da", "DK"),
    ("de", "DE"),
    ("el", "GR"),
    ("en", "US"),
    ("es", "ES"),
    ("et", "EE"),
    ("eu", "ES"),
    ("fa", "IR"),
    ("fi", "FI"),
    ("fr", "FR"),
    ("ga", "IE"),
    ("gl", "ES"),
    ("gu", "IN"),
    ("he", "IL"),
    ("hi", "IN"),
    ("hr", "HR"),
    ("hu", "HU"),
    ("hy", "AM"),
    ("id", "ID"),
    ("is", "IS"),
    ("it", "IT"),
    ("ja", "JP"),
    ("ka", "GE"),
    ("kk", "KZ"),
    ("km", "KH"),
    ("kn", "IN"),
    ("ko", "KR"),
    ("lo", "LA"),
    ("lt", "LT"),
    ("lv", "LV"),
    ("mk", "MK"),
    ("ml", "IN"),
    ("mr", "IN"),
    ("ms", "MY"),
    ("mt", "MT"),
    ("my", "MM"),
    ("ne", "NP"),
    ("nl", "NL"),
    ("no", "NO"),
    ("pa", "IN"),
    ("pl", "PL"),
    ("pt", "PT"),
    ("ro", "RO"),
    ("ru", "RU"),
    ("sk", "SK"),
    ("sl", "SI"),
    ("sq", "AL"),
    ("sr", "RS"),
    ("sv", "SE"),
    ("sw", "KE"),
    ("ta", "IN"),
    ("te", "IN"),
    ("th", "TH"),
    ("tl", "PH"),
    ("tr", "TR"),
    ("uk", "UA"),
    ("ur", "PK"),
    ("uz", "UZ"),
    ("vi", "VN"),
    ("zh", "CN"),
    ("zu", "ZA"),
];

/// Identity Authentication's language codes that carry a region.
const IAS_REGIONAL: &[&str] = &["zh_TW", "fr_CA", "pt_BR", "es_MX", "en_GB"];

fn locale(s: &str, bcp47: bool) -> String {
    let norm = s.trim().replace('-', "_");
    let mut parts = norm.split('_');
    let mut lang = parts.next().unwrap_or("").to_ascii_lowercase();
    if lang == "iw" {
        lang = "he".into(); // Java's legacy code for Hebrew
    }
    let region = parts.next().map(str::to_ascii_uppercase).filter(|r| !r.is_empty());
    let Some(&(lang, default_region)) = LANGUAGES.iter().find(|(l, _)| *l == lang) else {
        return if bcp47 { "en-US".into() } else { "EN".into() };
    };
    if bcp47 {
        let region = region.as_deref().unwrap_or(default_region);
        format!("{lang}-{region}")
    } else {
        let regional = region.map(|r| format!("{lang}_{r}"));
        match regional.filter(|r| IAS_REGIONAL.contains(&r.as_str())) {
            Some(r) => r,
            None => lang.to_ascii_uppercase(),
        }
    }
}

fn timezone_default(iana: bool) -> &'static str {
    if iana { "Europe/Berlin" } else { "CET" }
}

/// SAP code or IANA name → the requested format; the first table row of a
/// SAP code is its default IANA zone, so `Europe/Paris` → iana gives `Europe/Berlin`.
fn timezone(s: &str, iana: bool) -> &'static str {
    let t = timezone_table();
    let s = s.trim();
    let sap = t
        .iter()
        .find(|(sap, _)| *sap == s)
        .or_else(|| t.iter().find(|(_, z)| *z == s))
        .or_else(|| t.iter().find(|(sap, _)| sap.eq_ignore_ascii_case(s)))
        .or_else(|| t.iter().find(|(_, z)| z.eq_ignore_ascii_case(s)))
        .map(|(sap, _)| *sap);
    match (sap, iana) {
        (None, _) => timezone_default(iana),
        (Some(sap), false) => sap,
        (Some(sap), true) => t
            .iter()
            .find(|(c, _)| *c == sap)
            .map_or(timezone_default(true), |(_, z)| z),
    }
}
