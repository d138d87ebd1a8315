use lanewatch::*;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let input = std::path::Path::new(&args[1]);
    let as_of = config::parse_date(&args[2]).unwrap();
    let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("LANEWATCH_")).collect();
    let cfg = config::Config::load(None, &env, &config::Overrides::default()).unwrap();
    let (_, clean) = validate::validate(input, &cfg.input).unwrap();
    let clean = clean.unwrap();
    let fs = features::build(&clean, &cfg, as_of).unwrap();
    let truth = evaluate::read_disruptions(input).unwrap().unwrap();
    let nights: Vec<i64> = (fs.series.first_day + 30..=fs.series.last_day).collect();
    let flags = evaluate::flags_from_series(&fs, &nights);
    let r = evaluate::detection(&flags, nights.len() as u64, (nights.len() * fs.prep.lanes.len()) as u64, &truth, 7);
    for l in &r.lanes {
        println!(
            "{} {} {} {}..{} {} {:?} {:?}",
            l.disruption_id, l.lane, l.stage, l.start, l.end, l.detected, l.first_flagged_night, l.delay_days
        );
    }
    println!(
        "recall {} detected {}/{} median delay {:?} false {} of {} flagged",
        r.recall, r.detected, r.disrupted_lanes, r.median_delay_days, r.false_flag_lane_nights, r.flagged_lane_nights
    );
    let mut fl: std::collections::BTreeMap<String, usize> = Default::default();
    for (day, key, s) in &flags {
        let ok = truth.iter().any(|t| {
            t.key == *key
                && schema::STAGES[*s].key == t.stage
                && day * schema::MICROS_PER_DAY > t.start
                && day * schema::MICROS_PER_DAY <= t.end + 7 * schema::MICROS_PER_DAY
        });
        if !ok {
            *fl.entry(format!("{} {} {}", key.label(), schema::STAGES[*s].key, calendar::date_of_day(*day - 1)))
                .or_default() += 1;
        }
    }
    println!("{fl:?}");
    if let Ok(lane) = std::env::var("SHOW") {
        let (o, d, sv, st) = {
            let v: Vec<&str> = lane.split(',').collect();
            (v[0].to_string(), v[1].to_string(), v[2].to_string(), v[3].parse::<usize>().unwrap())
        };
        let l = fs.prep.lanes.iter().position(|k| k.origin == o && k.destination == d && k.service == sv).unwrap();
        for day in fs.series.first_day..=fs.series.last_day {
            let p = fs.series.at(l, st, day);
            println!(
                "{} recent {:.2} base {:.2} n {} bn {} ratio {:.2} z {:.2} dis {} pooled {} net {:.2}",
                calendar::date_of_day(day - 1),
                p.recent_p50,
                p.baseline_p50,
                p.recent_n,
                p.baseline_n,
                p.ratio,
                p.z,
                p.disrupted,
                p.pooled,
                fs.series.network_ratio(st, day)
            );
        }
    }
}
#[allow(dead_code)]
fn dummy() {}
