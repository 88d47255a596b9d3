//! Rankings over the whole sale: shops by unique shoppers, buyer cities by
//! orders.
//!
//! Both rank an unbounded key space (millions of shops, free-text city
//! names) in bounded memory. Each ranking is two parts:
//! - A sketch that merges exactly: a Count-Min grid of [`ROWS`] rows whose
//!   cells are themselves mergeable, an order counter for cities and a
//!   small HyperLogLog of buyer hashes for shops. A key lands in one cell
//!   per row; its estimate is the smallest of those cells. Other keys share
//!   the cells, so an estimate can be too high (by about the stream's total
//!   divided by the row width) but never too low. Merging adds counters and
//!   takes register maxima cell by cell, so the merged sketch is exactly the
//!   sketch of the whole stream.
//! - Candidates: the keys the ranking can name. A key joins as it is seen;
//!   when the list reaches twice [`CANDIDATES`], it is cut back to the
//!   [`CANDIDATES`] with the largest estimates. A shop that keeps selling
//!   keeps coming back, and comes back with its whole history, since the
//!   sketch never forgot it. Merging takes the union and cuts the same way,
//!   so while a stream has at most twice [`CANDIDATES`] distinct keys the
//!   merged list is exactly the whole stream's (property-tested); past
//!   that, only a key smaller than [`CANDIDATES`] others at a cut can be
//!   missing.
//!
//! Ties are broken by key, so rankings are stable from tick to tick.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use xxhash_rust::xxh3::xxh3_64;

use crate::aggregate::Merge;
use crate::checkpoint::{CheckpointError, Reader, Writer};
use crate::dedup::PassThrough;

/// Cells per key: the estimate is the smallest of this many.
pub const ROWS: usize = 3;
/// Keys the rankings keep in hand; the list grows to twice this between cuts.
pub const CANDIDATES: usize = 1_000;
/// Longest city name kept, in bytes; longer names are cut at a character
/// boundary.
pub const MAX_CITY_BYTES: usize = 64;

/// One cell of a Count-Min grid.
pub trait Cell: Clone + PartialEq + std::fmt::Debug {
    fn empty() -> Self;
    fn merge(&mut self, other: &Self);
    fn estimate(&self) -> u64;
    fn export(&self, w: &mut Writer);
    fn restore(r: &mut Reader) -> Result<Self, CheckpointError>;
    /// A cell's change as a change record carries it, checked.
    type Change: std::fmt::Debug;
    /// What changed from `before` (a cell that differs), for a change
    /// record.
    fn write_change(&self, before: &Self, w: &mut Writer);
    /// Reads what [`Cell::write_change`] wrote.
    fn read_change(r: &mut Reader) -> Result<Self::Change, CheckpointError>;
    /// Sets a change read, and brings `merged` (the same cell of a merged
    /// grid) along.
    fn apply_change(&mut self, change: &Self::Change, merged: Option<&mut Self>);
}

/// A Count-Min grid: `ROWS` rows of `width` cells (a power of two).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid<C: Cell> {
    width: usize,
    cells: Vec<C>,
}

impl<C: Cell> Grid<C> {
    fn new(width: usize) -> Self {
        debug_assert!(width.is_power_of_two());
        Grid {
            width,
            cells: vec![C::empty(); ROWS * width],
        }
    }

    /// The cell of `key_hash` in each row. Each row uses its own 21 bits of
    /// the (well-mixed) hash, so rows collide independently.
    fn slots(&self, key_hash: u64) -> [usize; ROWS] {
        std::array::from_fn(|row| {
            row * self.width + ((key_hash >> (row * 21)) as usize & (self.width - 1))
        })
    }

    fn update(&mut self, key_hash: u64, mut f: impl FnMut(&mut C)) {
        let width = self.width;
        for (row, cells) in self.cells.chunks_mut(width).enumerate() {
            f(&mut cells[(key_hash >> (row * 21)) as usize & (width - 1)]);
        }
    }

    fn estimate(&self, key_hash: u64) -> u64 {
        self.slots(key_hash)
            .iter()
            .map(|&i| self.cells[i].estimate())
            .min()
            .unwrap_or(0)
    }

    fn merge(&mut self, other: &Self) {
        for (a, b) in self.cells.iter_mut().zip(&other.cells) {
            a.merge(b);
        }
    }

    fn export(&self, w: &mut Writer) {
        for c in &self.cells {
            c.export(w);
        }
    }

    /// The cells that differ from `before`'s.
    fn write_changes(&self, before: &Self, w: &mut Writer) {
        let changed: Vec<usize> = (0..self.cells.len())
            .filter(|&i| self.cells[i] != before.cells[i])
            .collect();
        w.u64(changed.len() as u64);
        for i in changed {
            w.u32(i as u32);
            self.cells[i].write_change(&before.cells[i], w);
        }
    }

    fn read_changes(
        width: usize,
        r: &mut Reader,
    ) -> Result<Vec<(usize, C::Change)>, CheckpointError> {
        let mut changes = Vec::with_capacity(r.count(5)?);
        for _ in 0..changes.capacity() {
            let i = r.u32()? as usize;
            if i >= ROWS * width {
                return Err(CheckpointError::Payload("sketch cell"));
            }
            changes.push((i, C::read_change(r)?));
        }
        Ok(changes)
    }

    fn apply_changes(&mut self, changes: &[(usize, C::Change)], mut merged: Option<&mut Self>) {
        for (i, change) in changes {
            self.cells[*i].apply_change(change, merged.as_deref_mut().map(|m| &mut m.cells[*i]));
        }
    }

    fn restore(width: usize, r: &mut Reader) -> Result<Self, CheckpointError> {
        let mut g = Grid::new(width);
        for c in &mut g.cells {
            *c = C::restore(r)?;
        }
        Ok(g)
    }
}

/// An order counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count(pub u64);

impl Cell for Count {
    type Change = u64;
    fn empty() -> Self {
        Count(0)
    }
    fn merge(&mut self, other: &Self) {
        self.0 = self.0.saturating_add(other.0);
    }
    fn estimate(&self) -> u64 {
        self.0
    }
    fn export(&self, w: &mut Writer) {
        w.u64(self.0);
    }
    fn restore(r: &mut Reader) -> Result<Self, CheckpointError> {
        Ok(Count(r.u64()?))
    }
    fn write_change(&self, _before: &Self, w: &mut Writer) {
        w.u64(self.0);
    }
    fn read_change(r: &mut Reader) -> Result<u64, CheckpointError> {
        r.u64()
    }
    fn apply_change(&mut self, new: &u64, merged: Option<&mut Self>) {
        if let Some(m) = merged {
            crate::aggregate::shift(&mut m.0, self.0, *new);
        }
        self.0 = *new;
    }
}

const SMALL_P: u32 = 7;
const SMALL_M: usize = 1 << SMALL_P;
/// 2^-register in fixed point (2^64 = 1.0), so the sum behind the estimate
/// is an exact integer whatever order registers changed in.
const ONE: u128 = 1 << 64;

/// A 128-register HyperLogLog (standard error about 9 %), with the sum
/// behind its estimate kept up to date so that estimating is O(1): the
/// rankings estimate on every cut.
#[derive(Clone, PartialEq, Eq)]
pub struct SmallHll {
    registers: [u8; SMALL_M],
    /// Sum of 2^-register over all registers, in fixed point.
    sum: u128,
    zeros: u16,
}

impl std::fmt::Debug for SmallHll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmallHll(~{})", self.estimate())
    }
}

impl SmallHll {
    pub fn insert_hash(&mut self, hash: u64) {
        let index = (hash >> (64 - SMALL_P)) as usize;
        let rest = (hash << SMALL_P) | (1 << (SMALL_P - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        self.raise(index, rank);
    }

    /// Sets a register to `rank`, lower or higher, keeping the sums exact.
    fn set(&mut self, index: usize, rank: u8) {
        let r = self.registers[index];
        if r == rank {
            return;
        }
        if r == 0 {
            self.zeros -= 1;
        }
        if rank == 0 {
            self.zeros += 1;
        }
        self.sum = self.sum - (ONE >> r) + (ONE >> rank);
        self.registers[index] = rank;
    }

    fn raise(&mut self, index: usize, rank: u8) {
        let r = &mut self.registers[index];
        if rank > *r {
            if *r == 0 {
                self.zeros -= 1;
            }
            self.sum = self.sum - (ONE >> *r) + (ONE >> rank);
            *r = rank;
        }
    }
}

impl Cell for SmallHll {
    type Change = Vec<(u8, u8)>;
    fn empty() -> Self {
        SmallHll {
            registers: [0; SMALL_M],
            sum: ONE * SMALL_M as u128,
            zeros: SMALL_M as u16,
        }
    }

    fn merge(&mut self, other: &Self) {
        for (i, &rank) in other.registers.iter().enumerate() {
            self.raise(i, rank);
        }
    }

    fn estimate(&self) -> u64 {
        let m = SMALL_M as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / (self.sum as f64 / ONE as f64);
        let estimate = if raw <= 2.5 * m && self.zeros > 0 {
            m * (m / f64::from(self.zeros)).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }

    fn export(&self, w: &mut Writer) {
        w.buf.extend_from_slice(&self.registers);
    }

    fn restore(r: &mut Reader) -> Result<Self, CheckpointError> {
        let mut h = SmallHll::empty();
        for (i, &rank) in r.bytes(SMALL_M)?.iter().enumerate() {
            if u32::from(rank) > 65 - SMALL_P {
                return Err(CheckpointError::Payload("HyperLogLog register"));
            }
            h.raise(i, rank);
        }
        Ok(h)
    }

    /// The registers that differ: (index, value) pairs. Registers only
    /// rise, and a merged cell takes their maximum.
    fn write_change(&self, before: &Self, w: &mut Writer) {
        let changed: Vec<(u8, u8)> = (0..SMALL_M)
            .filter(|&i| self.registers[i] != before.registers[i])
            .map(|i| (i as u8, self.registers[i]))
            .collect();
        w.u8(changed.len() as u8);
        for (i, v) in changed {
            w.u8(i);
            w.u8(v);
        }
    }

    fn read_change(r: &mut Reader) -> Result<Vec<(u8, u8)>, CheckpointError> {
        let n = r.u8()?;
        let mut changes = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let (i, v) = (r.u8()?, r.u8()?);
            if usize::from(i) >= SMALL_M || u32::from(v) > 65 - SMALL_P {
                return Err(CheckpointError::Payload("HyperLogLog register"));
            }
            changes.push((i, v));
        }
        Ok(changes)
    }

    fn apply_change(&mut self, changes: &Vec<(u8, u8)>, mut merged: Option<&mut Self>) {
        for &(i, v) in changes {
            self.set(usize::from(i), v);
            if let Some(m) = merged.as_deref_mut() {
                m.raise(usize::from(i), v);
            }
        }
    }
}

/// What a ranking says about a key besides its estimate.
pub trait Label: Clone + Ord + std::fmt::Debug {
    fn export(&self, w: &mut Writer);
    fn restore(r: &mut Reader) -> Result<Self, CheckpointError>;
}

/// A sketch plus the keys it can name (see the module docs).
#[derive(Debug, Clone)]
pub struct Ranking<C: Cell, L: Label> {
    grid: Grid<C>,
    /// Key hash → what to show for it.
    candidates: HashMap<u64, L, BuildHasherDefault<PassThrough>>,
    /// The smallest estimate kept at the last cut: a key with less than
    /// this cannot rank, so it is not made a candidate. Without this bar,
    /// a long tail of small shops would churn through the list on every
    /// order. Zero until the first cut, so small streams keep every key.
    bar: u64,
}

/// Rankings are equal when they hold the same sketch and name the same
/// keys; the admission bar is a cache of the last cut.
impl<C: Cell, L: Label> PartialEq for Ranking<C, L> {
    fn eq(&self, other: &Self) -> bool {
        self.grid == other.grid && self.candidates == other.candidates
    }
}

/// One ranked key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked<L> {
    pub label: L,
    pub estimate: u64,
}

impl<C: Cell, L: Label> Ranking<C, L> {
    fn new(width: usize) -> Self {
        Ranking {
            grid: Grid::new(width),
            candidates: HashMap::default(),
            bar: 0,
        }
    }

    /// Counts `key_hash` in every cell it owns with `update`, and makes it a
    /// candidate (`label` is only called for a key not yet on the list).
    fn add(&mut self, key_hash: u64, label: impl FnOnce() -> L, mut update: impl FnMut(&mut C)) {
        self.grid.update(key_hash, &mut update);
        if !self.candidates.contains_key(&key_hash)
            && (self.bar == 0 || self.grid.estimate(key_hash) >= self.bar)
        {
            self.candidates.insert(key_hash, label());
            if self.candidates.len() >= 2 * CANDIDATES {
                self.cut();
            }
        }
    }

    /// Keeps the [`CANDIDATES`] keys with the largest estimates.
    fn cut(&mut self) {
        let mut estimates: Vec<(u64, u64)> = self
            .candidates
            .keys()
            .map(|&h| (self.grid.estimate(h), h))
            .collect();
        // Largest estimates first; ties by hash, so that every state cuts
        // the same way whatever order its keys arrived in.
        estimates.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        estimates.truncate(CANDIDATES);
        self.bar = estimates.last().map_or(0, |e| e.0).max(1);
        let keep: std::collections::HashSet<u64> = estimates.into_iter().map(|(_, h)| h).collect();
        self.candidates.retain(|h, _| keep.contains(h));
    }

    /// The `n` keys with the largest estimates, ties by label then hash.
    /// Labels are copied only for those `n`: this runs every tick.
    pub fn top(&self, n: usize) -> Vec<Ranked<L>> {
        let mut v: Vec<(u64, u64, &L)> = self
            .candidates
            .iter()
            .map(|(&h, l)| (self.grid.estimate(h), h, l))
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(b.2)).then(a.1.cmp(&b.1)));
        v.into_iter()
            .take(n)
            .map(|(estimate, _, label)| Ranked {
                label: label.clone(),
                estimate,
            })
            .collect()
    }

    fn export(&self, w: &mut Writer) {
        self.grid.export(w);
        w.u64(self.bar);
        w.u64(self.candidates.len() as u64);
        let mut keys: Vec<_> = self.candidates.iter().collect();
        keys.sort_by_key(|(h, _)| **h);
        for (h, l) in keys {
            w.u64(*h);
            l.export(w);
        }
    }

    fn restore(width: usize, r: &mut Reader) -> Result<Self, CheckpointError> {
        let grid = Grid::restore(width, r)?;
        let bar = r.u64()?;
        let n = r.count(9)?;
        if n > 2 * CANDIDATES {
            return Err(CheckpointError::Payload("too many ranking candidates"));
        }
        let mut candidates = HashMap::default();
        for _ in 0..n {
            let h = r.u64()?;
            candidates.insert(h, L::restore(r)?);
        }
        Ok(Ranking {
            grid,
            candidates,
            bar,
        })
    }
}

impl<C: Cell, L: Label> Ranking<C, L> {
    /// The admission bar, the sketch's changed cells, and the candidates
    /// added (or renamed) and dropped since `before`.
    fn write_changes(&self, before: &Self, w: &mut Writer) {
        w.u64(self.bar);
        self.grid.write_changes(&before.grid, w);
        let mut added: Vec<(&u64, &L)> = self
            .candidates
            .iter()
            .filter(|(h, l)| before.candidates.get(h) != Some(l))
            .collect();
        added.sort_by_key(|(h, _)| **h);
        w.u64(added.len() as u64);
        for (h, l) in added {
            w.u64(*h);
            l.export(w);
        }
        let mut dropped: Vec<u64> = before
            .candidates
            .keys()
            .filter(|h| !self.candidates.contains_key(h))
            .copied()
            .collect();
        dropped.sort_unstable();
        w.u64(dropped.len() as u64);
        for h in dropped {
            w.u64(h);
        }
    }

    fn read_changes(width: usize, r: &mut Reader) -> Result<RankingChanges<C, L>, CheckpointError> {
        let bar = r.u64()?;
        let cells = Grid::<C>::read_changes(width, r)?;
        let n = r.count(9)?;
        if n > 2 * CANDIDATES {
            return Err(CheckpointError::Payload("too many ranking candidates"));
        }
        let mut added = Vec::with_capacity(n);
        for _ in 0..n {
            added.push((r.u64()?, L::restore(r)?));
        }
        let mut dropped = Vec::with_capacity(r.count(8)?);
        for _ in 0..dropped.capacity() {
            dropped.push(r.u64()?);
        }
        Ok(RankingChanges {
            bar,
            cells,
            added,
            dropped,
        })
    }

    /// Sets what was read. `merged` takes the sketch's changes and the
    /// added candidates, and cuts its own list as a merge does; a
    /// candidate one side dropped stays until the merged list's own cut.
    /// The list held never passes its bound.
    fn apply_changes(&mut self, changes: &RankingChanges<C, L>, mut merged: Option<&mut Self>) {
        self.bar = changes.bar;
        self.grid
            .apply_changes(&changes.cells, merged.as_deref_mut().map(|m| &mut m.grid));
        for h in &changes.dropped {
            self.candidates.remove(h);
        }
        for (h, l) in &changes.added {
            if let Some(m) = merged.as_deref_mut() {
                let entry = m.candidates.entry(*h).or_insert_with(|| l.clone());
                if l < entry {
                    *entry = l.clone();
                }
                if m.candidates.len() >= 2 * CANDIDATES {
                    m.cut();
                }
            }
            if self.candidates.len() < 2 * CANDIDATES || self.candidates.contains_key(h) {
                self.candidates.insert(*h, l.clone());
            }
        }
    }
}

impl<C: Cell, L: Label> Merge for Ranking<C, L> {
    fn merge(&mut self, other: &Self) {
        self.grid.merge(&other.grid);
        for (h, l) in &other.candidates {
            // Both sides name the same key the same way unless two keys
            // collide in 64 bits; the smaller label keeps merging
            // commutative even then.
            let entry = self.candidates.entry(*h).or_insert_with(|| l.clone());
            if l < entry {
                *entry = l.clone();
            }
        }
        if self.candidates.len() >= 2 * CANDIDATES {
            self.cut();
        }
    }
}

/// What the shop ranking shows: the shop and where it is (the snapshot
/// stage publishes only the nearest large city, never the coordinates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShopLabel {
    pub id: u64,
    pub country: [u8; 2],
    pub lat: f32,
    pub lon: f32,
}

impl Eq for ShopLabel {}

impl PartialOrd for ShopLabel {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShopLabel {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.id, self.country)
            .cmp(&(other.id, other.country))
            .then_with(|| self.lat.total_cmp(&other.lat))
            .then_with(|| self.lon.total_cmp(&other.lon))
    }
}

impl Label for ShopLabel {
    fn export(&self, w: &mut Writer) {
        w.u64(self.id);
        w.u8(self.country[0]);
        w.u8(self.country[1]);
        w.u64(u64::from(self.lat.to_bits()));
        w.u64(u64::from(self.lon.to_bits()));
    }
    fn restore(r: &mut Reader) -> Result<Self, CheckpointError> {
        let id = r.u64()?;
        let country = [r.u8()?, r.u8()?];
        let bits = |v: u64| u32::try_from(v).map_err(|_| CheckpointError::Payload("coordinate"));
        Ok(ShopLabel {
            id,
            country,
            lat: f32::from_bits(bits(r.u64()?)?),
            lon: f32::from_bits(bits(r.u64()?)?),
        })
    }
}

/// A buyer city: its name as the events spell it, and the buyer's country.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CityLabel {
    pub country: [u8; 2],
    pub name: String,
}

impl Label for CityLabel {
    fn export(&self, w: &mut Writer) {
        w.u8(self.country[0]);
        w.u8(self.country[1]);
        w.str(&self.name);
    }
    fn restore(r: &mut Reader) -> Result<Self, CheckpointError> {
        Ok(CityLabel {
            country: [r.u8()?, r.u8()?],
            name: r.string()?,
        })
    }
}

const SHOP_WIDTH: usize = 4_096;
const CITY_WIDTH: usize = 16_384;

/// A change record's ranking, checked: the admission bar, the changed
/// cells, and the candidates added and dropped.
#[derive(Debug)]
pub struct RankingChanges<C: Cell, L: Label> {
    bar: u64,
    cells: Vec<(usize, C::Change)>,
    added: Vec<(u64, L)>,
    dropped: Vec<u64>,
}

/// A change record's rankings, checked.
#[derive(Debug)]
pub struct RankingsChanges {
    shops: RankingChanges<SmallHll, ShopLabel>,
    cities: RankingChanges<Count, CityLabel>,
}

/// Shops by estimated unique shoppers and buyer cities by estimated orders.
#[derive(Debug, Clone, PartialEq)]
pub struct Rankings {
    pub shops: Ranking<SmallHll, ShopLabel>,
    pub cities: Ranking<Count, CityLabel>,
}

impl Default for Rankings {
    fn default() -> Self {
        Rankings {
            shops: Ranking::new(SHOP_WIDTH),
            cities: Ranking::new(CITY_WIDTH),
        }
    }
}

/// The key of a city: the same name in two countries is two cities.
pub fn city_hash(country: [u8; 2], name: &str) -> u64 {
    xxh3_64(name.as_bytes())
        ^ u64::from(u16::from_le_bytes(country)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A city name fit to keep and publish: trimmed, without control
/// characters, at most [`MAX_CITY_BYTES`], and whether it had to be cut.
/// `None` when nothing is left.
pub fn clean_city(name: &str) -> Option<(&str, bool)> {
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        return None;
    }
    let kept = crate::trends::cut_to(name, MAX_CITY_BYTES).trim_end();
    Some((kept, kept.len() < name.len()))
}

impl Rankings {
    /// Counts one order: its shop gains the buyer, its city (if the event
    /// names one) an order.
    pub fn add(&mut self, shop: ShopLabel, buyer_hash: u64, city: Option<(&str, [u8; 2])>) {
        // Shop ids are small integers: mix them before slicing bits.
        let shop_hash = xxh3_64(&shop.id.to_le_bytes());
        self.shops
            .add(shop_hash, || shop, |cell| cell.insert_hash(buyer_hash));
        if let Some((name, country)) = city {
            self.cities.add(
                city_hash(country, name),
                || CityLabel {
                    country,
                    name: name.to_owned(),
                },
                |cell| cell.0 += 1,
            );
        }
    }

    pub fn export(&self, w: &mut Writer) {
        self.shops.export(w);
        self.cities.export(w);
    }

    /// What changed since `before` (see `ingest/changes.rs`).
    pub fn write_changes(&self, before: &Rankings, w: &mut Writer) {
        self.shops.write_changes(&before.shops, w);
        self.cities.write_changes(&before.cities, w);
    }

    /// Reads what [`Rankings::write_changes`] wrote.
    pub fn read_changes(r: &mut Reader) -> Result<RankingsChanges, CheckpointError> {
        Ok(RankingsChanges {
            shops: Ranking::read_changes(SHOP_WIDTH, r)?,
            cities: Ranking::read_changes(CITY_WIDTH, r)?,
        })
    }

    /// Sets what was read; `merged` follows.
    pub fn apply_changes(&mut self, changes: &RankingsChanges, mut merged: Option<&mut Rankings>) {
        self.shops
            .apply_changes(&changes.shops, merged.as_deref_mut().map(|m| &mut m.shops));
        self.cities
            .apply_changes(&changes.cities, merged.map(|m| &mut m.cities));
    }

    pub fn restore(r: &mut Reader) -> Result<Rankings, CheckpointError> {
        Ok(Rankings {
            shops: Ranking::restore(SHOP_WIDTH, r)?,
            cities: Ranking::restore(CITY_WIDTH, r)?,
        })
    }
}

impl Merge for Rankings {
    fn merge(&mut self, other: &Self) {
        self.shops.merge(&other.shops);
        self.cities.merge(&other.cities);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shop(id: u64) -> ShopLabel {
        ShopLabel {
            id,
            country: *b"CA",
            lat: 43.65,
            lon: -79.38,
        }
    }

    fn buyer(i: u64) -> u64 {
        xxh3_64(&i.to_le_bytes())
    }

    #[test]
    fn small_hll_estimates_within_its_error_and_sums_stay_exact() {
        for n in [0u64, 1, 10, 100, 1_000, 10_000, 100_000] {
            let mut h = SmallHll::empty();
            for i in 0..n {
                h.insert_hash(buyer(i));
            }
            let e = h.estimate() as f64;
            let tolerance = (n as f64 * 0.3).max(2.0);
            assert!((e - n as f64).abs() <= tolerance, "n={n} estimate={e}");
            // The incremental sum equals the sum from scratch.
            let mut w = Writer::default();
            h.export(&mut w);
            let back = SmallHll::restore(&mut Reader::new(&w.buf)).expect("restores");
            assert_eq!(back, h);
        }
    }

    #[test]
    fn the_biggest_shops_and_cities_come_out_on_top() {
        let mut r = Rankings::default();
        let mut b = 0u64;
        // Shop 1 has 5,000 distinct shoppers, shop 2 has 2,000 and 3,000
        // small shops have a handful each: more than the candidate list holds.
        for (id, shoppers) in [(1u64, 5_000u64), (2, 2_000)] {
            for _ in 0..shoppers {
                b += 1;
                r.add(shop(id), buyer(b), Some(("Austin", *b"US")));
            }
        }
        for id in 100..3_100u64 {
            for _ in 0..3 {
                b += 1;
                r.add(shop(id), buyer(b), Some((&format!("Town {id}"), *b"FR")));
            }
        }
        // Shop 1 keeps selling to the same shoppers: no new uniques.
        for i in 0..1_000 {
            r.add(shop(1), buyer(i + 1), None);
        }
        let top = r.shops.top(2);
        assert_eq!(top[0].label.id, 1);
        assert_eq!(top[1].label.id, 2);
        let e = top[0].estimate as f64;
        assert!((e - 5_000.0).abs() < 5_000.0 * 0.3, "{e}");
        let cities = r.cities.top(1);
        assert_eq!(cities[0].label.name, "Austin");
        assert!(cities[0].estimate >= 7_000, "never an underestimate");
        assert!(r.shops.candidates.len() < 2 * CANDIDATES);
    }

    #[test]
    fn city_names_are_cleaned() {
        assert_eq!(clean_city("  Austin "), Some(("Austin", false)));
        assert_eq!(clean_city(""), None);
        assert_eq!(clean_city("a\u{0}b"), None);
        let long = "é".repeat(100);
        let (cut, was_cut) = clean_city(&long).expect("kept");
        assert!(was_cut);
        assert!(cut.len() <= MAX_CITY_BYTES && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn export_and_restore_keep_everything() {
        let mut r = Rankings::default();
        for i in 0..500u64 {
            r.add(
                shop(i % 37),
                buyer(i),
                Some((["Lyon", "Nice"][i as usize % 2], *b"FR")),
            );
        }
        let mut w = Writer::default();
        r.export(&mut w);
        let back = Rankings::restore(&mut Reader::new(&w.buf)).expect("restores");
        assert_eq!(back, r);
        assert!(Rankings::restore(&mut Reader::new(&w.buf[..w.buf.len() - 1])).is_err());
    }

    /// One order: shop, buyer, city.
    type Order = (u64, u64, u8);

    fn feed(orders: &[Order]) -> Rankings {
        let mut r = Rankings::default();
        for &(s, b, c) in orders {
            let city = (c > 0).then(|| (["", "Oslo", "Bergen", "Paris"][c as usize], *b"NO"));
            r.add(shop(s), buyer(b), city);
        }
        r
    }

    proptest! {
        // Each case builds a dozen 2 MB sketches; fewer cases keep the
        // debug-build test quick while still covering many splits.
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Any split of a stream, merged in any order, gives the state of
        /// the whole stream: sketches, candidates and rankings.
        #[test]
        fn merging_any_split_equals_the_whole(
            orders in proptest::collection::vec((0u64..60, 0u64..400, 0u8..4), 0..300),
            owner in proptest::collection::vec(0usize..3, 300),
        ) {
            let whole = feed(&orders);
            let mut parts = vec![Vec::new(); 3];
            for (i, o) in orders.iter().enumerate() {
                parts[owner[i]].push(*o);
            }
            let states: Vec<Rankings> = parts.iter().map(|p| feed(p)).collect();
            let mut merged = Rankings::default();
            for s in states.iter().rev() {
                merged.merge(s);
            }
            prop_assert_eq!(&merged, &whole);
            prop_assert_eq!(merged.shops.top(10), whole.shops.top(10));
            let (mut ab, mut ba) = (states[0].clone(), states[1].clone());
            ab.merge(&states[1]);
            ba.merge(&states[0]);
            prop_assert_eq!(&ab, &ba);
            let mut identity = whole.clone();
            identity.merge(&Rankings::default());
            prop_assert_eq!(&identity, &whole);
        }
    }
}
