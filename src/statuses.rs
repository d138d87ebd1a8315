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
        // Keys match case-insensitively, trimmed: two of one table that meet there would leave
        // one of them in force by byte order, without a word.
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for (raw, target) in table {
            let code = canonical_code(target).ok_or_else(|| {
                Error::Config(format!(
                    "{origin}: {raw:?} maps to {target:?}, which is neither a milestone, an exception nor SCAN"
                ))
            })?;
            let key = normal(raw);
            if key.is_empty() {
                return Err(Error::Config(format!("{origin}: an empty status key")));
            }
            // A prefix of nothing would map every status that is not listed.
            if key == "*" {
                return Err(Error::Config(format!(
                    "{origin}: {raw:?} is a prefix key of no prefix, which would map every status; list the statuses, or \
                     prefixes such as \"Exception_*\""
                )));
            }
            if let Some(other) = seen.insert(key.clone(), raw) {
                return Err(Error::Config(format!(
                    "{origin}: {other:?} and {raw:?} are the same status (keys match ignoring case, surrounding spaces and marks no one sees); keep one"
                )));
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
        let key = normal(raw);
        if let Some(&c) = self.exact.get(&key) {
            return Some(c);
        }
        self.prefixes.iter().find(|(p, _)| key.starts_with(p.as_str())).map(|(_, c)| *c)
    }
}

/// How a status and a key are compared: without the marks no one sees (a byte-order mark or
/// zero-width space a feed put in front, bidirectional marks, controls: `error::hidden`),
/// trimmed, in lower case. `"\u{feff}PICKED_UP"` was an unmapped scan, and the warning, which
/// hides such marks, called it `"PICKED_UP"`.
fn normal(raw: &str) -> String {
    let visible: String = raw.chars().filter(|&c| !crate::error::hidden(c)).collect();
    visible.trim().to_lowercase()
}

/// A suggested mapping for an unmapped status, from words in it (a person reviews it). Words
/// match whole, or by their start for stems (`return…`), never inside another word: "signed"
/// matched "Consigned to airline". The terminal statuses come only from words that say the
/// parcel's journey ended: "deliver" alone suggested DELIVERED for "Delivery delayed",
/// "Delivery exception", "Arrived at delivery facility" and "Undeliverable - returned to
/// sender", "sender" alone RETURNED for "Picked up from sender", and "missing" LOST for "Held
/// by customs: documents missing"; each would close parcels still in flight.
pub fn suggest(raw: &str) -> (&'static str, &'static str) {
    let lower = raw.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let word = |w: &str| words.contains(&w);
    let stem = |st: &str| words.iter().any(|w| w.starts_with(st));
    // A phrase of whole words, in order and adjacent.
    let phrase = |p: &str| {
        let p: Vec<&str> = p.split(' ').collect();
        words.windows(p.len()).any(|w| w == p.as_slice())
    };
    // What the parcel was handed to, after "delivered to" or "collected by": a carrier or a
    // facility on the way is a scan in transit, not the end of the journey.
    let in_transit = [
        "airline",
        "carrier",
        "courier",
        "driver",
        "agent",
        "hub",
        "facility",
        "depot",
        "warehouse",
        "airport",
        "terminal",
        "partner",
    ];
    // Within the three words after the lead ("delivered to the sorting hub").
    let handed_on = |lead: &str| {
        let lead: Vec<&str> = lead.split(' ').collect();
        (0..words.len()).any(|i| {
            words[i..].starts_with(&lead) && words[i + lead.len()..].iter().take(3).any(|w| in_transit.contains(w))
        })
    };
    if phrase("out for delivery") || word("outfordelivery") || phrase("with courier") || phrase("on vehicle") {
        ("OUT_FOR_DELIVERY", "the words say out for delivery")
    } else if stem("return") || phrase("to sender") {
        ("RETURNED", "the words say returned")
    } else if stem("fail")
        || stem("attempt")
        || phrase("not home")
        || stem("unsuccessful")
        || word("missed")
        || stem("undeliver")
        || phrase("not delivered")
    {
        ("DELIVERY_FAILED", "the words say a delivery attempt failed")
    } else if (stem("held") || stem("hold") || word("duty") || word("duties") || stem("tax")) && stem("custom") {
        ("CUSTOMS_HOLD", "the words say held by customs")
    } else if word("lost") || (word("missing") && !stem("document")) || stem("destroy") {
        ("LOST", "the words say lost")
    } else if stem("exception") || stem("damage") || stem("delay") || stem("problem") {
        ("EXCEPTION", "the words say an exception")
    } else if (word("delivered") && !handed_on("delivered to"))
        || word("signed")
        || (phrase("collected by") && !handed_on("collected by"))
    {
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
        // Regression: marks no one sees kept a status from its mapping.
        for marked in ["\u{feff}DELIVERED", "DELIVE\u{200b}RED", "\u{202e}delivered\u{2069}"] {
            assert_eq!(v.resolve(marked), Some(schema::DELIVERED), "{marked:?}");
        }
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
        // Keys of nothing: an empty one, and a prefix of no prefix (once reported as empty).
        let e = Vocabulary::from_config(&cfg("", &[(" ", "SCAN")])).unwrap_err().to_string();
        assert!(e.contains("an empty status key"), "{e}");
        let e = Vocabulary::from_config(&cfg("", &[("*", "DELIVERED")])).unwrap_err().to_string();
        assert!(e.contains("\"*\" is a prefix key of no prefix"), "{e}");
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
        // Regression: words inside other words, and words that do not end a journey, suggested
        // terminal statuses for parcels in flight.
        assert_eq!(suggest("Consigned to airline").0, "SCAN");
        assert_eq!(suggest("Delivered to airline").0, "SCAN");
        assert_eq!(suggest("Delivered to the sorting hub").0, "SCAN");
        assert_eq!(suggest("Picked up from sender").0, "SCAN");
        assert_eq!(suggest("Shipment information received from sender").0, "SCAN");
        assert_eq!(suggest("Collected by courier").0, "SCAN");
        assert_eq!(suggest("Held by customs: documents missing").0, "CUSTOMS_HOLD");
        assert_eq!(suggest("Collected by recipient").0, "DELIVERED");
        assert_eq!(suggest("Signed for by J. Smith").0, "DELIVERED");
        assert_eq!(suggest("Parcel lost in transit").0, "LOST");
        assert_eq!(suggest("Returned to sender").0, "RETURNED");
        assert_eq!(suggest("Item sent back to sender").0, "RETURNED");
        assert_eq!(suggest("OUT_FOR_DELIVERY_01").0, "OUT_FOR_DELIVERY");
    }

    /// Regression: `"Picked_Up" = "SCAN"` beside `"PICKED_UP" = "ARRIVED"` left one in force by
    /// byte order, without a word.
    #[test]
    fn keys_of_one_table_that_match_alike_are_refused() {
        let e = Vocabulary::from_config(&cfg("", &[("Picked_Up", "SCAN"), ("PICKED_UP ", "ARRIVED")])).unwrap_err();
        assert_eq!(e.exit_code(), 78);
        assert!(e.to_string().contains("Picked_Up") && e.to_string().contains("PICKED_UP "), "{e}");
        assert!(Vocabulary::from_config(&cfg("", &[("x*", "SCAN"), ("X*", "LOST")])).is_err());
        // The config over a preset is an override, not a clash.
        assert!(Vocabulary::from_config(&cfg("aftership", &[("delivered_003", "SCAN")])).is_ok());
    }
}
