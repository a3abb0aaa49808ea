//! The client-slot pool (ACIP-SPEC.md 7.1 and 7.5-7.6): a fixed array of slots (MAX_CLIENTS = 32) with an
//! active-client limit (`--max-clients`, 9), shared by every task of a server.
//!
//! The old server leaked slots (WS clients never removed, fixed in 4dce9818) and raced its teardown paths
//! (receive callback vs CLOSED vs `remove_client`, 7.6). Here:
//! - each slot is one atomic word holding `(generation, state)`, changed only by compare-and-swap, so every
//!   transition is all-or-nothing;
//! - a [`SlotHandle`] carries the generation it was reserved under, and [`SlotPool::release`] bumps the
//!   generation, so a stale handle can never act on a reused slot;
//! - [`SlotPool::release`] returns `true` for exactly one caller however many race (reader, writer, close
//!   path), which is the one that must free per-client resources.
//!
//! Lifecycle: `Free → Reserved → Active → Draining → Free`; `Reserved → Draining` (torn down before it
//! became active) and `release` from any taken state are allowed. Only `Active` counts against
//! `max_active`. Built on [`crate::sync`] so the loom models below check this very code.

use std::fmt;

use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// MAX_CLIENTS: slots in the array (ACIP-SPEC.md 7.1).
pub const DEFAULT_CAPACITY: usize = 32;
/// `--max-clients` default: clients active at once (ACIP-SPEC.md 7.1).
pub const DEFAULT_MAX_ACTIVE: usize = 9;

/// Where a slot is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotState {
    Free,
    /// Taken by a connection that is still handshaking.
    Reserved,
    /// A client counted against the active limit.
    Active,
    /// Being torn down: no longer active, not yet free.
    Draining,
}

impl SlotState {
    const fn to_bits(self) -> u64 {
        match self {
            SlotState::Free => 0,
            SlotState::Reserved => 1,
            SlotState::Active => 2,
            SlotState::Draining => 3,
        }
    }

    const fn from_bits(bits: u64) -> SlotState {
        match bits & 0xFF {
            1 => SlotState::Reserved,
            2 => SlotState::Active,
            3 => SlotState::Draining,
            _ => SlotState::Free,
        }
    }
}

impl fmt::Display for SlotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlotState::Free => "free",
            SlotState::Reserved => "reserved",
            SlotState::Active => "active",
            SlotState::Draining => "draining",
        })
    }
}

/// A claim on one slot, valid until the slot is released. Copy it freely: every party of a connection
/// (reader, writer, close path) may hold one; the generation keeps old copies harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotHandle {
    index: u16,
    generation: u32,
}

impl SlotHandle {
    /// Position in the slot array (what the C server called the client's slot).
    pub fn index(&self) -> usize {
        usize::from(self.index)
    }

    /// How many times this slot had been released before this claim.
    pub fn generation(&self) -> u32 {
        self.generation
    }
}

impl fmt::Display for SlotHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slot {} (generation {})", self.index, self.generation)
    }
}

/// Slot pool errors. `Full` and `ActiveLimit` are load; `Stale` and `WrongState` are a caller acting on a
/// handle after (or out of) its lifecycle, which the pool refuses instead of corrupting another client.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("no free client slot: all {capacity} slots are in use")]
    Full { capacity: usize },
    #[error("active-client limit of {max_active} reached")]
    ActiveLimit { max_active: usize },
    #[error("{handle} is stale: the slot was released (and possibly reused) since it was reserved")]
    Stale { handle: SlotHandle },
    #[error("{handle} cannot {op}: it is {state}")]
    WrongState { handle: SlotHandle, state: SlotState, op: &'static str },
}

/// Deliberately broken variants, selectable only in tests and loom models (the field that picks one does not
/// exist in other builds), to show that the models catch them.
#[cfg_attr(not(any(test, loom)), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bug {
    /// Correct code.
    None,
    /// `release` decrements the in-use count with a separate load and store: two releases at once lose a
    /// decrement and the pool believes a slot is still taken (the 4dce9818 "all 32 slots in use" symptom).
    LeakyRelease,
    /// `release` and the other transitions compare only the slot index, not the generation: a stale handle
    /// (a late receive path) frees or drains the slot's next tenant.
    NoGenerationCheck,
}

const STATE_BITS: u32 = 8;

const fn word(generation: u32, state: SlotState) -> u64 {
    (generation as u64) << STATE_BITS | state.to_bits()
}

const fn generation_of(word: u64) -> u32 {
    (word >> STATE_BITS) as u32
}

/// The pool. Share it behind an `Arc`; every method takes `&self` and is lock-free.
#[derive(Debug)]
pub struct SlotPool {
    slots: Box<[AtomicU64]>,
    max_active: usize,
    in_use: AtomicUsize,
    active: AtomicUsize,
    #[cfg(any(test, loom))]
    bug: Bug,
}

impl Default for SlotPool {
    fn default() -> Self {
        SlotPool::new(DEFAULT_CAPACITY, DEFAULT_MAX_ACTIVE)
    }
}

impl SlotPool {
    /// A pool of `capacity` slots (at most 65 536) of which `max_active` may be active at once.
    pub fn new(capacity: usize, max_active: usize) -> Self {
        let capacity = capacity.min(usize::from(u16::MAX) + 1);
        SlotPool {
            slots: (0..capacity).map(|_| AtomicU64::new(word(0, SlotState::Free))).collect(),
            max_active,
            in_use: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            #[cfg(any(test, loom))]
            bug: Bug::None,
        }
    }

    #[cfg(any(test, loom))]
    #[allow(dead_code)]
    pub(crate) fn with_bug(capacity: usize, max_active: usize, bug: Bug) -> Self {
        SlotPool { bug, ..SlotPool::new(capacity, max_active) }
    }

    fn bug(&self) -> Bug {
        #[cfg(any(test, loom))]
        return self.bug;
        #[cfg(not(any(test, loom)))]
        return Bug::None;
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn max_active(&self) -> usize {
        self.max_active
    }

    /// Slots not free (reserved, active or draining).
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }

    /// Slots active.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Claims the lowest free slot. `Full` when every slot was seen taken during one pass (under concurrent
    /// releases a pass can miss a slot freed behind it; the server answers SERVER_FULL either way).
    pub fn reserve(&self) -> Result<SlotHandle, SlotError> {
        for (index, slot) in self.slots.iter().enumerate() {
            let cur = slot.load(Ordering::Acquire);
            if SlotState::from_bits(cur) != SlotState::Free {
                continue;
            }
            let generation = generation_of(cur);
            let claimed = word(generation, SlotState::Reserved);
            if slot.compare_exchange(cur, claimed, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                self.in_use.fetch_add(1, Ordering::AcqRel);
                return Ok(SlotHandle { index: index as u16, generation });
            }
        }
        Err(SlotError::Full { capacity: self.capacity() })
    }

    /// `Reserved → Active`, if the active limit allows.
    pub fn activate(&self, handle: &SlotHandle) -> Result<(), SlotError> {
        // A stale or misplaced handle gets its own error rather than a misleading `ActiveLimit`; the
        // compare-and-swap below still decides if the state changes in between.
        match self.state(handle) {
            None => return Err(SlotError::Stale { handle: *handle }),
            Some(SlotState::Reserved) => {}
            Some(state) => return Err(SlotError::WrongState { handle: *handle, state, op: "activate" }),
        }
        let limit = self.max_active;
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| (a < limit).then_some(a + 1))
            .map_err(|_| SlotError::ActiveLimit { max_active: limit })?;
        let result = self.transition(handle, "activate", |s| match s {
            SlotState::Reserved => Some(SlotState::Active),
            _ => None,
        });
        if result.is_err() {
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
        result.map(|_| ())
    }

    /// `Reserved | Active → Draining`: the connection is being torn down; it stops counting as active.
    pub fn drain(&self, handle: &SlotHandle) -> Result<(), SlotError> {
        let from = self.transition(handle, "drain", |s| match s {
            SlotState::Reserved | SlotState::Active => Some(SlotState::Draining),
            _ => None,
        })?;
        if from == SlotState::Active {
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Frees the slot. Returns `true` for exactly one caller per reservation, however many race; `false` for
    /// a handle already released (and so for every stale handle).
    pub fn release(&self, handle: &SlotHandle) -> bool {
        let Some(slot) = self.slots.get(handle.index()) else {
            return false;
        };
        let mut cur = slot.load(Ordering::Acquire);
        loop {
            let state = SlotState::from_bits(cur);
            if state == SlotState::Free || !self.same_generation(cur, handle) {
                return false;
            }
            let freed = word(generation_of(cur).wrapping_add(1), SlotState::Free);
            match slot.compare_exchange(cur, freed, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if state == SlotState::Active {
                        self.active.fetch_sub(1, Ordering::AcqRel);
                    }
                    self.decrement_in_use();
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// The state of the handle's slot, or `None` if the handle is stale.
    pub fn state(&self, handle: &SlotHandle) -> Option<SlotState> {
        let cur = self.slots.get(handle.index())?.load(Ordering::Acquire);
        let state = SlotState::from_bits(cur);
        (state != SlotState::Free && self.same_generation(cur, handle)).then_some(state)
    }

    fn same_generation(&self, cur: u64, handle: &SlotHandle) -> bool {
        self.bug() == Bug::NoGenerationCheck || generation_of(cur) == handle.generation
    }

    fn decrement_in_use(&self) {
        if self.bug() == Bug::LeakyRelease {
            let n = self.in_use.load(Ordering::Acquire);
            self.in_use.store(n.saturating_sub(1), Ordering::Release);
        } else {
            self.in_use.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// One compare-and-swap transition of a taken slot; returns the state it left.
    fn transition(
        &self,
        handle: &SlotHandle,
        op: &'static str,
        next: impl Fn(SlotState) -> Option<SlotState>,
    ) -> Result<SlotState, SlotError> {
        let stale = SlotError::Stale { handle: *handle };
        let slot = self.slots.get(handle.index()).ok_or(stale.clone())?;
        let mut cur = slot.load(Ordering::Acquire);
        loop {
            let state = SlotState::from_bits(cur);
            if state == SlotState::Free || !self.same_generation(cur, handle) {
                return Err(stale);
            }
            let Some(to) = next(state) else {
                return Err(SlotError::WrongState { handle: *handle, state, op });
            };
            match slot.compare_exchange(
                cur,
                word(generation_of(cur), to),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(state),
                Err(now) => cur = now,
            }
        }
    }
}

#[cfg(any(test, loom))]
mod models;
#[cfg(test)]
mod tests;
