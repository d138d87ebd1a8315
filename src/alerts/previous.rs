//! What the previous night alerted: carried into tonight's `first_alerted_on` and used to find
//! the shipments that recovered.

use std::collections::HashMap;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::error::Result;

/// One alert of the previous night, as its `alerts.parquet` row recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviousAlert {
    pub seller_id: String,
    pub alert: String,
    pub severity: String,
    /// First night alerted, as an as-of day number (a Date column value).
    pub first_alerted_on: i32,
}

/// The previous night's alerts, keyed by shipment_id.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub as_of: Option<NaiveDate>,
    pub alerts: HashMap<String, PreviousAlert>,
}

impl Previous {
    /// From an alerts frame (a run's `alerts.parquet`, or the night before in a backtest): the
    /// one way a night's alerts become the next night's memory. Rows without a shipment_id or
    /// first_alerted_on carry nothing over.
    pub fn from_alerts(df: &DataFrame, as_of: NaiveDate) -> Result<Previous> {
        let mut prev = Previous { as_of: Some(as_of), alerts: HashMap::with_capacity(df.height()) };
        prev.add(df)?;
        Ok(prev)
    }

    /// The same with the night's capped alerts (`capped_alerts.parquet`, its columns those
    /// read here): an alert the per-seller cap cut is still an alert, which a later night
    /// continues (its `first_alerted_on`) or finds recovered.
    pub fn with_capped(mut self, capped: &DataFrame) -> Result<Previous> {
        self.add(capped)?;
        Ok(self)
    }

    /// Adds the rows of an alerts frame; a shipment already known keeps its entry.
    fn add(&mut self, df: &DataFrame) -> Result<()> {
        let id = df.column("shipment_id")?.str()?;
        let seller = df.column("seller_id")?.str()?;
        let alert = df.column("alert")?.str()?;
        let sev = df.column("severity")?.str()?;
        let first = df.column("first_alerted_on")?.as_materialized_series().to_physical_repr().into_owned();
        let first = first.i32()?;
        for k in 0..df.height() {
            let (Some(i), Some(f)) = (id.get(k), first.get(k)) else {
                continue;
            };
            let text = |c: &StringChunked| c.get(k).unwrap_or("").to_string();
            self.alerts.entry(i.to_string()).or_insert_with(|| PreviousAlert {
                seller_id: text(seller),
                alert: text(alert),
                severity: text(sev),
                first_alerted_on: f,
            });
        }
        Ok(())
    }
}
