//! Product-category trends, as `docs/API.md` defines them:
//! per category (the top two taxonomy levels),
//! change = SUM(quantity in the prior 1 hour) / MEAN(hourly quantity over
//! the prior 6 hours) - 1, recomputed every 5 minutes of event time, top
//! 500 by change.
//!
//! Rules where the definition is silent:
//! - "Prior" is relative to the recompute time T, a 5-minute boundary of
//!   event time: the hour is [T-1h, T) and the six hours are [T-6h, T).
//! - During the first 6 hours of the sale (counted from the first event
//!   seen) the mean is taken over the whole hours that have passed; before
//!   one whole hour has passed there is no baseline and no trend.
//! - A category with nothing sold in the baseline has no defined change
//!   and is left out until it has one.
//! - Ties are broken by category name, so the list is stable.
//!
//! Quantities are kept in 5-minute buckets of event time in a fixed ring of
//! a little over six hours, so memory is bounded by the number of
//! categories (itself capped).
//!
//! Trends merge: the buckets of two states add up slot by slot, so the
//! merged buckets are those of one state fed both streams, and recomputing
//! from them gives the same trends. That holds while the categories seen
//! stay within [`MAX_CATEGORIES`]; past it, each state drops different
//! newcomers.

use std::borrow::Cow;
use std::collections::HashMap;

use std::hash::BuildHasherDefault;

use livemap_wire::Trend;
use xxhash_rust::xxh3::xxh3_64;

use crate::aggregate::Merge;
use crate::checkpoint::{CheckpointError, Reader, Writer};
use crate::dedup::PassThrough;

pub const BUCKET_MS: i64 = 5 * 60_000;
const HOUR_BUCKETS: i64 = 12;
const BASELINE_HOURS: i64 = 6;
/// Six hours of buckets plus the one being filled.
const RING: usize = (BASELINE_HOURS * HOUR_BUCKETS) as usize + 1;
pub const TOP: usize = 500;
/// Categories beyond this many are not tracked (they are still counted in
/// every total); a hostile stream of made-up categories cannot grow memory.
pub const MAX_CATEGORIES: usize = 10_000;

/// Longest taxonomy level kept, in bytes: a key is at most
/// `2 * MAX_LEVEL_BYTES + 3`. Real levels are a few words ("Apparel &
/// Accessories"); a longer one is cut, and counted as `ingest.truncated`.
pub const MAX_LEVEL_BYTES: usize = 64;

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
pub fn cut_to(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The trend key of a taxonomy path: its top two levels, trimmed, each cut
/// to [`MAX_LEVEL_BYTES`], joined by " > "; and whether a level was cut.
/// Borrowed from the path when the path already starts that way, as
/// well-formed paths do, so the common case allocates nothing.
pub fn category_key(path: &str) -> Option<(Cow<'_, str>, bool)> {
    let mut levels = path.split('>').map(str::trim).filter(|l| !l.is_empty());
    let level = |l: &str| cut_to(l, MAX_LEVEL_BYTES).trim_end().len();
    let first = levels.next()?;
    let (first_len, second) = (level(first), levels.next());
    let Some(second) = second else {
        return Some((Cow::Borrowed(&first[..first_len]), first_len < first.len()));
    };
    let second_len = level(second);
    let cut = first_len < first.len() || second_len < second.len();
    let (first, second) = (&first[..first_len], &second[..second_len]);
    let key_len = first.len() + 3 + second.len();
    let canonical = !cut
        && path.starts_with(first)
        && path[first.len()..].starts_with(" > ")
        && path[first.len() + 3..].starts_with(second);
    Some((
        if canonical {
            Cow::Borrowed(&path[..key_len])
        } else {
            Cow::Owned(format!("{first} > {second}"))
        },
        cut,
    ))
}

/// A change record's trends, checked: the newest and first buckets, the
/// untracked items, and per category the buckets that changed with their
/// new quantities.
#[derive(Debug, Default)]
pub struct TrendChanges {
    newest: Option<i64>,
    first: Option<i64>,
    untracked: u64,
    categories: Vec<(String, Vec<(i64, u64)>)>,
}

#[derive(Debug, Default, Clone)]
pub struct Trends {
    /// xxh3 of the category → its id. This lookup runs for every line
    /// item, so it hashes once and compares the name on a hit. A name whose
    /// hash collides with another's is not tracked (and counted as such);
    /// the map is capped, so crafting collisions buys an attacker nothing.
    ids: HashMap<u64, usize, BuildHasherDefault<PassThrough>>,
    names: Vec<String>,
    /// Per category, quantity per ring slot.
    counts: Vec<Vec<u64>>,
    /// Which bucket each ring slot holds.
    slot_bucket: Vec<i64>,
    newest_bucket: Option<i64>,
    first_bucket: Option<i64>,
    current: Vec<Trend>,
    pub untracked_items: u64,
}

impl Trends {
    pub fn new() -> Self {
        Trends {
            slot_bucket: vec![i64::MIN; RING],
            ..Trends::default()
        }
    }

    /// Adds quantity sold in a category at an event time. Returns whether
    /// the 5-minute boundary was crossed (the trends were recomputed).
    pub fn add(&mut self, category: &str, quantity: u32, event_time_ms: i64) -> bool {
        let bucket = event_time_ms.div_euclid(BUCKET_MS);
        let recomputed = self.advance_to(bucket);
        let newest = self.newest_bucket.unwrap_or(bucket);
        if bucket <= newest - RING as i64 {
            // Older than the longest window: it can no longer change a trend.
            return recomputed;
        }
        let Some(id) = self.id_of(category) else {
            self.untracked_items += 1;
            return recomputed;
        };
        // A bucket older than any seen so far (but inside the window) has
        // no slot yet.
        self.claim(bucket);
        let slot = bucket.rem_euclid(RING as i64) as usize;
        self.counts[id][slot] += u64::from(quantity);
        recomputed
    }

    /// Quantity sold per category per bucket still in the window, sorted:
    /// the state's content, whatever order events came in.
    pub fn buckets(&self) -> Vec<(String, i64, u64)> {
        let Some(newest) = self.newest_bucket else {
            return Vec::new();
        };
        let mut v = Vec::new();
        for (name, counts) in self.names.iter().zip(&self.counts) {
            for b in newest - RING as i64 + 1..=newest {
                let slot = b.rem_euclid(RING as i64) as usize;
                if self.slot_bucket[slot] == b && counts[slot] > 0 {
                    v.push((name.clone(), b, counts[slot]));
                }
            }
        }
        v.sort();
        v
    }

    fn id_of(&mut self, category: &str) -> Option<usize> {
        let hash = xxh3_64(category.as_bytes());
        if let Some(&id) = self.ids.get(&hash) {
            return (self.names[id] == category).then_some(id);
        }
        if self.names.len() >= MAX_CATEGORIES {
            return None;
        }
        let id = self.names.len();
        self.ids.insert(hash, id);
        self.names.push(category.to_owned());
        self.counts.push(vec![0; RING]);
        Some(id)
    }

    /// Moves the newest bucket forward, clearing reused slots, and
    /// recomputes at each 5-minute boundary crossed.
    fn advance_to(&mut self, bucket: i64) -> bool {
        self.first_bucket = Some(self.first_bucket.map_or(bucket, |f| f.min(bucket)));
        let Some(newest) = self.newest_bucket else {
            self.newest_bucket = Some(bucket);
            self.claim(bucket);
            return false;
        };
        if bucket <= newest {
            return false;
        }
        // Recompute once, at the newest boundary: the buckets before it are
        // the complete ones.
        let start = (newest + 1).max(bucket - RING as i64 + 1);
        for b in start..=bucket {
            self.claim(b);
        }
        self.newest_bucket = Some(bucket);
        self.recompute(bucket);
        true
    }

    /// Makes `bucket`'s slot hold `bucket`, emptying it if it held an
    /// older one.
    fn claim(&mut self, bucket: i64) {
        let slot = bucket.rem_euclid(RING as i64) as usize;
        if self.slot_bucket[slot] != bucket {
            self.slot_bucket[slot] = bucket;
            for c in &mut self.counts {
                c[slot] = 0;
            }
        }
    }

    fn sum(&self, id: usize, from: i64, to: i64) -> u64 {
        (from..to)
            .map(|b| {
                let slot = b.rem_euclid(RING as i64) as usize;
                if self.slot_bucket[slot] == b {
                    self.counts[id][slot]
                } else {
                    0
                }
            })
            .sum()
    }

    /// Recomputes the trends at T = the start of bucket `t`.
    fn recompute(&mut self, t: i64) {
        let first = self.first_bucket.unwrap_or(t);
        let hours = ((t - first) / HOUR_BUCKETS).min(BASELINE_HOURS);
        if hours < 1 {
            self.current.clear();
            return;
        }
        let mut trends: Vec<Trend> = (0..self.names.len())
            .filter_map(|id| {
                let recent = self.sum(id, t - HOUR_BUCKETS, t) as f64;
                let baseline = self.sum(id, t - hours * HOUR_BUCKETS, t) as f64 / hours as f64;
                (baseline > 0.0).then(|| Trend {
                    category: self.names[id].clone(),
                    change: recent / baseline - 1.0,
                })
            })
            .collect();
        trends.sort_by(|a, b| {
            b.change
                .total_cmp(&a.change)
                .then_with(|| a.category.cmp(&b.category))
        });
        trends.truncate(TOP);
        self.current = trends;
    }

    /// Recomputes now, at the newest bucket, as a merged state must.
    pub fn refresh(&mut self) {
        if let Some(newest) = self.newest_bucket {
            self.recompute(newest);
        }
    }

    /// The trends as last recomputed.
    pub fn current(&self) -> &[Trend] {
        &self.current
    }

    /// The id of a category already tracked.
    fn known(&self, category: &str) -> Option<usize> {
        let &id = self.ids.get(&xxh3_64(category.as_bytes()))?;
        (self.names[id] == category).then_some(id)
    }

    /// Quantity of category `id` in `bucket`, zero if its slot holds
    /// another bucket.
    fn value(&self, id: usize, bucket: i64) -> u64 {
        let slot = bucket.rem_euclid(RING as i64) as usize;
        if self.slot_bucket[slot] == bucket {
            self.counts[id][slot]
        } else {
            0
        }
    }

    /// The buckets of the window whose quantities differ from `before`'s,
    /// per category, with their new values; categories `before` did not
    /// know are named even without any (see `ingest/changes.rs`).
    pub fn write_changes(&self, before: &Trends, w: &mut Writer) {
        w.i64(self.newest_bucket.unwrap_or(i64::MIN));
        w.i64(self.first_bucket.unwrap_or(i64::MIN));
        w.u64(self.untracked_items);
        // Empty while nothing was counted.
        let window = match self.newest_bucket {
            Some(n) => n - RING as i64 + 1..n + 1,
            None => 0..0,
        };
        let mut changed = Vec::new();
        for (id, name) in self.names.iter().enumerate() {
            let theirs = before.known(name);
            let buckets: Vec<(i64, u64)> = window
                .clone()
                .map(|b| (b, self.value(id, b)))
                .filter(|&(b, v)| v != theirs.map_or(0, |t| before.value(t, b)))
                .collect();
            if theirs.is_none() || !buckets.is_empty() {
                changed.push((name, buckets));
            }
        }
        w.u64(changed.len() as u64);
        for (name, buckets) in changed {
            w.str(name);
            w.u64(buckets.len() as u64);
            for (b, v) in buckets {
                w.i64(b);
                w.u64(v);
            }
        }
    }

    /// Reads what [`Trends::write_changes`] wrote: names within their
    /// length, buckets within the window the record names.
    pub fn read_changes(r: &mut Reader) -> Result<TrendChanges, CheckpointError> {
        let opt = |v: i64| (v != i64::MIN).then_some(v);
        let (newest, first) = (opt(r.i64()?), opt(r.i64()?));
        let untracked = r.u64()?;
        let mut categories = Vec::with_capacity(r.count(16)?);
        for _ in 0..categories.capacity() {
            let name = r.string()?;
            if name.len() > 2 * MAX_LEVEL_BYTES + 3 {
                return Err(CheckpointError::Payload("trend category too long"));
            }
            let mut buckets = Vec::with_capacity(r.count(16)?);
            for _ in 0..buckets.capacity() {
                let (bucket, value) = (r.i64()?, r.u64()?);
                let newest = newest.ok_or(CheckpointError::Payload("bucket without trends"))?;
                if bucket > newest || bucket <= newest - RING as i64 {
                    return Err(CheckpointError::Payload("bucket outside the window"));
                }
                buckets.push((bucket, value));
            }
            categories.push((name, buckets));
        }
        Ok(TrendChanges {
            newest,
            first,
            untracked,
            categories,
        })
    }

    /// Sets what was read. `merged` takes the difference, turning its ring
    /// over to newer buckets as a merge would; its trends are recomputed by
    /// the caller ([`Trends::refresh`]), once for many changes. A slot
    /// that already holds a newer bucket keeps it, and a category past the
    /// cap is not tracked (as when counting).
    pub fn apply_changes(&mut self, changes: &TrendChanges, mut merged: Option<&mut Trends>) {
        self.newest_bucket = self.newest_bucket.max(changes.newest);
        self.first_bucket = changes.first.or(self.first_bucket);
        if let Some(m) = merged.as_deref_mut() {
            crate::aggregate::shift(
                &mut m.untracked_items,
                self.untracked_items,
                changes.untracked,
            );
            m.newest_bucket = m.newest_bucket.max(changes.newest);
            m.first_bucket = match (m.first_bucket, changes.first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        self.untracked_items = changes.untracked;
        for (name, buckets) in &changes.categories {
            let Some(id) = self.id_of(name) else {
                continue;
            };
            let merged_id = merged.as_deref_mut().map(|m| m.id_of(name));
            for &(bucket, value) in buckets {
                let slot = bucket.rem_euclid(RING as i64) as usize;
                if self.slot_bucket[slot] > bucket {
                    continue;
                }
                let old = self.value(id, bucket);
                self.claim(bucket);
                self.counts[id][slot] = value;
                let (Some(m), Some(merged_id)) = (merged.as_deref_mut(), merged_id) else {
                    continue;
                };
                let m_newest = m.newest_bucket.unwrap_or(bucket);
                if bucket <= m_newest - RING as i64 || m.slot_bucket[slot] > bucket {
                    continue;
                }
                m.claim(bucket);
                match merged_id {
                    Some(mid) => crate::aggregate::shift(&mut m.counts[mid][slot], old, value),
                    // Past the merged state's cap on categories.
                    None => m.untracked_items += 1,
                }
            }
        }
    }

    pub fn export(&self, w: &mut Writer) {
        w.i64(self.newest_bucket.unwrap_or(i64::MIN));
        w.i64(self.first_bucket.unwrap_or(i64::MIN));
        w.u64(self.untracked_items);
        for b in &self.slot_bucket {
            w.i64(*b);
        }
        w.u64(self.names.len() as u64);
        for (name, counts) in self.names.iter().zip(&self.counts) {
            w.str(name);
            for c in counts {
                w.u64(*c);
            }
        }
    }

    pub fn restore(r: &mut Reader) -> Result<Trends, CheckpointError> {
        let mut t = Trends::new();
        let opt = |v: i64| (v != i64::MIN).then_some(v);
        t.newest_bucket = opt(r.i64()?);
        t.first_bucket = opt(r.i64()?);
        t.untracked_items = r.u64()?;
        for b in &mut t.slot_bucket {
            *b = r.i64()?;
        }
        for _ in 0..r.count(8 + RING * 8)? {
            let name = r.string()?;
            let mut counts = vec![0; RING];
            for c in &mut counts {
                *c = r.u64()?;
            }
            if t.names.len() >= MAX_CATEGORIES {
                return Err(CheckpointError::Payload("too many trend categories"));
            }
            t.ids.insert(xxh3_64(name.as_bytes()), t.names.len());
            t.names.push(name);
            t.counts.push(counts);
        }
        if let Some(newest) = t.newest_bucket {
            t.recompute(newest);
        }
        Ok(t)
    }
}

impl Merge for Trends {
    fn merge(&mut self, other: &Self) {
        self.untracked_items += other.untracked_items;
        let Some(theirs) = other.newest_bucket else {
            // A merged state shows the trends of its buckets as they are now,
            // whichever side brought them.
            self.refresh();
            return;
        };
        let newest = self.newest_bucket.map_or(theirs, |n| n.max(theirs));
        self.first_bucket = match (self.first_bucket, other.first_bucket) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let oldest = newest - RING as i64 + 1;
        self.newest_bucket = Some(newest);
        for b in oldest..=newest {
            let slot = b.rem_euclid(RING as i64) as usize;
            if other.slot_bucket[slot] != b {
                // Theirs has nothing for this bucket; ours may still hold a
                // bucket that just fell out of the window.
                if self.slot_bucket[slot] != b {
                    self.claim(b);
                }
                continue;
            }
            self.claim(b);
            for (name, counts) in other.names.iter().zip(&other.counts) {
                if counts[slot] == 0 {
                    continue;
                }
                match self.id_of(name) {
                    Some(id) => self.counts[id][slot] += counts[slot],
                    None => self.untracked_items += 1,
                }
            }
        }
        // Categories theirs has seen but never in the window still belong
        // to the state (they can trend again).
        for name in &other.names {
            let _ = self.id_of(name);
        }
        self.recompute(newest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    /// A 5-minute boundary, and the sale's start.
    const T0: i64 = 1_795_788_000_000;

    fn change(t: &Trends, category: &str) -> Option<f64> {
        t.current()
            .iter()
            .find(|x| x.category == category)
            .map(|x| x.change)
    }

    #[test]
    fn keys_are_the_top_two_levels() {
        let key = |p| category_key(p).map(|(k, cut)| (k.into_owned(), cut));
        assert_eq!(
            key("Apparel & Accessories > Clothing > Outerwear"),
            Some(("Apparel & Accessories > Clothing".into(), false))
        );
        assert_eq!(key(" Media >Books "), Some(("Media > Books".into(), false)));
        assert_eq!(key("Media"), Some(("Media".into(), false)));
        assert_eq!(key(" > "), None);
    }

    #[test]
    fn a_long_level_is_cut_on_a_character_boundary() {
        let long = "é".repeat(1_000);
        let path = format!("{long} > Shoes > Heels");
        let (k, cut) = category_key(&path).expect("a key");
        assert!(cut);
        assert!(k.len() <= 2 * MAX_LEVEL_BYTES + 3, "{}", k.len());
        assert!(k.ends_with(" > Shoes"));
        let (k, cut) = category_key(&long).expect("a key");
        assert!(cut && k.len() <= MAX_LEVEL_BYTES && k.chars().all(|c| c == 'é'));
    }

    #[test]
    fn no_trend_before_one_whole_hour() {
        let mut t = Trends::new();
        for m in 0..59 {
            t.add("A > B", 1, T0 + m * 60_000);
        }
        t.add("A > B", 1, T0 + 59 * 60_000 + 59_000);
        assert!(t.current().is_empty());
        t.add("A > B", 1, T0 + H);
        // At T0+1h: one hour of history, recent == baseline: no change.
        assert_eq!(change(&t, "A > B"), Some(0.0));
    }

    #[test]
    fn change_compares_the_last_hour_with_the_hourly_mean_of_six() {
        let mut t = Trends::new();
        // Steady 12 per hour (1 per 5 minutes) for 5 hours...
        for b in 0..60 {
            t.add("Steady > X", 1, T0 + b * BUCKET_MS);
            t.add("Surging > Y", 1, T0 + b * BUCKET_MS);
        }
        // ...then in the sixth hour Surging sells 4 per bucket (48/h).
        for b in 60..72 {
            t.add("Steady > X", 1, T0 + b * BUCKET_MS);
            t.add("Surging > Y", 4, T0 + b * BUCKET_MS);
        }
        t.add("Steady > X", 1, T0 + 6 * H);
        // Steady: 12 / (72/6) - 1 = 0. Surging: 48 / ((60 + 48) / 6) - 1 = 48/18 - 1.
        assert_eq!(change(&t, "Steady > X"), Some(0.0));
        let surging = change(&t, "Surging > Y").expect("has a trend");
        assert!((surging - (48.0 / 18.0 - 1.0)).abs() < 1e-12, "{surging}");
        assert_eq!(t.current()[0].category, "Surging > Y", "sorted by change");
    }

    #[test]
    fn the_window_is_six_hours_after_the_first_six() {
        let mut t = Trends::new();
        // 100 per bucket in hour 0, then 1 per bucket for hours 1..8.
        for b in 0..12 {
            t.add("C > D", 100, T0 + b * BUCKET_MS);
        }
        for b in 12..96 {
            t.add("C > D", 1, T0 + b * BUCKET_MS);
        }
        t.add("C > D", 1, T0 + 8 * H);
        // At T0+8h the baseline is hours 2..8: the big first hour is gone.
        assert_eq!(change(&t, "C > D"), Some(0.0));
    }

    #[test]
    fn late_events_land_in_their_bucket_and_count_at_the_next_recompute() {
        let mut t = Trends::new();
        for b in 0..=12 {
            t.add("E > F", 1, T0 + b * BUCKET_MS);
        }
        assert_eq!(change(&t, "E > F"), Some(0.0));
        // Late: 12 more in the last hour, arriving after the recompute.
        t.add("E > F", 12, T0 + 11 * BUCKET_MS);
        assert_eq!(
            change(&t, "E > F"),
            Some(0.0),
            "not before the next boundary"
        );
        t.add("E > F", 1, T0 + 13 * BUCKET_MS);
        // Hours since start: 1 (T0+65min), recent = buckets 1..13 = 11 + 12 + 1... recomputed.
        assert!(change(&t, "E > F").is_some());
    }

    #[test]
    fn only_categories_sold_in_the_window_trend_and_memory_is_capped() {
        let mut t = Trends::new();
        t.add("Old > One", 1, T0);
        t.add("New > One", 5, T0 + H - 1);
        t.add("Old > One", 1, T0 + H);
        assert!(change(&t, "Old > One").is_some());
        assert!(
            change(&t, "New > One").is_some(),
            "sold within the baseline"
        );
        // Eight hours on, "New > One" has sold nothing for six: it drops out.
        t.add("Old > One", 1, T0 + 7 * H);
        t.add("Old > One", 1, T0 + 8 * H);
        assert!(change(&t, "New > One").is_none());
        assert!(change(&t, "Old > One").is_some());
        for i in 0..(MAX_CATEGORIES + 10) {
            t.add(&format!("Made up > {i}"), 1, T0 + 8 * H);
        }
        assert_eq!(t.names.len(), MAX_CATEGORIES);
        assert!(t.untracked_items >= 10);
    }

    use proptest::prelude::*;

    proptest! {
        /// Any split of a stream (events in any order, spanning more than
        /// the ring), merged in any order, holds the whole stream's buckets
        /// and so computes its trends.
        #[test]
        fn merging_any_split_equals_the_whole(
            events in proptest::collection::vec((0usize..5, 0i64..150, 1u32..5, 0usize..3), 0..200),
        ) {
            let names = ["A > B", "A > C", "D > E", "F > G", "H"];
            let mut whole = Trends::new();
            let mut parts = [Trends::new(), Trends::new(), Trends::new()];
            for &(c, b, q, owner) in &events {
                whole.add(names[c], q, T0 + b * BUCKET_MS + 1);
                parts[owner].add(names[c], q, T0 + b * BUCKET_MS + 1);
            }
            let mut merged = Trends::new();
            for p in parts.iter().rev() {
                merged.merge(p);
            }
            whole.refresh();
            prop_assert_eq!(merged.buckets(), whole.buckets());
            prop_assert_eq!(merged.current(), whole.current());
            let mut identity = whole.clone();
            identity.merge(&Trends::new());
            prop_assert_eq!(identity.buckets(), whole.buckets());
            let (mut ab, mut ba) = (parts[0].clone(), parts[1].clone());
            ab.merge(&parts[1]);
            ba.merge(&parts[0]);
            prop_assert_eq!(ab.buckets(), ba.buckets());
            prop_assert_eq!(ab.current(), ba.current());
        }
    }

    #[test]
    fn an_event_older_than_the_first_lands_in_its_bucket() {
        let mut t = Trends::new();
        t.add("A > B", 1, T0 + 10 * BUCKET_MS);
        t.add("A > B", 2, T0 + 3 * BUCKET_MS);
        let b = T0 / BUCKET_MS;
        assert_eq!(
            t.buckets(),
            vec![
                ("A > B".to_owned(), b + 3, 2),
                ("A > B".to_owned(), b + 10, 1)
            ]
        );
    }

    #[test]
    fn export_and_restore_keep_the_trends() {
        let mut t = Trends::new();
        for b in 0..80 {
            t.add("G > H", (b % 7 + 1) as u32, T0 + b * BUCKET_MS);
            t.add("I > J", 2, T0 + b * BUCKET_MS);
        }
        let mut w = Writer::default();
        t.export(&mut w);
        let back = Trends::restore(&mut Reader::new(&w.buf)).expect("restores");
        assert_eq!(back.current(), t.current());
        assert!(!back.current().is_empty());
    }
}
