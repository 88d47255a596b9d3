//! The engine's partition ownership and hand-over: which partitions it
//! counts, from which offset, under which assignment, and where another
//! member may take one over. What makes counting idempotent per offset.

use std::collections::{BTreeMap, VecDeque};

use super::Engine;
use crate::aggregate::MINUTE_MS;

/// What the engine knows of one source partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PartitionState {
    /// The next offset to count: everything before it is in the state.
    pub(super) next_offset: i64,
    /// The assignment this engine accepts messages from; messages fetched
    /// under an earlier assignment may have been counted by another member.
    pub(super) generation: u64,
    pub(super) owned: bool,
    /// Where each recent minute of event time began in this partition:
    /// (minute, first offset), oldest first, one per minute within the
    /// de-duplication horizon. A member taking the partition over re-reads
    /// from the oldest, so its filter knows every id the old owner knew.
    pub(super) marks: VecDeque<(i64, i64)>,
    /// Whether this engine's filter knows the partition's recent ids. Not
    /// after a restore from a record without the filter
    /// ([`Engine::export_view`]): the partition is then re-read from its
    /// first mark.
    pub(super) learned: bool,
    /// For a by-id partition: per origin partition, the furthest origin
    /// offset counted.
    pub(super) origins: BTreeMap<i32, i64>,
    /// For a by-id partition: per origin partition, the newest block of
    /// filtered messages and how many of them were counted.
    pub(super) blocks: BTreeMap<i32, (i64, u32)>,
    /// The offset this assignment resumes counting at, until a message at
    /// or past it is read (not persisted).
    pub(super) resume_at: Option<i64>,
}

impl PartitionState {
    /// Notes that an event of `event_time_ms` was counted at `offset`.
    pub(super) fn mark(&mut self, offset: i64, event_time_ms: i64, horizon_minutes: i64) {
        let minute = event_time_ms.div_euclid(MINUTE_MS);
        if self.marks.back().is_some_and(|&(m, _)| m >= minute) {
            return;
        }
        self.marks.push_back((minute, offset));
        while self
            .marks
            .front()
            .is_some_and(|&(m, _)| m < minute - horizon_minutes)
        {
            self.marks.pop_front();
        }
    }
}

/// Where a newly assigned partition resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub partition: i32,
    /// The first offset to count; `None` where nothing has seen the
    /// partition (the consumer's reset policy decides).
    pub count_from: Option<i64>,
    /// The first offset to read: before `count_from` when the filter must
    /// first re-learn ids another member saw, which are then not counted.
    pub read_from: Option<i64>,
}

/// A partition's position as another member left it (from its state
/// record, or the group's committed offset with no marks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handover {
    pub next_offset: i64,
    /// That member's minute marks (see `PartitionState::marks`).
    pub marks: VecDeque<(i64, i64)>,
    /// That member's furthest origin offsets (see `PartitionState::origins`).
    pub origins: BTreeMap<i32, i64>,
    /// That member's filtered blocks (see `PartitionState::blocks`).
    pub blocks: BTreeMap<i32, (i64, u32)>,
}

impl Handover {
    /// Only an offset, as the group's committed offsets say.
    pub fn at(next_offset: i64) -> Self {
        Handover {
            next_offset,
            ..Handover::default()
        }
    }
}

/// Where to start reading so the filter learns every id within the
/// horizon: the first minute mark, or the next offset if there is none.
fn warm_from(marks: &VecDeque<(i64, i64)>, next_offset: i64) -> i64 {
    marks
        .front()
        .map_or(next_offset, |&(_, o)| o.min(next_offset))
}

impl Engine {
    /// Resumes every partition where this state ends, whatever the
    /// group's committed offsets say: for a single process restored from
    /// its previous checkpoint, whose newer progress (and commits) went
    /// with the unreadable newest one. Holds for the next assignment.
    pub fn resume_from_own_positions(&mut self) {
        self.own_positions_only = true;
    }

    /// Takes ownership of partitions under a new assignment generation and
    /// says where to resume each. `handed` is, per partition, where another
    /// member left it (its state record, or the group's committed offset):
    /// offsets this state has not reached but another member has were
    /// counted by that member, so counting resumes at the later of the two.
    /// When the other member is ahead, reading starts earlier, where its
    /// de-duplication memory of the partition begins, and what lies before
    /// the resume point only teaches this filter the ids it saw.
    pub fn assign(&mut self, handed: &[(i32, Option<Handover>)], generation: u64) -> Vec<Resume> {
        // Only the first assignment after the restore: later ones may hand
        // over partitions another member counted since.
        let own_only = std::mem::take(&mut self.own_positions_only);
        handed
            .iter()
            .map(|(p, other)| {
                let other = other.as_ref().filter(|_| !own_only);
                let state = self.partitions.entry(*p).or_insert(PartitionState {
                    next_offset: -1,
                    ..PartitionState::default()
                });
                let mine = (state.next_offset >= 0).then_some(state.next_offset);
                state.generation = generation;
                state.owned = true;
                let mut read_from = match mine {
                    Some(m) if !state.learned => Some(warm_from(&state.marks, m)),
                    m => m,
                };
                if let Some(other) = other.filter(|o| Some(o.next_offset) > mine) {
                    let other_from = warm_from(&other.marks, other.next_offset);
                    // Ids this state counted itself are already in the filter.
                    read_from = Some(match mine {
                        Some(m) if state.learned => m.max(other_from),
                        _ => other_from,
                    });
                    state.next_offset = other.next_offset;
                    state.marks = other.marks.clone();
                    state.origins = other.origins.clone();
                    state.blocks = other.blocks.clone();
                }
                // What is read from `read_from` on teaches the filter.
                state.learned = true;
                let count_from = (state.next_offset >= 0).then_some(state.next_offset);
                state.resume_at = count_from;
                if count_from.is_none() {
                    // Neither this state nor another member has seen it: the
                    // first message read is the first counted.
                    state.next_offset = 0;
                }
                Resume {
                    partition: *p,
                    count_from,
                    read_from,
                }
            })
            .collect()
    }

    /// Where this state left partition `p`, for a member taking it over.
    pub fn handover(&self, p: i32) -> Option<Handover> {
        self.partitions.get(&p).map(|s| Handover {
            next_offset: s.next_offset,
            marks: s.marks.clone(),
            origins: s.origins.clone(),
            blocks: s.blocks.clone(),
        })
    }

    /// Gives partitions up: messages from them are no longer counted until
    /// they are assigned again. Their offsets stay in the state.
    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            if let Some(s) = self.partitions.get_mut(p) {
                s.owned = false;
            }
        }
    }

    /// Partitions this engine currently counts.
    pub fn owned_partitions(&self) -> Vec<i32> {
        self.partitions
            .iter()
            .filter(|(_, s)| s.owned)
            .map(|(&p, _)| p)
            .collect()
    }

    /// Next offsets of the partitions this engine owns, and of `also`:
    /// what a member may commit to the group. Committing partitions it no
    /// longer owns would overwrite the new owner's progress.
    pub fn committable_positions(&self, also: &[i32]) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter(|(p, s)| s.owned || also.contains(p))
            .map(|(&p, s)| (p, s.next_offset))
            .collect()
    }

    /// Every partition's next offset: what a checkpoint of this state may
    /// commit to the source.
    pub fn positions(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .map(|(&p, s)| (p, s.next_offset))
            .collect()
    }
}
