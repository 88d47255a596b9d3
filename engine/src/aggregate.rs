//! Aggregate stage: the running totals and per-minute series of the sale.
//!
//! Totals are integers (cents, grams, counts) so that they are exact and
//! merge exactly. Minutes are event-time minutes: an order counts in the
//! minute it happened, whenever it arrives.
//!
//! Next stage: the server's `snapshot` reads these into the published snapshot.

use crate::checkpoint::{CheckpointError, Reader, Writer};
use crate::hll::HyperLogLog;

/// State that combines: `a.merge(&b)` leaves in `a` what one instance fed
/// both streams would hold. Every implementation is associative and
/// commutative, with `Default` as the identity, so aggregators that each
/// own part of the stream can be combined in any order (property-tested
/// below for every split of a stream).
pub trait Merge {
    fn merge(&mut self, other: &Self);
}

impl Merge for HyperLogLog {
    fn merge(&mut self, other: &Self) {
        HyperLogLog::merge(self, other);
    }
}

pub const MINUTE_MS: i64 = 60_000;

/// Replaces one part's contribution to a sum: `old` out, `new` in. Change
/// records carry each part's new value (see `ingest/changes.rs`), and a
/// merged sum takes the difference. Wrapping, so the result is exact
/// whenever the true sum fits in a u64 (money is capped per order: see
/// `--max-order-usd`).
pub fn shift(sum: &mut u64, old: u64, new: u64) {
    *sum = sum.wrapping_sub(old).wrapping_add(new);
}
/// How many event-time minutes the per-minute series keeps: two weeks,
/// longer than any sale, so the series is the sale's whole history.
pub const SERIES_MINUTES: usize = 14 * 24 * 60;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteBucket {
    pub orders: u64,
    pub usd_cents: u64,
    pub carbon_grams: u64,
}

impl MinuteBucket {
    fn shift(&mut self, old: &MinuteBucket, new: &MinuteBucket) {
        shift(&mut self.orders, old.orders, new.orders);
        shift(&mut self.usd_cents, old.usd_cents, new.usd_cents);
        shift(&mut self.carbon_grams, old.carbon_grams, new.carbon_grams);
    }

    fn merge(&mut self, other: &MinuteBucket) {
        self.orders += other.orders;
        self.usd_cents = self.usd_cents.saturating_add(other.usd_cents);
        self.carbon_grams = self.carbon_grams.saturating_add(other.carbon_grams);
    }
}

/// Per-minute orders, sales and emissions over the last [`SERIES_MINUTES`]
/// minutes of event time (the sale's history, and the source of the
/// per-minute rates), in a fixed ring: memory never grows. About 650 KB.
#[derive(Debug, Clone)]
pub struct MinuteSeries {
    slots: Vec<(i64, MinuteBucket)>,
    newest_minute: i64,
}

impl Default for MinuteSeries {
    fn default() -> Self {
        MinuteSeries {
            slots: vec![(i64::MIN, MinuteBucket::default()); SERIES_MINUTES],
            newest_minute: i64::MIN,
        }
    }
}

impl Merge for MinuteSeries {
    /// Slot by slot: both rings put a minute in the same slot, so merging
    /// is one pass, with minutes that fall out of the combined window
    /// dropped exactly as one series fed both streams would have.
    fn merge(&mut self, other: &Self) {
        let Some(theirs) = other.newest_minute() else {
            return;
        };
        let newest = self.newest_minute().map_or(theirs, |n| n.max(theirs));
        let oldest = newest - SERIES_MINUTES as i64 + 1;
        self.newest_minute = newest;
        for (mine, (m, b)) in self.slots.iter_mut().zip(&other.slots) {
            if mine.0 != i64::MIN && mine.0 < oldest {
                *mine = (i64::MIN, MinuteBucket::default());
            }
            if *m == i64::MIN || *m < oldest {
                continue;
            }
            if mine.0 == *m {
                mine.1.merge(b);
            } else {
                // The two rings agree on which minute a slot holds within
                // the window, so a different minute here is an empty slot.
                *mine = (*m, *b);
            }
        }
    }
}

impl MinuteSeries {
    /// Adds an order; returns false if it is older than the series keeps
    /// (it still counts in the totals, just not in a minute).
    pub fn add(&mut self, event_time_ms: i64, usd_cents: u64, carbon_grams: u64) -> bool {
        let minute = event_time_ms.div_euclid(MINUTE_MS);
        if self.newest_minute != i64::MIN && minute <= self.newest_minute - SERIES_MINUTES as i64 {
            return false;
        }
        self.newest_minute = self.newest_minute.max(minute);
        let slot = &mut self.slots[minute.rem_euclid(SERIES_MINUTES as i64) as usize];
        if slot.0 != minute {
            *slot = (minute, MinuteBucket::default());
        }
        slot.1.merge(&MinuteBucket {
            orders: 1,
            usd_cents,
            carbon_grams,
        });
        true
    }

    fn export(&self, w: &mut Writer) {
        w.i64(self.newest_minute);
        let used: Vec<_> = self.slots.iter().filter(|(m, _)| *m != i64::MIN).collect();
        w.u64(used.len() as u64);
        for (minute, b) in used {
            w.i64(*minute);
            w.u64(b.orders);
            w.u64(b.usd_cents);
            w.u64(b.carbon_grams);
        }
    }

    fn restore(r: &mut Reader) -> Result<MinuteSeries, CheckpointError> {
        let mut s = MinuteSeries {
            newest_minute: r.i64()?,
            ..MinuteSeries::default()
        };
        for _ in 0..r.count(32)? {
            let minute = r.i64()?;
            let bucket = MinuteBucket {
                orders: r.u64()?,
                usd_cents: r.u64()?,
                carbon_grams: r.u64()?,
            };
            if minute > s.newest_minute
                || minute <= s.newest_minute.saturating_sub(SERIES_MINUTES as i64)
            {
                return Err(CheckpointError::Payload("minute outside the series"));
            }
            s.slots[minute.rem_euclid(SERIES_MINUTES as i64) as usize] = (minute, bucket);
        }
        Ok(s)
    }

    /// The minutes whose buckets differ from `before`'s, with their new
    /// values.
    fn write_changes(&self, before: &MinuteSeries, w: &mut Writer) {
        w.i64(self.newest_minute);
        let changed: Vec<_> = self
            .slots
            .iter()
            .zip(&before.slots)
            .filter(|(mine, theirs)| mine.0 != i64::MIN && mine != theirs)
            .map(|(mine, _)| mine)
            .collect();
        w.u64(changed.len() as u64);
        for (minute, b) in changed {
            w.i64(*minute);
            w.u64(b.orders);
            w.u64(b.usd_cents);
            w.u64(b.carbon_grams);
        }
    }

    /// Reads what [`MinuteSeries::write_changes`] wrote, every minute
    /// inside the window it names.
    fn read_changes(r: &mut Reader) -> Result<MinuteChanges, CheckpointError> {
        let newest = r.i64()?;
        let mut minutes = Vec::with_capacity(r.count(32)?);
        for _ in 0..minutes.capacity() {
            let minute = r.i64()?;
            let bucket = MinuteBucket {
                orders: r.u64()?,
                usd_cents: r.u64()?,
                carbon_grams: r.u64()?,
            };
            if minute > newest || minute <= newest.saturating_sub(SERIES_MINUTES as i64) {
                return Err(CheckpointError::Payload("minute outside the series"));
            }
            minutes.push((minute, bucket));
        }
        Ok(MinuteChanges { newest, minutes })
    }

    /// Sets the minutes read; `merged` takes the difference, its slots
    /// turning over to newer minutes as a merge would. A slot that already
    /// holds a newer minute keeps it (a record older than the copy).
    fn apply_changes(&mut self, changes: &MinuteChanges, mut merged: Option<&mut MinuteSeries>) {
        self.newest_minute = self.newest_minute.max(changes.newest);
        if let Some(m) = merged.as_deref_mut() {
            m.newest_minute = m.newest_minute.max(changes.newest);
        }
        for &(minute, bucket) in &changes.minutes {
            let i = minute.rem_euclid(SERIES_MINUTES as i64) as usize;
            if self.slots[i].0 > minute {
                continue;
            }
            let old = self.get(minute);
            self.slots[i] = (minute, bucket);
            if let Some(m) = merged.as_deref_mut() {
                let slot = &mut m.slots[i];
                if slot.0 < minute {
                    *slot = (minute, MinuteBucket::default());
                }
                // A slot already holding a newer minute: this one fell out
                // of the merged window.
                if slot.0 == minute {
                    slot.1.shift(&old, &bucket);
                }
            }
        }
    }

    /// The bucket for an event-time minute (zero if nothing was seen).
    pub fn get(&self, minute: i64) -> MinuteBucket {
        let slot = &self.slots[minute.rem_euclid(SERIES_MINUTES as i64) as usize];
        if slot.0 == minute {
            slot.1
        } else {
            MinuteBucket::default()
        }
    }

    /// The newest event-time minute that has seen an order.
    pub fn newest_minute(&self) -> Option<i64> {
        (self.newest_minute != i64::MIN).then_some(self.newest_minute)
    }

    /// Every minute the series holds, oldest first: its canonical content,
    /// whatever order the orders came in.
    pub fn minutes(&self) -> Vec<(i64, MinuteBucket)> {
        let Some(newest) = self.newest_minute() else {
            return Vec::new();
        };
        let mut v: Vec<(i64, MinuteBucket)> = self
            .slots
            .iter()
            .filter(|(m, b)| *m > newest - SERIES_MINUTES as i64 && *m != i64::MIN && b.orders > 0)
            .copied()
            .collect();
        v.sort_by_key(|(m, _)| *m);
        v
    }

    /// Every minute from the oldest with orders to the newest, empty ones
    /// included: the sale's history as a timeline draws it.
    pub fn history(&self) -> Option<(i64, Vec<MinuteBucket>)> {
        let newest = self.newest_minute()?;
        let oldest = self
            .slots
            .iter()
            .filter(|(m, _)| *m != i64::MIN && *m > newest - SERIES_MINUTES as i64)
            .map(|(m, _)| *m)
            .min()?;
        Some((oldest, (oldest..=newest).map(|m| self.get(m)).collect()))
    }
}

/// Orders and sales in one slice of the sale (a country, a channel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slice {
    pub orders: u64,
    pub usd_cents: u64,
}

impl Slice {
    fn shift(&mut self, old: &Slice, new: &Slice) {
        shift(&mut self.orders, old.orders, new.orders);
        shift(&mut self.usd_cents, old.usd_cents, new.usd_cents);
    }

    fn add(&mut self, usd_cents: u64) {
        self.orders += 1;
        self.usd_cents = self.usd_cents.saturating_add(usd_cents);
    }

    fn merge(&mut self, other: &Slice) {
        self.orders += other.orders;
        self.usd_cents = self.usd_cents.saturating_add(other.usd_cents);
    }
}

/// Every possible country code: two letters A-Z.
const COUNTRY_CODES: usize = 26 * 26;

/// Orders and sales by buyer country and by sales channel. Countries are
/// two uppercase letters (the decoder refuses anything else), so a table of
/// all 676 codes holds them: bounded, and one index per order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breakdowns {
    by_country: Box<[Slice; COUNTRY_CODES]>,
    pub by_channel: [Slice; livemap_wire::Channel::ALL.len()],
}

impl Default for Breakdowns {
    fn default() -> Self {
        Breakdowns {
            by_country: Box::new([Slice::default(); COUNTRY_CODES]),
            by_channel: Default::default(),
        }
    }
}

fn country_index(c: [u8; 2]) -> Option<usize> {
    let letter = |b: u8| b.is_ascii_uppercase().then(|| usize::from(b - b'A'));
    Some(letter(c[0])? * 26 + letter(c[1])?)
}

impl Breakdowns {
    pub fn add(&mut self, country: [u8; 2], channel: livemap_wire::Channel, usd_cents: u64) {
        if let Some(i) = country_index(country) {
            self.by_country[i].add(usd_cents);
        }
        self.by_channel[channel as usize].add(usd_cents);
    }

    /// Countries with orders, in code order.
    pub fn by_country(&self) -> impl Iterator<Item = ([u8; 2], Slice)> + '_ {
        self.by_country
            .iter()
            .enumerate()
            .filter(|(_, s)| s.orders > 0)
            .map(|(i, s)| ([b'A' + (i / 26) as u8, b'A' + (i % 26) as u8], *s))
    }

    pub fn export(&self, w: &mut Writer) {
        w.u64(self.by_country().count() as u64);
        for (c, s) in self.by_country() {
            w.u8(c[0]);
            w.u8(c[1]);
            w.u64(s.orders);
            w.u64(s.usd_cents);
        }
        for s in &self.by_channel {
            w.u64(s.orders);
            w.u64(s.usd_cents);
        }
    }

    /// The countries whose slices differ from `before`'s, and every
    /// channel, with their new values.
    pub fn write_changes(&self, before: &Breakdowns, w: &mut Writer) {
        let changed: Vec<(usize, &Slice)> = self
            .by_country
            .iter()
            .zip(before.by_country.iter())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, (a, _))| (i, a))
            .collect();
        w.u64(changed.len() as u64);
        for (i, s) in changed {
            w.u32(i as u32);
            w.u64(s.orders);
            w.u64(s.usd_cents);
        }
        for s in &self.by_channel {
            w.u64(s.orders);
            w.u64(s.usd_cents);
        }
    }

    /// Reads what [`Breakdowns::write_changes`] wrote.
    pub fn read_changes(r: &mut Reader) -> Result<BreakdownChanges, CheckpointError> {
        let mut countries = Vec::with_capacity(r.count(20)?);
        for _ in 0..countries.capacity() {
            let i = r.u32()? as usize;
            if i >= COUNTRY_CODES {
                return Err(CheckpointError::Payload("country code"));
            }
            countries.push((
                i,
                Slice {
                    orders: r.u64()?,
                    usd_cents: r.u64()?,
                },
            ));
        }
        let mut channels = [Slice::default(); livemap_wire::Channel::ALL.len()];
        for c in &mut channels {
            *c = Slice {
                orders: r.u64()?,
                usd_cents: r.u64()?,
            };
        }
        Ok(BreakdownChanges {
            countries,
            channels,
        })
    }

    /// Sets what was read; `merged` takes the difference.
    pub fn apply_changes(
        &mut self,
        changes: &BreakdownChanges,
        mut merged: Option<&mut Breakdowns>,
    ) {
        for &(i, new) in &changes.countries {
            if let Some(m) = merged.as_deref_mut() {
                m.by_country[i].shift(&self.by_country[i], &new);
            }
            self.by_country[i] = new;
        }
        for (c, new) in changes.channels.iter().enumerate() {
            if let Some(m) = merged.as_deref_mut() {
                m.by_channel[c].shift(&self.by_channel[c], new);
            }
            self.by_channel[c] = *new;
        }
    }

    pub fn restore(r: &mut Reader) -> Result<Breakdowns, CheckpointError> {
        let mut b = Breakdowns::default();
        for _ in 0..r.count(18)? {
            let country = [r.u8()?, r.u8()?];
            let slice = Slice {
                orders: r.u64()?,
                usd_cents: r.u64()?,
            };
            let i = country_index(country).ok_or(CheckpointError::Payload("country code"))?;
            b.by_country[i] = slice;
        }
        for s in &mut b.by_channel {
            s.orders = r.u64()?;
            s.usd_cents = r.u64()?;
        }
        Ok(b)
    }
}

impl Merge for Breakdowns {
    fn merge(&mut self, other: &Self) {
        for (a, b) in self.by_country.iter_mut().zip(other.by_country.iter()) {
            a.merge(b);
        }
        for (a, b) in self.by_channel.iter_mut().zip(&other.by_channel) {
            a.merge(b);
        }
    }
}

/// A change record's minutes, checked: the newest minute, and the
/// minutes that changed with their new buckets.
#[derive(Debug, Default)]
pub struct MinuteChanges {
    newest: i64,
    minutes: Vec<(i64, MinuteBucket)>,
}

/// A change record's breakdowns, checked.
#[derive(Debug, Default)]
pub struct BreakdownChanges {
    countries: Vec<(usize, Slice)>,
    channels: [Slice; livemap_wire::Channel::ALL.len()],
}

/// A change record's aggregate, checked: the totals (orders, sales,
/// emissions), the sketch's registers and the minutes.
#[derive(Debug, Default)]
pub struct AggregateChanges {
    totals: [u64; 3],
    shoppers: crate::hll::RegisterChanges,
    minutes: MinuteChanges,
}

/// Everything counted about accepted orders.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub orders: u64,
    pub gmv_usd_cents: u64,
    pub carbon_grams: u64,
    pub shoppers: HyperLogLog,
    pub minutes: MinuteSeries,
}

impl Merge for Aggregate {
    fn merge(&mut self, other: &Self) {
        self.orders += other.orders;
        self.gmv_usd_cents = self.gmv_usd_cents.saturating_add(other.gmv_usd_cents);
        self.carbon_grams = self.carbon_grams.saturating_add(other.carbon_grams);
        Merge::merge(&mut self.shoppers, &other.shoppers);
        self.minutes.merge(&other.minutes);
    }
}

impl Aggregate {
    /// Counts an order. `in_minute` is false for an order later than the
    /// allowed lateness: it counts in the totals, not in its closed minute.
    pub fn add(
        &mut self,
        usd_cents: u64,
        carbon_grams: u64,
        buyer_hash: u64,
        event_time_ms: i64,
        in_minute: bool,
    ) {
        self.orders += 1;
        // Saturating rather than wrapping: u64 cents is 184 quadrillion USD,
        // so this only guards against hostile totals, never real ones.
        self.gmv_usd_cents = self.gmv_usd_cents.saturating_add(usd_cents);
        self.carbon_grams = self.carbon_grams.saturating_add(carbon_grams);
        self.shoppers.insert_hash(buyer_hash);
        if in_minute {
            self.minutes.add(event_time_ms, usd_cents, carbon_grams);
        }
    }

    pub fn export(&self, w: &mut Writer) {
        w.u64(self.orders);
        w.u64(self.gmv_usd_cents);
        w.u64(self.carbon_grams);
        w.bytes(self.shoppers.registers());
        self.minutes.export(w);
    }

    /// The totals, and what changed in the sketch and the series since
    /// `before`.
    pub fn write_changes(&self, before: &Aggregate, w: &mut Writer) {
        w.u64(self.orders);
        w.u64(self.gmv_usd_cents);
        w.u64(self.carbon_grams);
        self.shoppers.write_changes(&before.shoppers, w);
        self.minutes.write_changes(&before.minutes, w);
    }

    /// Reads what [`Aggregate::write_changes`] wrote.
    pub fn read_changes(r: &mut Reader) -> Result<AggregateChanges, CheckpointError> {
        Ok(AggregateChanges {
            totals: [r.u64()?, r.u64()?, r.u64()?],
            shoppers: HyperLogLog::read_changes(r)?,
            minutes: MinuteSeries::read_changes(r)?,
        })
    }

    /// Sets what was read; `merged` takes the difference.
    pub fn apply_changes(
        &mut self,
        changes: &AggregateChanges,
        mut merged: Option<&mut Aggregate>,
    ) {
        let [orders, gmv, carbon] = changes.totals;
        if let Some(m) = merged.as_deref_mut() {
            shift(&mut m.orders, self.orders, orders);
            shift(&mut m.gmv_usd_cents, self.gmv_usd_cents, gmv);
            shift(&mut m.carbon_grams, self.carbon_grams, carbon);
        }
        (self.orders, self.gmv_usd_cents, self.carbon_grams) = (orders, gmv, carbon);
        self.shoppers.apply_changes(
            &changes.shoppers,
            merged.as_deref_mut().map(|m| &mut m.shoppers),
        );
        self.minutes
            .apply_changes(&changes.minutes, merged.map(|m| &mut m.minutes));
    }

    pub fn restore(r: &mut Reader) -> Result<Aggregate, CheckpointError> {
        Ok(Aggregate {
            orders: r.u64()?,
            gmv_usd_cents: r.u64()?,
            carbon_grams: r.u64()?,
            shoppers: HyperLogLog::from_registers(r.len_prefixed()?)
                .ok_or(CheckpointError::Payload("HyperLogLog registers"))?,
            minutes: MinuteSeries::restore(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_788_000_000; // a minute boundary

    #[test]
    fn orders_land_in_their_event_time_minute() {
        let mut s = MinuteSeries::default();
        s.add(T0 + 5_000, 100, 0);
        s.add(T0 + 65_000, 200, 0);
        s.add(T0 + 10_000, 300, 0); // late, but its own minute
        let m0 = T0 / MINUTE_MS;
        assert_eq!(
            s.get(m0),
            MinuteBucket {
                orders: 2,
                usd_cents: 400,
                carbon_grams: 0
            }
        );
        assert_eq!(
            s.get(m0 + 1),
            MinuteBucket {
                orders: 1,
                usd_cents: 200,
                carbon_grams: 0
            }
        );
        assert_eq!(s.newest_minute(), Some(m0 + 1));
    }

    #[test]
    fn series_is_a_bounded_ring() {
        let mut s = MinuteSeries::default();
        assert!(s.add(T0, 1, 0));
        assert!(s.add(T0 + SERIES_MINUTES as i64 * MINUTE_MS, 1, 0));
        // The first minute's slot was reused; it reads as empty, and an
        // order that old is refused by the series.
        assert_eq!(s.get(T0 / MINUTE_MS), MinuteBucket::default());
        assert!(!s.add(T0, 1, 0));
    }

    #[test]
    fn history_is_dense_from_the_first_minute_to_the_newest() {
        let mut s = MinuteSeries::default();
        assert_eq!(s.history(), None);
        s.add(T0 + 3 * MINUTE_MS, 100, 7);
        s.add(T0, 50, 1);
        s.add(T0 + 3 * MINUTE_MS + 59_999, 1, 1);
        let (start, minutes) = s.history().expect("has minutes");
        assert_eq!(start, T0 / MINUTE_MS);
        let orders: Vec<u64> = minutes.iter().map(|b| b.orders).collect();
        assert_eq!(orders, [1, 0, 0, 2]);
        assert_eq!(minutes[3].usd_cents, 101);
        assert_eq!(minutes[3].carbon_grams, 8);
    }

    use proptest::prelude::*;

    /// One order: minute offset, cents, grams, buyer.
    type Order = (i64, u64, u64, u64);

    fn feed(orders: &[Order]) -> Aggregate {
        let mut a = Aggregate::default();
        for &(minute, cents, grams, buyer) in orders {
            let buyer = xxhash_rust::xxh3::xxh3_64(&buyer.to_le_bytes());
            a.add(cents, grams, buyer, T0 + minute * MINUTE_MS + 1, true);
        }
        a
    }

    fn same(a: &Aggregate, b: &Aggregate) -> bool {
        a.orders == b.orders
            && a.gmv_usd_cents == b.gmv_usd_cents
            && a.carbon_grams == b.carbon_grams
            && a.shoppers == b.shoppers
            && a.minutes.minutes() == b.minutes.minutes()
            && a.minutes.newest_minute() == b.minutes.newest_minute()
    }

    proptest! {
        /// Splitting a stream among any number of aggregators, in any
        /// interleaving, and merging them in any order gives the state of
        /// one aggregator fed the whole stream, including the per-minute
        /// ring's evictions (minutes span more than the ring).
        #[test]
        fn merging_any_split_equals_the_whole(
            orders in proptest::collection::vec((0i64..30_000, 0u64..100_000, 0u64..5_000, 0u64..500), 0..300),
            owner in proptest::collection::vec(0usize..4, 300),
            order in Just([3usize, 0, 2, 1]).prop_shuffle(),
        ) {
            let whole = feed(&orders);
            let mut parts: Vec<Vec<Order>> = vec![Vec::new(); 4];
            for (i, o) in orders.iter().enumerate() {
                parts[owner[i]].push(*o);
            }
            let states: Vec<Aggregate> = parts.iter().map(|p| feed(p)).collect();
            let mut merged = Aggregate::default();
            for i in order {
                merged.merge(&states[i]);
            }
            prop_assert!(same(&merged, &whole));
            // Identity, and commutativity of a pair.
            let mut with_identity = whole.clone();
            with_identity.merge(&Aggregate::default());
            prop_assert!(same(&with_identity, &whole));
            let (mut ab, mut ba) = (states[0].clone(), states[1].clone());
            ab.merge(&states[1]);
            ba.merge(&states[0]);
            prop_assert!(same(&ab, &ba));
        }
    }

    proptest! {
        #[test]
        fn breakdowns_merge_like_the_whole(
            orders in proptest::collection::vec((0u8..5, 0usize..5, 0u64..10_000, 0usize..3), 0..200),
        ) {
            let country = |i: u8| [b'A' + i, b'Z' - i];
            let channel = |i: usize| livemap_wire::Channel::ALL[i];
            let mut whole = Breakdowns::default();
            let mut parts = vec![Breakdowns::default(); 3];
            for &(c, ch, cents, owner) in &orders {
                whole.add(country(c), channel(ch), cents);
                parts[owner].add(country(c), channel(ch), cents);
            }
            let mut merged = Breakdowns::default();
            for p in parts.iter().rev() {
                merged.merge(p);
            }
            prop_assert_eq!(&merged, &whole);
            // Any grouping and order, and the empty state as identity.
            let mut ab = parts[0].clone();
            ab.merge(&parts[1]);
            let mut bc = parts[1].clone();
            bc.merge(&parts[2]);
            let (mut ab_c, mut a_bc) = (ab.clone(), parts[0].clone());
            ab_c.merge(&parts[2]);
            a_bc.merge(&bc);
            prop_assert_eq!(&ab_c, &a_bc);
            let mut ba = parts[1].clone();
            ba.merge(&parts[0]);
            prop_assert_eq!(&ab, &ba);
            let mut identity = whole.clone();
            identity.merge(&Breakdowns::default());
            prop_assert_eq!(&identity, &whole);
            let mut w = Writer::default();
            whole.export(&mut w);
            prop_assert_eq!(Breakdowns::restore(&mut Reader::new(&w.buf)).expect("restores"), whole);
        }
    }

    #[test]
    fn totals_are_exact_integers() {
        let mut a = Aggregate::default();
        for i in 0..1_000u64 {
            a.add(
                1_999,
                420,
                xxhash_rust::xxh3::xxh3_64(&(i % 10).to_le_bytes()),
                T0,
                true,
            );
        }
        assert_eq!(a.orders, 1_000);
        assert_eq!(a.gmv_usd_cents, 1_999_000);
        assert_eq!(a.carbon_grams, 420_000);
        assert_eq!(a.shoppers.estimate(), 10);
    }
}
