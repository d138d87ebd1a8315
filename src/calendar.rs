//! Dates and the shipping calendar: the night and its knowledge cutoff, business days and peak
//! days.

use chrono::{Datelike, NaiveDate, Weekday};

use crate::error::{Error, Result};
use crate::schema::MICROS_PER_DAY;

/// One nightly run: the night at the end of day `as_of`. Its knowledge cutoff C is the next
/// midnight, UTC; everything at or after C is invisible to it.
///
/// Two day numbers (days since 1970-01-01) describe a night and are easy to mix up, so every
/// conversion between them lives here: the *cutoff day* (C's day, `as_of` + 1), which daily
/// series are indexed by, and the *as-of day*, which the Date columns of the outputs hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Night {
    as_of: NaiveDate,
}

impl Night {
    pub fn new(as_of: NaiveDate) -> Night {
        Night { as_of }
    }

    /// The night whose cutoff is the start of day number `cutoff_day`.
    pub fn of_cutoff_day(cutoff_day: i64) -> Night {
        Night { as_of: date_of_day(cutoff_day - 1) }
    }

    pub fn as_of(self) -> NaiveDate {
        self.as_of
    }

    /// The knowledge cutoff C in µs since the epoch, UTC.
    pub fn cutoff(self) -> i64 {
        day_start_micros(self.as_of) + MICROS_PER_DAY
    }

    /// Day number of C: the index of this night in daily series.
    pub fn cutoff_day(self) -> i64 {
        day_index(self.cutoff())
    }

    /// Day number of the as-of date, as Date columns store it.
    pub fn as_of_day(self) -> i32 {
        (self.cutoff_day() - 1) as i32
    }

    /// C as RFC 3339 (`2026-11-15T00:00:00+00:00`).
    pub fn cutoff_rfc3339(self) -> String {
        (self.as_of + chrono::Days::new(1)).and_hms_opt(0, 0, 0).expect("midnight").and_utc().to_rfc3339()
    }

    /// The night `days` later.
    pub fn after(self, days: u64) -> Night {
        Night { as_of: self.as_of + chrono::Days::new(days) }
    }

    /// The training night of this night when the model is trained every `every` days: the
    /// latest night at or before it whose as-of date is a whole number of `every` days from
    /// Monday 1970-01-05 (with 7, the Monday of its week; with 1, itself). Anchored to the
    /// calendar, not to the first night run, so every night agrees on it whatever ran before.
    pub fn training_night(self, every: u32) -> Night {
        let every = every.max(1) as i64;
        let day = self.as_of_day() as i64;
        let back = (day - MONDAY_1970_01_05).rem_euclid(every);
        Night { as_of: date_of_day(day - back) }
    }

    /// The cutoffs of the nights on the training grid of `every` days (`training_night`) at or
    /// before this night (its own first when it is on the grid), latest first and without end.
    /// Lane tables are kept and read on this grid (`features::Span`), so every night of a week
    /// reads its Monday's tables and the Mondays' before it, and a weekly training night's
    /// tables are the ones the nights of its week read.
    pub fn grid_cutoffs_through(self, every: u32) -> impl Iterator<Item = i64> {
        let latest = self.training_night(every);
        let every = u64::from(every.max(1));
        (0..).map(move |k| latest.as_of - chrono::Days::new(k * every)).map(|d| Night::new(d).cutoff())
    }
}

/// Day number of Monday 1970-01-05, where the training nights' grid starts.
const MONDAY_1970_01_05: i64 = 4;

impl std::fmt::Display for Night {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_of.fmt(f)
    }
}

/// The as-of date of the night whose cutoff day is `cutoff_day` (for dates a series reports).
pub fn as_of_of_cutoff_day(cutoff_day: i64) -> NaiveDate {
    Night::of_cutoff_day(cutoff_day).as_of()
}

/// The as-of day number (a Date column value) of the night whose cutoff day is `cutoff_day`.
pub fn as_of_day_of_cutoff_day(cutoff_day: i64) -> i32 {
    (cutoff_day - 1) as i32
}

pub fn day_start_micros(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros()
}

/// Day number since 1970-01-01 of a µs timestamp (floor, so negative times work).
pub fn day_index(micros: i64) -> i64 {
    micros.div_euclid(MICROS_PER_DAY)
}

pub fn date_of_day(day: i64) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt((day + 719_163) as i32).unwrap_or(NaiveDate::MIN)
}

pub fn date_of_micros(micros: i64) -> NaiveDate {
    date_of_day(day_index(micros))
}

/// Day of week of a day number, Monday = 0.
pub fn weekday(day: i64) -> u32 {
    // 1970-01-01 was a Thursday.
    ((day + 3).rem_euclid(7)) as u32
}

/// Peak and holiday days, as (month, day) plus Black Friday when listed.
#[derive(Debug, Clone, Default)]
pub struct Holidays {
    fixed: Vec<(u32, u32)>,
    black_friday: bool,
}

impl Holidays {
    pub fn parse(items: &[String]) -> Result<Holidays> {
        let mut h = Holidays::default();
        for item in items {
            if item == "black-friday" {
                h.black_friday = true;
                continue;
            }
            let parsed = item.split_once('-').and_then(|(m, d)| Some((m.parse::<u32>().ok()?, d.parse::<u32>().ok()?)));
            match parsed {
                Some((m, d)) if NaiveDate::from_ymd_opt(2024, m, d).is_some() => h.fixed.push((m, d)),
                _ => {
                    return Err(Error::Config(format!("features.holidays: bad day {item:?} (MM-DD or black-friday)")));
                }
            }
        }
        Ok(h)
    }

    pub fn contains(&self, date: NaiveDate) -> bool {
        if self.fixed.contains(&(date.month(), date.day())) {
            return true;
        }
        self.black_friday && date == black_friday(date.year())
    }

    /// Whether any holiday falls on the days from `from` to `to` (µs, inclusive of both days).
    pub fn any_between(&self, from: i64, to: i64) -> bool {
        let (a, b) = (day_index(from), day_index(to));
        b >= a && self.days_in(a, b).next().is_some()
    }

    /// Business days (Monday to Friday, not a holiday) strictly after `from`'s day up to and
    /// including `to`'s day. Negative when `to` is before `from`.
    ///
    /// Exact over any span, in time that grows with its years, not its days: a `DayTable`
    /// answers inside its range and asks this outside it, and its range depends on the
    /// shipments a process holds, so a cap here once made a promise more than 800 days away
    /// count differently in a sharded night than in a whole one.
    pub fn business_days_between(&self, from: i64, to: i64) -> f64 {
        let (a, b) = (day_index(from), day_index(to));
        let (lo, hi, sign) = if b >= a { (a, b, 1.0) } else { (b, a, -1.0) };
        if hi == lo {
            return 0.0;
        }
        let off = self.days_in(lo + 1, hi).filter(|&d| weekday(d) < 5).count() as i64;
        sign * (weekdays_before(hi + 1) - weekdays_before(lo + 1) - off) as f64
    }

    /// The holidays on days `a..=b`, each once, in order.
    fn days_in(&self, a: i64, b: i64) -> impl Iterator<Item = i64> + '_ {
        let (first, last) = (date_of_day(a).year(), date_of_day(b).year());
        (first..=last).flat_map(move |year| {
            let mut days: Vec<i64> = self
                .fixed
                .iter()
                .filter_map(|&(m, d)| NaiveDate::from_ymd_opt(year, m, d))
                .chain(self.black_friday.then(|| black_friday(year)))
                .map(|date| day_index(day_start_micros(date)))
                .filter(|d| (a..=b).contains(d))
                .collect();
            days.sort_unstable();
            days.dedup();
            days
        })
    }
}

/// Monday-to-Friday days among day numbers below `n` and at or above the week of day 0: a
/// difference of two gives the weekdays between them, before the epoch too.
fn weekdays_before(n: i64) -> i64 {
    let (weeks, rest) = (n.div_euclid(7), n.rem_euclid(7));
    // Day 7·k is a Thursday (3): of the week's first `rest` days, those before Saturday count.
    5 * weeks + (0..rest).filter(|k| (k + 3) % 7 < 5).count() as i64
}

/// The day after Thanksgiving (the fourth Thursday of November). Not the fourth Friday: when
/// November begins on a Friday (2019, 2024, 2030) that is a week early.
pub fn black_friday(year: i32) -> NaiveDate {
    let first = NaiveDate::from_ymd_opt(year, 11, 1).expect("valid date");
    let offset = (Weekday::Thu.num_days_from_monday() + 7 - first.weekday().num_days_from_monday()) % 7;
    first + chrono::Days::new((offset + 22) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn training_nights_are_on_a_calendar_grid() {
        // Every night is its own training night when the model is trained nightly.
        let n = Night::new(ymd(2026, 11, 19));
        assert_eq!(n.training_night(1), n);
        // Weekly: the Monday of the week (2026-11-16 is a Monday), Mondays themselves included.
        for d in 16..=22 {
            assert_eq!(Night::new(ymd(2026, 11, d)).training_night(7).as_of(), ymd(2026, 11, 16), "{d}");
        }
        assert_eq!(Night::new(ymd(2026, 11, 23)).training_night(7).as_of(), ymd(2026, 11, 23));
        assert_eq!(ymd(1970, 1, 5).weekday(), chrono::Weekday::Mon);
        // Every 3 days from 1970-01-05: 2026-11-16 is day 20,773, (20,773 - 4) % 3 == 0.
        assert_eq!(Night::new(ymd(2026, 11, 18)).training_night(3).as_of(), ymd(2026, 11, 16));
        assert_eq!(Night::new(ymd(2026, 11, 19)).training_night(3).as_of(), ymd(2026, 11, 19));
        // Before the grid's start too.
        assert_eq!(Night::new(ymd(1970, 1, 1)).training_night(7).as_of(), ymd(1969, 12, 29));
    }

    #[test]
    fn lane_table_cutoffs_are_the_training_grids_nights_through_the_night() {
        let cut = |y, m, d| Night::new(ymd(y, m, d)).cutoff();
        // A Saturday: the Mondays before it; a Monday: itself, then the Mondays before it.
        let sat: Vec<i64> = Night::new(ymd(2026, 11, 21)).grid_cutoffs_through(7).take(2).collect();
        assert_eq!(sat, vec![cut(2026, 11, 16), cut(2026, 11, 9)]);
        let mon: Vec<i64> = Night::new(ymd(2026, 11, 16)).grid_cutoffs_through(7).take(2).collect();
        assert_eq!(mon, vec![cut(2026, 11, 16), cut(2026, 11, 9)]);
        // Every day: the night itself, then the nights before it.
        let daily: Vec<i64> = Night::new(ymd(2026, 11, 21)).grid_cutoffs_through(1).take(2).collect();
        assert_eq!(daily, vec![cut(2026, 11, 21), cut(2026, 11, 20)]);
    }

    #[test]
    fn night_cutoff_is_the_next_utc_midnight() {
        let n = Night::new(ymd(2026, 11, 14));
        assert_eq!(n.cutoff(), day_start_micros(ymd(2026, 11, 15)));
        assert_eq!(n.cutoff_rfc3339(), "2026-11-15T00:00:00+00:00");
        assert_eq!(n.cutoff_day(), day_index(day_start_micros(ymd(2026, 11, 15))));
        assert_eq!(n.as_of_day() as i64, n.cutoff_day() - 1);
        assert_eq!(date_of_day(n.as_of_day() as i64), ymd(2026, 11, 14));
        assert_eq!(n.to_string(), "2026-11-14");
    }

    #[test]
    fn night_edges_last_microsecond_and_leap_days() {
        // The last microsecond before C belongs to the night; C itself to the next one.
        let n = Night::new(ymd(2028, 2, 28));
        assert_eq!(day_index(n.cutoff() - 1), n.as_of_day() as i64);
        assert_eq!(day_index(n.cutoff()), n.cutoff_day());
        // Leap day: the night of Feb 28 cuts off at Feb 29, the night of Feb 29 at Mar 1.
        assert_eq!(date_of_day(n.cutoff_day()), ymd(2028, 2, 29));
        assert_eq!(date_of_day(n.after(1).cutoff_day()), ymd(2028, 3, 1));
        assert_eq!(Night::new(ymd(2026, 12, 31)).cutoff_rfc3339(), "2027-01-01T00:00:00+00:00");
        // Round trip through the cutoff day, including before the epoch.
        for as_of in [ymd(2028, 2, 29), ymd(1969, 12, 31), ymd(1970, 1, 1), ymd(2026, 3, 29)] {
            let n = Night::new(as_of);
            assert_eq!(Night::of_cutoff_day(n.cutoff_day()), n);
            assert_eq!(as_of_of_cutoff_day(n.cutoff_day()), as_of);
            assert_eq!(as_of_day_of_cutoff_day(n.cutoff_day()), n.as_of_day());
        }
    }

    #[test]
    fn night_cutoff_ignores_time_zones_of_the_input() {
        // A scan at 23:30 in UTC−03:00 on the as-of day is 02:30 UTC the next day: after C.
        let n = Night::new(ymd(2026, 11, 14));
        let local_2330_minus3 = day_start_micros(ymd(2026, 11, 14)) + (23 * 60 + 30 + 180) * 60_000_000;
        assert!(local_2330_minus3 >= n.cutoff());
        // 23:30 in UTC+05:30 is 18:00 UTC: before C.
        let local_2330_plus530 = day_start_micros(ymd(2026, 11, 14)) + (23 * 60 + 30 - 330) * 60_000_000;
        assert!(local_2330_plus530 < n.cutoff());
    }

    #[test]
    fn black_friday_dates() {
        assert_eq!(black_friday(2026), NaiveDate::from_ymd_opt(2026, 11, 27).unwrap());
        assert_eq!(black_friday(2025), NaiveDate::from_ymd_opt(2025, 11, 28).unwrap());
        // November begins on a Friday: the fourth Friday (the 22nd) is a week early.
        assert_eq!(black_friday(2024), NaiveDate::from_ymd_opt(2024, 11, 29).unwrap());
        assert_eq!(black_friday(2019), NaiveDate::from_ymd_opt(2019, 11, 29).unwrap());
        // Every year: a Friday, the day after the fourth Thursday.
        for year in 1990..2100 {
            let bf = black_friday(year);
            assert_eq!(bf.weekday(), Weekday::Fri, "{year}");
            let thursdays =
                (1..bf.day()).filter(|&d| NaiveDate::from_ymd_opt(year, 11, d).unwrap().weekday() == Weekday::Thu);
            assert_eq!(thursdays.count(), 4, "{year}: {bf}");
        }
    }

    #[test]
    fn weekday_and_dates_agree_with_chrono() {
        for d in [-1000i64, -1, 0, 1, 20_000, 20_419] {
            let date = date_of_day(d);
            assert_eq!(weekday(d), date.weekday().num_days_from_monday());
            assert_eq!(day_index(day_start_micros(date)), d);
        }
    }

    #[test]
    fn day_table_agrees_with_walking_the_calendar() {
        let h = Holidays::parse(&["12-25".to_string(), "black-friday".to_string(), "01-01".to_string()]).unwrap();
        let start = day_start_micros(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        let t = DayTable::new(&h, day_index(start) - 3, day_index(start) + 90);
        for a in 0..60 {
            for b in [0i64, 1, 5, 17, 33, -4] {
                let (x, y) = (start + a * MICROS_PER_DAY + 3_600_000_000 * (a % 5), start + (a + b) * MICROS_PER_DAY);
                assert_eq!(t.business_days_between(x, y), h.business_days_between(x, y), "{a} {b}");
                assert_eq!(t.any_between(x, y), h.any_between(x, y), "{a} {b}");
            }
        }
        // Outside the table it falls back to walking.
        let far = start + 400 * MICROS_PER_DAY;
        assert_eq!(t.business_days_between(start, far), h.business_days_between(start, far));
    }

    /// Counts days one by one: what the calendar's answers must equal.
    fn walked(h: &Holidays, from: i64, to: i64) -> (f64, bool) {
        let (a, b) = (day_index(from), day_index(to));
        let (lo, hi, sign) = if b >= a { (a, b, 1.0) } else { (b, a, -1.0) };
        let n = (lo + 1..=hi).filter(|&d| weekday(d) < 5 && !h.contains(date_of_day(d))).count();
        (sign * n as f64, b >= a && (a..=b).any(|d| h.contains(date_of_day(d))))
    }

    #[test]
    fn business_days_are_exact_over_any_span() {
        // Regression: the walk stopped after 800 days (holidays after 400), so a promise that far
        // from a row's time counted differently inside a day table's range than outside it,
        // and the range depends on the shipments a shard holds.
        let lists: [&[&str]; 4] = [&[], &["12-25", "black-friday", "01-01"], &["02-29"], &["11-27", "black-friday"]];
        let mut rng = crate::TestRng::new(7);
        for list in lists {
            let h = Holidays::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
            let base = day_start_micros(ymd(1968, 3, 1));
            for k in 0..400 {
                let from =
                    base + (rng.next() % 30_000) as i64 * MICROS_PER_DAY + (rng.next() % 86_400) as i64 * 1_000_000;
                let span = if k % 4 == 0 { rng.next() % 10 } else { rng.next() % 4_000 } as i64;
                let to = if k % 3 == 0 { from - span * MICROS_PER_DAY } else { from + span * MICROS_PER_DAY };
                let want = walked(&h, from, to);
                assert_eq!(h.business_days_between(from, to), want.0, "{list:?} {from} {to}");
                assert_eq!(h.any_between(from, to), want.1, "{list:?} {from} {to}");
            }
            // A table that covers both ends answers as one that covers neither.
            let (from, to) = (base, base + 2_000 * MICROS_PER_DAY);
            let table = DayTable::new(&h, day_index(from) - 1, day_index(to) + 1);
            assert_eq!(table.business_days_between(from, to), h.business_days_between(from, to), "{list:?}");
            assert_eq!(table.any_between(from, to), h.any_between(from, to), "{list:?}");
        }
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        let h = Holidays::parse(&["12-25".to_string()]).unwrap();
        let mon = day_start_micros(NaiveDate::from_ymd_opt(2026, 12, 21).unwrap());
        let next_mon = mon + 7 * MICROS_PER_DAY;
        // Tue..Fri minus Christmas (Fri) plus next Monday = 4.
        assert_eq!(h.business_days_between(mon, next_mon), 4.0);
        assert_eq!(h.business_days_between(next_mon, mon), -4.0);
        assert!(h.any_between(mon, next_mon));
        assert!(!h.any_between(next_mon, next_mon + MICROS_PER_DAY));
    }
}

/// Business-day and holiday counts per day over a range, so features can count the days
/// between two times in O(1) instead of walking the calendar for every row.
#[derive(Debug, Clone)]
pub struct DayTable {
    first: i64,
    /// business[k] = business days among days first..first+k (exclusive of first+k).
    business: Vec<u32>,
    holidays: Vec<u32>,
    fallback: Holidays,
}

impl DayTable {
    pub fn new(holidays: &Holidays, first_day: i64, last_day: i64) -> DayTable {
        let n = (last_day - first_day + 2).max(1) as usize;
        let (mut business, mut hol) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut b, mut h) = (0u32, 0u32);
        for k in 0..n {
            business.push(b);
            hol.push(h);
            let d = first_day + k as i64;
            let is_holiday = holidays.contains(date_of_day(d));
            b += (weekday(d) < 5 && !is_holiday) as u32;
            h += is_holiday as u32;
        }
        DayTable { first: first_day, business, holidays: hol, fallback: holidays.clone() }
    }

    fn index(&self, day: i64) -> Option<usize> {
        let k = day - self.first;
        (k >= 0 && (k as usize) < self.business.len()).then_some(k as usize)
    }

    /// As `Holidays::business_days_between`.
    pub fn business_days_between(&self, from: i64, to: i64) -> f64 {
        let (a, b) = (day_index(from), day_index(to));
        let (lo, hi, sign) = if b >= a { (a, b, 1.0) } else { (b, a, -1.0) };
        match (self.index(lo + 1), self.index(hi + 1)) {
            (Some(x), Some(y)) => sign * (self.business[y] - self.business[x]) as f64,
            _ => self.fallback.business_days_between(from, to),
        }
    }

    /// As `Holidays::any_between`.
    pub fn any_between(&self, from: i64, to: i64) -> bool {
        let (a, b) = (day_index(from), day_index(to));
        if b < a {
            return false;
        }
        match (self.index(a), self.index(b + 1)) {
            (Some(x), Some(y)) => self.holidays[y] > self.holidays[x],
            _ => self.fallback.any_between(from, to),
        }
    }
}
