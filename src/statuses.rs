//! Status vocabularies: how a feed's raw statuses become lanewatch's milestones, exceptions or
//! generic scans. The canonical names always work; a built-in preset (`input.status_preset`,
//! tables in `src/status_presets/`) and the config's `[input.statuses]` add to and override
//! them. Keys match case-insensitively after trimming; a key ending in `*` matches by prefix
//! (an aggregator's subtag family); an exact key beats a prefix, a longer prefix a shorter one.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::config::InputConfig;
use crate::error::{Error, Result};
use crate::schema::{self, UNKNOWN_STATUS};

/// The built-in presets: (name, TOML table with its sources).
pub const PRESETS: &[(&str, &str)] = &[
    ("upu-emsevt", include_str!("status_presets/upu-emsevt.toml")),
    ("aftership", include_str!("status_presets/aftership.toml")),
];

/// What a status becomes once mapped: a milestone or exception code, or `UNKNOWN_STATUS` for a
/// status mapped to `SCAN` on purpose.
pub type Code = u8;

#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    exact: HashMap<String, Code>,
    /// (lower-case prefix, code), longest first.
    prefixes: Vec<(String, Code)>,
    /// Where the mapping came from, for messages: "canonical", a preset's name, or "config".
    pub preset: Option<String>,
}

#[derive(Deserialize)]
struct PresetFile {
    name: String,
    #[allow(dead_code)]
    source: String,
    statuses: BTreeMap<String, String>,
}

/// The code of a canonical status name or `SCAN`, ignoring case.
pub fn canonical_code(name: &str) -> Option<Code> {
    let n = name.trim();
    if n.eq_ignore_ascii_case("SCAN") {
        return Some(UNKNOWN_STATUS);
    }
    let c = schema::status_code(n);
    (c != UNKNOWN_STATUS).then_some(c)
}

/// A preset's table, parsed: raw status → canonical name.
pub fn preset_table(name: &str) -> Result<BTreeMap<String, String>> {
    let Some((_, text)) = PRESETS.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
        return Err(Error::Config(format!("input.status_preset: unknown preset {name:?} ({})", known.join(", "))));
    };
    let file: PresetFile =
        toml::from_str(text).map_err(|e| Error::internal(format!("status preset {name}: {}", e.message())))?;
    debug_assert_eq!(file.name, name);
    Ok(file.statuses)
}

impl Vocabulary {
    /// The canonical names only.
    pub fn canonical() -> Vocabulary {
        let mut v = Vocabulary::default();
        for (i, m) in schema::MILESTONES.iter().enumerate() {
            v.exact.insert(m.to_ascii_lowercase(), i as Code);
        }
        for (i, e) in schema::EXCEPTIONS.iter().enumerate() {
            v.exact.insert(e.to_ascii_lowercase(), schema::CUSTOMS_HOLD + i as Code);
        }
        v
    }

    /// Canonical names, then the configured preset, then `[input.statuses]`.
    pub fn from_config(cfg: &InputConfig) -> Result<Vocabulary> {
        let mut v = Vocabulary::canonical();
        let preset = cfg.status_preset.trim();
        if !preset.is_empty() {
            v.add(&preset_table(preset)?, &format!("status preset {preset}"))?;
            v.preset = Some(preset.to_string());
        }
        v.add(&cfg.statuses, "input.statuses")?;
        Ok(v)
    }

    fn add(&mut self, table: &BTreeMap<String, String>, origin: &str) -> Result<()> {
        for (raw, target) in table {
            let code = canonical_code(target).ok_or_else(|| {
                Error::Config(format!(
                    "{origin}: {raw:?} maps to {target:?}, which is neither a milestone, an exception nor SCAN"
                ))
            })?;
            let key = raw.trim().to_lowercase();
            if key.is_empty() || key == "*" {
                return Err(Error::Config(format!("{origin}: an empty status key")));
            }
            match key.strip_suffix('*') {
                Some(prefix) => {
                    self.prefixes.retain(|(p, _)| p != prefix);
                    self.prefixes.push((prefix.to_string(), code));
                }
                None => {
                    self.exact.insert(key, code);
                }
            }
        }
        self.prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Ok(())
    }

    /// The code of a raw status, or `None` when nothing maps it (it is then a generic scan and
    /// reported as unmapped).
    pub fn resolve(&self, raw: &str) -> Option<Code> {
        let key = raw.trim().to_lowercase();
        if let Some(&c) = self.exact.get(&key) {
            return Some(c);
        }
        self.prefixes.iter().find(|(p, _)| key.starts_with(p.as_str())).map(|(_, c)| *c)
    }
}

/// A suggested mapping for an unmapped status, from words in it (a person reviews it). The
/// terminal DELIVERED comes last and only from words that say it happened: "deliver" alone
/// suggested it for "Delivery delayed", "Delivery exception", "Arrived at delivery facility"
/// and "Undeliverable - returned to sender", which would mark parcels in flight delivered.
pub fn suggest(raw: &str) -> (&'static str, &'static str) {
    let s = raw.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| s.contains(w));
    if has(&["out for delivery", "out_for_delivery", "outfordelivery", "with courier", "on vehicle"]) {
        ("OUT_FOR_DELIVERY", "the words say out for delivery")
    } else if has(&["return", "sender"]) {
        ("RETURNED", "the words say returned")
    } else if has(&["fail", "attempt", "not home", "unsuccessful", "missed", "undeliver", "not deliver"]) {
        ("DELIVERY_FAILED", "the words say a delivery attempt failed")
    } else if has(&["lost", "missing", "destroy"]) {
        ("LOST", "the words say lost")
    } else if has(&["held", "hold", "duty", "tax"]) && has(&["custom"]) {
        ("CUSTOMS_HOLD", "the words say held by customs")
    } else if has(&["exception", "damage", "delay", "problem"]) {
        ("EXCEPTION", "the words say an exception")
    } else if has(&["delivered", "signed", "collected by"]) {
        ("DELIVERED", "the words say delivered")
    } else {
        ("SCAN", "no milestone in the words: a generic scan moves \"last scan\" only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(preset: &str, pairs: &[(&str, &str)]) -> InputConfig {
        InputConfig {
            status_preset: preset.into(),
            statuses: pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            ..InputConfig::default()
        }
    }

    #[test]
    fn canonical_names_exact_prefix_and_overrides() {
        let v = Vocabulary::from_config(&cfg(
            "aftership",
            &[("InTransit_005", "IMPORT_CLEARED"), ("Custom_*", "SCAN"), ("custom_hold*", "CUSTOMS_HOLD")],
        ))
        .unwrap();
        assert_eq!(v.resolve(" delivered "), Some(schema::DELIVERED));
        assert_eq!(v.resolve("delivered_003"), Some(schema::DELIVERED));
        // The config overrides the preset's judgement.
        assert_eq!(v.resolve("InTransit_005"), Some(6));
        // A subtag the table does not list falls back to its tag family.
        assert_eq!(v.resolve("Exception_099"), Some(schema::EXCEPTION));
        // Longer prefixes win; SCAN is mapped, not unmapped.
        assert_eq!(v.resolve("CUSTOM_HOLD_2"), Some(schema::CUSTOMS_HOLD));
        assert_eq!(v.resolve("custom_note"), Some(UNKNOWN_STATUS));
        assert_eq!(v.resolve("SORTED_AT_DEPOT"), None);
    }

    #[test]
    fn upu_codes_follow_the_stages() {
        let v = Vocabulary::from_config(&cfg("upu-emsevt", &[])).unwrap();
        let seq: Vec<Option<Code>> =
            ["ITMATT", "EMA", "EMB", "EXC", "EMC", "EMD", "EDC", "EDG", "EMI"].iter().map(|s| v.resolve(s)).collect();
        assert_eq!(seq, (0..=8).map(Some).collect::<Vec<_>>());
        assert_eq!(v.resolve("eme"), Some(schema::CUSTOMS_HOLD));
        assert_eq!(v.resolve("EMH"), Some(schema::DELIVERY_FAILED));
    }

    #[test]
    fn bad_presets_and_targets_are_config_errors() {
        assert_eq!(Vocabulary::from_config(&cfg("dhl", &[])).unwrap_err().exit_code(), 78);
        assert_eq!(Vocabulary::from_config(&cfg("", &[("X", "ARRIVING")])).unwrap_err().exit_code(), 78);
        // Every preset parses and maps only to known targets.
        for (name, _) in PRESETS {
            assert!(Vocabulary::from_config(&cfg(name, &[])).is_ok(), "{name}");
            assert!(preset_table(name).unwrap().len() >= 20, "{name}");
        }
    }

    #[test]
    fn suggestions_read_the_words() {
        assert_eq!(suggest("Parcel delivered to neighbour").0, "DELIVERED");
        assert_eq!(suggest("Delivery attempt failed").0, "DELIVERY_FAILED");
        assert_eq!(suggest("Held by customs, duty due").0, "CUSTOMS_HOLD");
        assert_eq!(suggest("SORTED_AT_DEPOT").0, "SCAN");
        assert_eq!(suggest("DELIVERED_TO_LOCKER").0, "DELIVERED");
        // Regression: "deliver" alone suggested DELIVERED for each of these.
        assert_eq!(suggest("Delivery delayed").0, "EXCEPTION");
        assert_eq!(suggest("Delivery exception").0, "EXCEPTION");
        assert_eq!(suggest("Undeliverable - returned to sender").0, "RETURNED");
        assert_eq!(suggest("Undelivered, address unknown").0, "DELIVERY_FAILED");
        assert_eq!(suggest("Arrived at delivery facility").0, "SCAN");
    }
}
