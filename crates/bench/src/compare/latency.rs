//! The latency cases of the comparison: QoS 1 at a fixed rate (1k, 10k and 50k messages a
//! second, 10 pairs), run for more rounds than the throughput cases, the brokers taking
//! turns in every round, and reported as the median of the rounds with their range and
//! every round's figure: one noisy minute on a shared machine moves one round, not the
//! result.

use std::fmt::Write as _;

use super::{Case, Measurement, fmt_num, median, metrics};

/// The latency figures, as `metrics` names them, in the order they are shown.
pub(super) const FIGURES: [&str; 4] = ["p50 µs", "p99 µs", "p99.9 µs", "max µs"];

/// Rounds of the latency cases when `--latency-rounds` is not given.
pub const DEFAULT_ROUNDS: u32 = 9;

/// Seconds of each latency round when `--latency-duration` is not given (`--quick`: 2).
pub(super) fn default_duration(quick: bool) -> f64 {
    if quick { 2.0 } else { 5.0 }
}

/// The case a name stood for before the latency cases were split by rate.
const ALIAS: (&str, &str) = ("latency-q1", "latency-q1-10k");

/// `name`, or the case it is an alias of.
pub(super) fn resolve(name: &str) -> &str {
    if name == ALIAS.0 { ALIAS.1 } else { name }
}

/// True for the latency cases (and the old single one, in saved results).
pub(super) fn is_latency(case: &str) -> bool {
    case.starts_with(ALIAS.0)
}

/// The latency cases: 10 pairs at QoS 1 with 64-byte payloads, each pair paced at a
/// thousandth of the total rate.
pub(super) fn cases(seconds: f64) -> Vec<Case> {
    [
        ("latency-q1-1k", "latency at 1k msg/s QoS 1", 100),
        ("latency-q1-10k", "latency at 10k msg/s QoS 1", 1_000),
        ("latency-q1-50k", "latency at 50k msg/s QoS 1", 5_000),
    ]
    .into_iter()
    .map(|(id, title, rate)| Case {
        id,
        title,
        args: format!(
            "p2p -n 10 --qos 1 --size 64 --rate {rate} --window 100 --duration {seconds} \
             --time-limit 90"
        )
        .split_whitespace()
        .map(str::to_string)
        .collect(),
    })
    .collect()
}

/// One figure of one broker's rounds of a case.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Summary {
    /// `pinned` or `unpinned`.
    pub(super) mode: String,
    /// The case id.
    pub(super) case: String,
    /// The broker.
    pub(super) broker: String,
    /// Which figure (`p99 µs`, ...).
    pub(super) metric: String,
    /// Median over the rounds that measured it (of an even count, the mean of the middle
    /// two); `None` when none did.
    pub(super) median: Option<f64>,
    /// Smallest round.
    pub(super) min: Option<f64>,
    /// Largest round.
    pub(super) max: Option<f64>,
    /// Every round's figure in the order they ran; `None` for a round that failed.
    pub(super) rounds: Vec<Option<f64>>,
}

impl Summary {
    /// `median (min–max)`, or the one figure, or `–`.
    pub(super) fn cell(&self) -> String {
        match (self.median, self.min, self.max) {
            (Some(m), Some(lo), Some(hi)) if self.measured() > 1 => {
                format!("{} ({}–{})", fmt_num(m), fmt_num(lo), fmt_num(hi))
            }
            (Some(m), _, _) => fmt_num(m),
            _ => "–".into(),
        }
    }

    /// Rounds that measured the figure.
    fn measured(&self) -> usize {
        self.rounds.iter().flatten().count()
    }
}

/// `metric` over a broker's rounds of `case` in `mode`, in the order of the rounds.
pub(super) fn summarise(
    results: &[Measurement],
    mode: &str,
    case: &str,
    broker: &str,
    metric: &str,
) -> Summary {
    let mut runs: Vec<&Measurement> = results
        .iter()
        .filter(|m| m.mode == mode && m.case == case && m.broker == broker)
        .collect();
    runs.sort_by_key(|m| m.round);
    let rounds: Vec<Option<f64>> = runs
        .iter()
        .map(|m| {
            let report = m.report.as_ref()?;
            metrics(report)
                .into_iter()
                .find(|(l, _)| *l == metric)
                .map(|(_, v)| v)
        })
        .collect();
    let mut sorted: Vec<f64> = rounds.iter().flatten().copied().collect();
    sorted.sort_by(f64::total_cmp);
    Summary {
        mode: mode.into(),
        case: case.into(),
        broker: broker.into(),
        metric: metric.into(),
        median: median(&sorted),
        min: sorted.first().copied(),
        max: sorted.last().copied(),
        rounds,
    }
}

/// Every latency figure of every broker, placement and latency case in `results`.
pub(super) fn summaries(
    results: &[Measurement],
    modes: &[String],
    cases: &[Case],
    brokers: &[String],
) -> Vec<Summary> {
    let mut v = Vec::new();
    for mode in modes {
        for case in cases.iter().filter(|c| is_latency(c.id)) {
            for broker in brokers {
                for metric in FIGURES {
                    let s = summarise(results, mode, case.id, broker, metric);
                    if !s.rounds.is_empty() {
                        v.push(s);
                    }
                }
            }
        }
    }
    v
}

/// The section of `results.md` with every round: per placement and case, one row per
/// broker and figure.
pub(super) fn markdown(s: &mut String, summaries: &[Summary], rounds: u32) {
    if summaries.is_empty() {
        return;
    }
    let _ = writeln!(s, "## Latency under paced load, every round\n");
    let _ = writeln!(
        s,
        "10 pairs, QoS 1, 64-byte payloads, each pair paced at a tenth of the rate. {rounds} \
         rounds per broker, the brokers taking turns in each round (tinsel, mosquitto, tinsel, \
         …). Each figure is the median of the rounds, then the range, then every round in the \
         order they ran (– : the round failed). Latencies in µs, from the publisher's write to \
         the subscriber's read.\n"
    );
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for x in summaries {
        if !groups.contains(&(x.mode.as_str(), x.case.as_str())) {
            groups.push((&x.mode, &x.case));
        }
    }
    for (mode, case) in groups {
        let _ = writeln!(s, "### {mode} {case}\n");
        let _ = writeln!(
            s,
            "| broker | figure | median (range) | rounds |\n|---|---|---|---|"
        );
        for x in summaries
            .iter()
            .filter(|x| x.mode == mode && x.case == case)
        {
            let each: Vec<String> = x
                .rounds
                .iter()
                .map(|r| r.map_or("–".into(), fmt_num))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                x.broker,
                x.metric,
                x.cell(),
                each.join(" · ")
            );
        }
        let _ = writeln!(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(broker: &str, round: u32, p: Option<(f64, f64, f64, f64)>) -> Measurement {
        Measurement {
            mode: "pinned".into(),
            broker: broker.into(),
            case: "latency-q1-10k".into(),
            round,
            broker_command: String::new(),
            bench_command: String::new(),
            report: p.map(|(p50, p99, p999, max)| {
                serde_json::json!({"scenario": "p2p",
                    "latency_us": {"p50": p50, "p99": p99, "p999": p999, "max": max}})
            }),
            error: p.is_none().then(|| "run failed".to_string()),
        }
    }

    fn results() -> Vec<Measurement> {
        vec![
            // Out of order on purpose: rounds are shown in the order they ran.
            run("tinsel", 2, Some((90.0, 300.0, 900.0, 4000.0))),
            run("tinsel", 0, Some((100.0, 500.0, 1500.0, 2000.0))),
            run("mosquitto", 0, Some((120.0, 400.0, 800.0, 1000.0))),
            run("tinsel", 1, None),
            run("mosquitto", 1, Some((130.0, 420.0, 700.0, 1200.0))),
            run("tinsel", 3, Some((95.0, 350.0, 1000.0, 3000.0))),
            run("mosquitto", 2, Some((110.0, 380.0, 750.0, 900.0))),
        ]
    }

    #[test]
    fn a_figure_is_the_median_of_the_rounds_with_their_range_and_each_round_in_order() {
        let r = results();
        let t = summarise(&r, "pinned", "latency-q1-10k", "tinsel", "p99 µs");
        assert_eq!(t.rounds, [Some(500.0), None, Some(300.0), Some(350.0)]);
        assert_eq!(
            (t.median, t.min, t.max),
            (Some(350.0), Some(300.0), Some(500.0))
        );
        assert_eq!(t.cell(), "350 (300–500)");
        let m = summarise(&r, "pinned", "latency-q1-10k", "mosquitto", "p99.9 µs");
        assert_eq!(m.rounds, [Some(800.0), Some(700.0), Some(750.0)]);
        assert_eq!(m.median, Some(750.0));
        // An even count of rounds: the mean of the middle two.
        let t = summarise(&r[..2], "pinned", "latency-q1-10k", "tinsel", "max µs");
        assert_eq!(
            (t.median, t.cell()),
            (Some(3000.0), "3,000 (2,000–4,000)".into())
        );
    }

    #[test]
    fn a_broker_whose_rounds_all_failed_has_no_figure() {
        let r = [run("tinsel", 0, None), run("tinsel", 1, None)];
        let t = summarise(&r, "pinned", "latency-q1-10k", "tinsel", "p50 µs");
        assert_eq!(t.rounds, [None, None]);
        assert_eq!((t.median, t.min, t.max), (None, None, None));
        assert_eq!(t.cell(), "–");
    }

    #[test]
    fn the_report_lists_every_broker_figure_and_round() {
        let r = results();
        let brokers = ["tinsel".to_string(), "mosquitto".to_string()];
        let all = summaries(&r, &["pinned".into()], &cases(5.0), &brokers);
        // One case measured, two brokers, four figures.
        assert_eq!(all.len(), 8);
        let mut s = String::new();
        markdown(&mut s, &all, 4);
        assert!(s.contains("### pinned latency-q1-10k"), "{s}");
        assert!(
            s.contains("| tinsel | p99 µs | 350 (300–500) | 500 · – · 300 · 350 |"),
            "{s}"
        );
        assert!(
            s.contains("| mosquitto | max µs | 1,000 (900–1,200) | 1,000 · 1,200 · 900 |"),
            "{s}"
        );
    }

    #[test]
    fn the_old_case_name_stands_for_10k() {
        assert_eq!(resolve("latency-q1"), "latency-q1-10k");
        assert_eq!(resolve("latency-q1-50k"), "latency-q1-50k");
        assert!(is_latency("latency-q1") && is_latency("latency-q1-1k"));
        assert!(!is_latency("p2p-q1"));
        let ids: Vec<&str> = cases(5.0).iter().map(|c| c.id).collect();
        assert_eq!(ids, ["latency-q1-1k", "latency-q1-10k", "latency-q1-50k"]);
        assert!(
            cases(0.5)[2]
                .args
                .join(" ")
                .contains("--rate 5000 --window 100 --duration 0.5")
        );
    }
}
