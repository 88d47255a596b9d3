//! Anomaly warnings for operators: a sudden fall in orders or sales per
//! minute, the first sign of a checkout or payment outage.
//!
//! The model is the sale's own recent history, in event time: the
//! expected rate is the median of the [`BASELINE_MINUTES`] closed minutes
//! before the [`RECENT_MINUTES`] judged, so it follows the daily curve
//! (which moves over hours) and shrugs off ten-minute waves and one-minute
//! bursts. A signal is flagged when the recent minutes average less than
//! [`FALL`] of it, and cleared once they are back above [`RECOVERED`].
//! While flagged, the expectation is the hour before the flag began, so a
//! long outage does not become the new normal. The minutes are judged
//! again on every call, so orders that arrive late (a partition read
//! after the others, in a catch-up) correct the judgement. Below [`MIN_ORDERS_PER_MINUTE`]
//! expected orders nothing is judged: a quiet sale's minutes are noise.
//!
//! Pure: the caller says which minute is the last closed one (the minute
//! the public rates show), so tests drive it minute by minute.

use crate::aggregate::MinuteSeries;

/// Closed minutes judged together: two, so that one thin minute (a
/// producer's hiccup) raises nothing, and an outage is flagged within
/// two to three minutes of event time.
pub const RECENT_MINUTES: i64 = 2;
/// Closed minutes before them whose median is the expectation.
pub const BASELINE_MINUTES: i64 = 60;
/// At least this many minutes of history before anything is judged.
pub const ARMED_AFTER_MINUTES: i64 = 30;
/// Flagged below this share of the expectation.
pub const FALL: f64 = 0.5;
/// Cleared above this share.
pub const RECOVERED: f64 = 0.7;
/// Nothing is judged while fewer orders than this are expected a minute.
pub const MIN_ORDERS_PER_MINUTE: f64 = 20.0;

/// What is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    OrdersPerMinute,
    SalesPerMinute,
}

impl SignalKind {
    pub const ALL: [SignalKind; 2] = [SignalKind::OrdersPerMinute, SignalKind::SalesPerMinute];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::OrdersPerMinute => "orders_per_minute",
            SignalKind::SalesPerMinute => "sales_per_minute",
        }
    }

    fn of(self, minutes: &MinuteSeries, minute: i64) -> f64 {
        let b = minutes.get(minute);
        match self {
            SignalKind::OrdersPerMinute => b.orders as f64,
            // In US dollars, so the numbers read as a rate of sales.
            SignalKind::SalesPerMinute => b.usd_cents as f64 / 100.0,
        }
    }
}

/// One signal as last judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub kind: SignalKind,
    /// The last closed minute judged.
    pub minute: i64,
    /// The recent minutes' average, per minute.
    pub observed: f64,
    /// What the sale's history expects, per minute; `None` before the
    /// detector is armed or while the sale is too quiet to judge.
    pub expected: Option<f64>,
    /// Whether the signal is flagged now.
    pub flagged: bool,
    /// The first minute of the current flag.
    pub since_minute: Option<i64>,
}

impl Signal {
    /// Observed over expected, if there is an expectation.
    pub fn ratio(&self) -> Option<f64> {
        self.expected
            .filter(|e| *e > 0.0)
            .map(|e| self.observed / e)
    }
}

/// Judges the signals as minutes close.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    signals: Vec<Signal>,
}

/// A change of a signal's flag, for whoever tells operators.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub signal: Signal,
    pub raised: bool,
}

impl Detector {
    pub fn new() -> Self {
        Detector::default()
    }

    /// The signals as last judged (empty before the first closed minute).
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// Judges the minutes up to `last_full_minute` (the last closed one);
    /// returns the flags raised or cleared since the previous call.
    pub fn evaluate(&mut self, minutes: &MinuteSeries, last_full_minute: i64) -> Vec<Change> {
        let first = first_minute(minutes, last_full_minute);
        let armed = first.is_some_and(|f| last_full_minute - f >= ARMED_AFTER_MINUTES);
        let recent_from = last_full_minute - RECENT_MINUTES + 1;
        let mut changes = Vec::new();
        let mut next = Vec::with_capacity(SignalKind::ALL.len());
        for kind in SignalKind::ALL {
            let observed = (recent_from..=last_full_minute)
                .map(|m| kind.of(minutes, m))
                .sum::<f64>()
                / RECENT_MINUTES as f64;
            let before = self.signals.iter().find(|s| s.kind == kind);
            let was_flagged = before.is_some_and(|s| s.flagged);
            // While flagged, the hour before the flag: the outage's
            // minutes are no baseline.
            let baseline_end = before
                .filter(|s| s.flagged)
                .and_then(|s| s.since_minute)
                .unwrap_or(recent_from);
            let orders = median(minutes, SignalKind::OrdersPerMinute, baseline_end);
            let expected = (armed && orders >= MIN_ORDERS_PER_MINUTE).then(|| match kind {
                SignalKind::OrdersPerMinute => orders,
                _ => median(minutes, kind, baseline_end),
            });
            let ratio = expected.filter(|e| *e > 0.0).map(|e| observed / e);
            let flagged = match ratio {
                Some(r) if was_flagged => r < RECOVERED,
                Some(r) => r < FALL,
                None => false,
            };
            let since_minute = match (flagged, was_flagged) {
                (true, true) => before.and_then(|s| s.since_minute),
                (true, false) => Some(recent_from),
                _ => None,
            };
            let signal = Signal {
                kind,
                minute: last_full_minute,
                observed,
                expected,
                flagged,
                since_minute,
            };
            if flagged != was_flagged {
                changes.push(Change {
                    signal: signal.clone(),
                    raised: flagged,
                });
            }
            next.push(signal);
        }
        self.signals = next;
        changes
    }
}

/// The first minute with orders in the window the detector looks at.
fn first_minute(minutes: &MinuteSeries, last: i64) -> Option<i64> {
    let from = last - RECENT_MINUTES - BASELINE_MINUTES + 1;
    (from..=last).find(|&m| minutes.get(m).orders > 0)
}

/// The median of `kind` over the baseline minutes before `end`.
fn median(minutes: &MinuteSeries, kind: SignalKind, end: i64) -> f64 {
    let mut v: Vec<f64> = (end - BASELINE_MINUTES..end)
        .map(|m| kind.of(minutes, m))
        .collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::MINUTE_MS;
    use livemap_events::demo::rate_multiplier;

    /// A minute's orders: `mean` with Poisson-like noise from a fixed
    /// generator, so runs repeat.
    fn noisy(mean: f64, seed: &mut u64) -> u64 {
        let mut uniform = || {
            *seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((*seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (u, v) = (uniform(), uniform());
        let normal = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
        (mean + normal * mean.sqrt()).round().max(0.0) as u64
    }

    /// Minutes `from..to` (minute numbers since the epoch) of a sale of
    /// `per_minute` orders on average, shaped by the demo's daily curve,
    /// waves and hourly bursts, times `factor(minute)`; each minute judged
    /// as it closes. Returns the changes, by the minute judged.
    fn run(
        detector: &mut Detector,
        minutes: &mut MinuteSeries,
        (from, to): (i64, i64),
        per_minute: f64,
        factor: impl Fn(i64) -> f64,
    ) -> Vec<(i64, Change)> {
        let mut seed = 42;
        let mut changes = Vec::new();
        for m in from..to {
            let mean = per_minute * rate_multiplier(m * MINUTE_MS) * factor(m);
            for i in 0..noisy(mean, &mut seed) {
                minutes.add(m * MINUTE_MS + (i as i64 % 60) * 1_000, 4_500, 300);
            }
            for c in detector.evaluate(minutes, m) {
                changes.push((m, c));
            }
        }
        changes
    }

    /// Black Friday 2026, 00:00 UTC, in minutes.
    const DAY: i64 = 1_795_737_600_000 / MINUTE_MS;

    #[test]
    fn a_normal_day_with_its_curve_waves_and_bursts_raises_nothing() {
        for per_minute in [40.0, 300.0, 5_000.0] {
            let (mut d, mut minutes) = (Detector::new(), MinuteSeries::default());
            let changes = run(&mut d, &mut minutes, (DAY, DAY + 1_440), per_minute, |_| {
                1.0
            });
            assert!(changes.is_empty(), "{per_minute}/min: {changes:?}");
            let orders = &d.signals()[0];
            assert!(orders.expected.is_some(), "armed after a day");
            assert!(!orders.flagged);
        }
    }

    #[test]
    fn orders_falling_80_percent_for_10_minutes_are_flagged_within_3_minutes() {
        let outage = DAY + 600;
        for per_minute in [40.0, 300.0, 5_000.0] {
            let (mut d, mut minutes) = (Detector::new(), MinuteSeries::default());
            let in_outage = |m: i64| {
                if (outage..outage + 10).contains(&m) {
                    0.2
                } else {
                    1.0
                }
            };
            let changes = run(
                &mut d,
                &mut minutes,
                (DAY, DAY + 720),
                per_minute,
                in_outage,
            );
            let raised: Vec<_> = changes.iter().filter(|(_, c)| c.raised).collect();
            let cleared: Vec<_> = changes.iter().filter(|(_, c)| !c.raised).collect();
            assert_eq!(
                raised.len(),
                2,
                "{per_minute}/min, orders and sales: {changes:?}"
            );
            for (judged, c) in &raised {
                assert!(
                    (outage..outage + 3).contains(judged),
                    "{per_minute}/min: {:?} flagged judging minute {} ({} after the fall)",
                    c.signal.kind,
                    judged,
                    judged - outage
                );
                assert_eq!(c.signal.since_minute, Some(judged - 1));
                let ratio = c.signal.ratio().expect("an expectation");
                assert!(ratio < FALL, "{ratio}");
            }
            // Cleared once the sale is back, within two minutes of it.
            assert_eq!(cleared.len(), 2, "{changes:?}");
            for (judged, _) in cleared {
                assert!(
                    (outage + 10..outage + 13).contains(judged),
                    "cleared at {judged}"
                );
            }
        }
    }

    #[test]
    fn a_minute_judged_before_its_late_orders_is_judged_again() {
        // An hour of 100 orders a minute, but the newest two minutes
        // arrive half at first (one partition read, the other not yet).
        let (mut d, mut minutes) = (Detector::new(), MinuteSeries::default());
        let last = DAY + 90;
        for m in DAY..=last {
            let n = if m >= last - 1 { 40 } else { 100 };
            for i in 0..n {
                minutes.add(m * MINUTE_MS + i, 4_500, 300);
            }
        }
        let raised = d.evaluate(&minutes, last);
        assert!(raised.iter().all(|c| c.raised) && raised.len() == 2);
        // The rest of those minutes comes: cleared on the next call.
        for m in last - 1..=last {
            for i in 0..60 {
                minutes.add(m * MINUTE_MS + 100 + i, 4_500, 300);
            }
        }
        let cleared = d.evaluate(&minutes, last);
        assert!(
            cleared.iter().all(|c| !c.raised) && cleared.len() == 2,
            "{cleared:?}"
        );
        assert_eq!(d.signals()[0].expected, Some(100.0));
    }

    #[test]
    fn a_long_outage_stays_flagged_and_a_quiet_sale_is_not_judged() {
        // An outage of 90 minutes: the expectation is held, so it is not
        // the new normal after an hour.
        let outage = DAY + 600;
        let (mut d, mut minutes) = (Detector::new(), MinuteSeries::default());
        let falls = |m: i64| if m >= outage { 0.2 } else { 1.0 };
        run(&mut d, &mut minutes, (DAY, outage + 90), 300.0, falls);
        assert!(d.signals().iter().all(|s| s.flagged), "{:?}", d.signals());
        assert!(d.signals().iter().all(|s| s.since_minute == Some(outage)));
        // Five orders a minute: a fall to one is noise, not judged.
        let (mut d, mut minutes) = (Detector::new(), MinuteSeries::default());
        let changes = run(&mut d, &mut minutes, (DAY, DAY + 720), 5.0, falls);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(d.signals()[0].expected, None);
        // Nothing before half an hour of history.
        let (mut d, mut minutes) = (Detector::new(), MinuteSeries::default());
        let early = |m: i64| if m >= DAY + 20 { 0.1 } else { 1.0 };
        assert!(run(&mut d, &mut minutes, (DAY, DAY + 29), 300.0, early).is_empty());
    }
}
