//! A sharded night's alerts (`rounds`, round `score`). Each part (shard) sends its scored rows,
//! its share of the per-seller cap (`rules::cap_share`: per seller, how many alerts it raised
//! and its first `max_per_seller` in the cap's order, which are all the cap over the network
//! needs), the reasons and actions of those, its sellers' exposure on disrupted lanes, and
//! where the previous run's alerted shipments it has stand tonight. The merge gives
//! `scores.parquet`, `alerts.parquet`, `recovered.parquet`, `lane_alerts.parquet` and
//! `capped_alerts.parquet` (from every alert each part raised) exactly as
//! `alerts::build` gives them on the whole network, through the same frame builders.

use std::collections::{BTreeMap, HashSet};

use polars::prelude::*;

use super::rules::{self, CapKey, CapShare};
use super::{
    Alert, AlertColumns, AlertKind, Capped, Exposure, Previous, Recovery, Severity, alerted_by_lane, alerts_frame,
    capped_frame, decide, exposure, lane_alerts_frame, recovered_frame, recovery, scores_frame, written_risk,
};
use crate::calendar::Night;
use crate::codec::{Codec, Reader};
use crate::config::AlertConfig;
use crate::error::{Error, Result};
use crate::features::FeatureSet;

/// One part's alerts, before the per-seller cap.
pub struct AlertShare {
    /// Its rows of `scores.parquet`, by shipment_id.
    pub scores: DataFrame,
    pub cap: CapShare,
    /// Reasons and action of the alerts in `cap`, by shipment id.
    pub details: BTreeMap<String, (String, String)>,
    pub exposure: Vec<Exposure>,
    /// Where the previous run's alerted shipments this part has stand tonight, by shipment id.
    pub recovery: BTreeMap<String, Recovery>,
    /// Every alert the part raised, kept by the cap or not: those the cap cuts are
    /// `capped_alerts.parquet`, and none of them has recovered.
    pub raised: Vec<Capped>,
}
crate::codec_struct!(AlertShare { scores, cap, details, exposure, recovery, raised });
crate::codec_struct!(Capped { shipment_id, seller_id, kind, severity });

/// The alert outputs of the whole network, from every part's share.
pub struct Merged {
    pub scores: DataFrame,
    pub alerts: DataFrame,
    pub recovered: DataFrame,
    pub lane_alerts: DataFrame,
    /// Alerts dropped by the per-seller cap, per seller_id.
    pub suppressed: BTreeMap<String, u64>,
    /// `capped_alerts.parquet`.
    pub capped: DataFrame,
}
crate::codec_struct!(Merged { scores, alerts, recovered, lane_alerts, suppressed, capped });

/// A part's share: `risk` is the model's risk of each of its scoring rows.
pub fn share(fs: &FeatureSet, risk: &[f64], cfg: &AlertConfig, prev: &Previous) -> Result<AlertShare> {
    let risk = written_risk(fs, risk);
    let scores = scores_frame(fs, &risk)?;
    let p = &fs.prep;
    let ids = p.shipments.column("shipment_id")?.str()?;
    let names = p.seller_names();
    let alerts: Vec<Alert> = (0..risk.len()).filter_map(|r| decide(fs, r, risk[r], cfg)).collect();
    let id = |a: &Alert| ids.get(a.ship as usize).unwrap_or("").to_string();
    let cap = rules::cap_share(
        alerts.iter().map(|a| {
            let key = CapKey { severity: a.severity, risk: risk[a.row], kind: a.kind, shipment_id: id(a) };
            (names[p.seller[a.ship as usize] as usize].clone(), key)
        }),
        cfg.max_per_seller,
    );
    let sent: HashSet<&str> =
        cap.sellers.values().flat_map(|(_, keys)| keys.iter().map(|k| k.shipment_id.as_str())).collect();
    let details = alerts
        .iter()
        .map(|a| (id(a), a))
        .filter(|(i, _)| sent.contains(i.as_str()))
        .map(|(i, a)| (i, (a.reasons.clone(), a.action.clone())))
        .collect();
    let recovery =
        prev.alerts.keys().filter_map(|i| fs.find_shipment(i).map(|k| (i.clone(), recovery(fs, k)))).collect();
    let raised = alerts
        .iter()
        .map(|a| Capped {
            shipment_id: id(a),
            seller_id: names[p.seller[a.ship as usize] as usize].clone(),
            kind: a.kind,
            severity: a.severity,
        })
        .collect();
    Ok(AlertShare { scores, cap, details, exposure: exposure(fs), recovery, raised })
}

/// The whole network's alert outputs from every part's share.
pub fn merge(shares: Vec<AlertShare>, cfg: &AlertConfig, prev: &Previous, night: Night) -> Result<Merged> {
    let mut frames = Vec::with_capacity(shares.len());
    let (mut caps, mut details, mut exposures, mut recoveries) = (vec![], BTreeMap::new(), vec![], BTreeMap::new());
    let mut raised = Vec::new();
    for s in shares {
        frames.push(s.scores);
        caps.push(s.cap);
        details.extend(s.details);
        exposures.extend(s.exposure);
        recoveries.extend(s.recovery);
        raised.extend(s.raised);
    }
    let keys: BTreeMap<String, CapKey> = caps
        .iter()
        .flat_map(|c| c.sellers.values().flat_map(|(_, k)| k.iter()))
        .map(|k| (k.shipment_id.clone(), k.clone()))
        .collect();
    let (kept, suppressed) = rules::cap_across_parts(caps, cfg.max_per_seller);
    let scores = crate::io::stacked(frames, &["shipment_id"])?;

    // The kept alerts in scoring-row order, which is shipment_id order.
    let ids = scores.column("shipment_id")?.str()?;
    let mut cols = Vec::with_capacity(kept.len());
    for (row, id) in ids.iter().enumerate() {
        let Some(id) = id.filter(|id| kept.contains(*id)) else { continue };
        let key = &keys[id];
        let (reasons, action) =
            details.get(id).ok_or_else(|| Error::internal(format!("alerts: no reasons sent for kept alert {id}")))?;
        cols.push(AlertColumns {
            row,
            kind: key.kind,
            severity: key.severity,
            reasons,
            action,
            first_alerted_on: prev.alerts.get(id).map(|x| x.first_alerted_on).unwrap_or(night.as_of_day()),
        });
    }
    let alerts = alerts_frame(&scores, &cols)?;
    // Every alert raised tonight, kept or cut by the cap: none of them has recovered.
    let alerted: HashSet<&str> = raised.iter().map(|c| c.shipment_id.as_str()).collect();
    let recovered = recovered_frame(prev, &alerted, |id| recoveries.get(id).cloned())?;
    let col = |c: &str| -> Result<StringChunked> { Ok(alerts.column(c)?.str()?.clone()) };
    let (o, d, s, seller) = (col("origin")?, col("destination")?, col("service")?, col("seller_id")?);
    fn at(c: &StringChunked, k: usize) -> &str {
        c.get(k).unwrap_or("")
    }
    let by_lane = alerted_by_lane((0..alerts.height()).map(|k| (at(&o, k), at(&d, k), at(&s, k), at(&seller, k))));
    let lane_alerts = lane_alerts_frame(exposures, &by_lane)?;
    let suppressed = suppressed.into_iter().collect();
    raised.retain(|c| !kept.contains(&c.shipment_id));
    let capped = capped_frame(raised, prev, night.as_of_day())?;
    Ok(Merged { scores, alerts, recovered, lane_alerts, suppressed, capped })
}

/// Kinds and severities travel as their place in `ALL`.
macro_rules! codec_enum {
    ($t:ty) => {
        impl Codec for $t {
            fn put(&self, out: &mut Vec<u8>) {
                (<$t>::ALL.iter().position(|x| x == self).expect("in ALL") as u8).put(out);
            }
            fn take(r: &mut Reader<'_>) -> Result<Self> {
                let k = u8::take(r)?;
                <$t>::ALL
                    .get(k as usize)
                    .copied()
                    .ok_or_else(|| Error::internal(format!("exchange: {k} is not a {}", stringify!($t))))
            }
        }
    };
}
codec_enum!(AlertKind);
codec_enum!(Severity);
crate::codec_struct!(CapKey { severity, risk, kind, shipment_id });
crate::codec_struct!(CapShare { sellers });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_severities_round_trip_and_a_bad_one_is_refused() {
        for k in AlertKind::ALL {
            assert_eq!(crate::codec::from_bytes::<AlertKind>(&crate::codec::to_bytes(&k)).unwrap(), k);
        }
        for s in Severity::ALL {
            assert_eq!(crate::codec::from_bytes::<Severity>(&crate::codec::to_bytes(&s)).unwrap(), s);
        }
        assert!(crate::codec::from_bytes::<Severity>(&[3]).is_err());
    }
}
