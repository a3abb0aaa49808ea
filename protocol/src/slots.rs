//! The client-slot pool (ACIP-SPEC.md 7.1 and 7.5-7.6): a fixed array of slots (MAX_CLIENTS = 32) with an
//! active-client limit (`--max-clients`, 9), shared by every task of a server.
//!
//! The old server leaked slots (WS clients never removed, fixed in 4dce9818) and raced its teardown paths
//! (receive callback vs CLOSED vs `remove_client`, 7.6). Here:
//! - every transition happens under one short lock, so it is all-or-nothing and the counts always agree
//!   with the slots (a first lock-free design with separate atomic counters was dropped because loom showed
//!   the counts lagging the slots: a client reconnecting during a teardown could be refused);
//! - a [`SlotHandle`] carries the generation it was reserved under, and [`SlotPool::release`] bumps the
//!   generation, so a stale handle can never act on a reused slot;
//! - [`SlotPool::release`] returns `true` for exactly one caller however many race (reader, writer, close
//!   path), which is the one that must free per-client resources;
//! - [`SlotPool::in_use`] and [`SlotPool::active`] read atomics, without the lock.
//!
//! Lifecycle: `Free → Reserved → Active → Draining → Free`; `Reserved → Draining` (torn down before it
//! became active) and `release` from any taken state are allowed. Only `Active` counts against
//! `max_active`. Built on [`crate::sync`] so the loom models (`slots/models.rs`) check this very code.

use std::fmt;

use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::Mutex;

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
    /// Every slot is taken (the C server answered `SERVER_FULL: ...`).
    #[error("no free client slot: all {capacity} slots are in use")]
    Full { capacity: usize },
    /// `max_active` clients are already active.
    #[error("active-client limit of {max_active} reached")]
    ActiveLimit { max_active: usize },
    /// The handle's reservation has ended: its slot was released (and possibly reused) since.
    #[error("{handle} is stale: the slot was released (and possibly reused) since it was reserved")]
    Stale { handle: SlotHandle },
    /// The transition `op` is not allowed from the slot's current state.
    #[error("{handle} cannot {op}: it is {state}")]
    WrongState { handle: SlotHandle, state: SlotState, op: &'static str },
}

/// Deliberately broken variants, selectable only in tests and loom models (the field that picks one does not
/// exist in other builds), to show that the models catch them.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bug {
    /// Correct code.
    None,
    /// `release` frees the slot under the lock but fixes up the in-use count after dropping it, with a
    /// separate load and store: two releases at once lose a decrement, and the pool refuses clients with
    /// free slots (the 4dce9818 "all 32 array slots are in use" symptom).
    LeakyRelease,
    /// `release` and the other transitions compare only the slot index, not the generation: a stale handle
    /// (a late receive path) frees or drains the slot's next tenant.
    NoGenerationCheck,
}

/// One slot as the lock protects it.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Bumped by every release, so handles of earlier reservations no longer match.
    generation: u32,
    state: SlotState,
}

/// The pool. Share it behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct SlotPool {
    slots: Mutex<Vec<Slot>>,
    max_active: usize,
    /// Mirrors of the slot table, written under the lock, read without it.
    in_use: AtomicUsize,
    active: AtomicUsize,
    #[cfg(test)]
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
            slots: Mutex::new(vec![Slot { generation: 0, state: SlotState::Free }; capacity]),
            max_active,
            in_use: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            #[cfg(test)]
            bug: Bug::None,
        }
    }

    /// A pool with one of the deliberate bugs (for the models only).
    #[cfg(test)]
    pub(crate) fn with_bug(capacity: usize, max_active: usize, bug: Bug) -> Self {
        SlotPool { bug, ..SlotPool::new(capacity, max_active) }
    }

    fn bug(&self) -> Bug {
        #[cfg(test)]
        return self.bug;
        #[cfg(not(test))]
        return Bug::None;
    }

    /// Runs `f` on the slot table under the lock. A panic while it was held cannot leave a half-made
    /// transition (each is one assignment), so a poisoned lock is still consistent and is used as is.
    fn with_slots<R>(&self, f: impl FnOnce(&mut Vec<Slot>) -> R) -> R {
        let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut slots)
    }

    /// Slots in the array.
    pub fn capacity(&self) -> usize {
        self.with_slots(|slots| slots.len())
    }

    /// The active-client limit.
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

    /// Claims the lowest free slot, or `Full`.
    pub fn reserve(&self) -> Result<SlotHandle, SlotError> {
        self.with_slots(|slots| {
            let capacity = slots.len();
            // The count is the admission check, as in the C server's "all 32 array slots are in use".
            let index = match slots.iter().position(|s| s.state == SlotState::Free) {
                Some(i) if self.in_use.load(Ordering::Acquire) < capacity => i,
                _ => return Err(SlotError::Full { capacity }),
            };
            slots[index].state = SlotState::Reserved;
            self.in_use.fetch_add(1, Ordering::AcqRel);
            Ok(SlotHandle { index: index as u16, generation: slots[index].generation })
        })
    }

    /// `Reserved → Active`, if the active limit allows.
    pub fn activate(&self, handle: &SlotHandle) -> Result<(), SlotError> {
        self.with_slots(|slots| {
            let slot = self.live(slots, handle)?;
            if slot.state != SlotState::Reserved {
                return Err(SlotError::WrongState { handle: *handle, state: slot.state, op: "activate" });
            }
            if self.active.load(Ordering::Acquire) >= self.max_active {
                return Err(SlotError::ActiveLimit { max_active: self.max_active });
            }
            slot.state = SlotState::Active;
            self.active.fetch_add(1, Ordering::AcqRel);
            Ok(())
        })
    }

    /// `Reserved | Active → Draining`: the connection is being torn down; it stops counting as active.
    pub fn drain(&self, handle: &SlotHandle) -> Result<(), SlotError> {
        self.with_slots(|slots| {
            let slot = self.live(slots, handle)?;
            match slot.state {
                SlotState::Reserved => {}
                SlotState::Active => {
                    self.active.fetch_sub(1, Ordering::AcqRel);
                }
                state => return Err(SlotError::WrongState { handle: *handle, state, op: "drain" }),
            }
            slot.state = SlotState::Draining;
            Ok(())
        })
    }

    /// Frees the slot. Returns `true` for exactly one caller per reservation, however many race; `false` for
    /// a handle already released (and so for every stale handle).
    pub fn release(&self, handle: &SlotHandle) -> bool {
        let freed = self.with_slots(|slots| {
            let Ok(slot) = self.live(slots, handle) else {
                return false;
            };
            if slot.state == SlotState::Active {
                self.active.fetch_sub(1, Ordering::AcqRel);
            }
            *slot = Slot { generation: slot.generation.wrapping_add(1), state: SlotState::Free };
            if self.bug() != Bug::LeakyRelease {
                self.in_use.fetch_sub(1, Ordering::AcqRel);
            }
            true
        });
        if freed && self.bug() == Bug::LeakyRelease {
            // The broken variant fixes the count up after dropping the lock, with a read and a write.
            let n = self.in_use.load(Ordering::Acquire);
            self.in_use.store(n.saturating_sub(1), Ordering::Release);
        }
        freed
    }

    /// **Fault hook, not for normal paths.** Frees slot `index` whoever holds it now, with no generation
    /// check: what the old server's late receive callback did when it acted on a client by slot index after
    /// `remove_client` (ACIP-SPEC.md 7.5/7.6). The reference server calls it only under
    /// `--fault stale-callback`, to reproduce that bug: the slot's next tenant loses it while still
    /// connected, and the pool hands it to another client. Returns `true` if a taken slot was freed (its
    /// generation bumped, so the tenant's own handle is stale from then on), `false` for a free slot or an
    /// index out of range. The counts stay consistent with the slots.
    pub fn release_index_unchecked(&self, index: usize) -> bool {
        self.with_slots(|slots| {
            let Some(slot) = slots.get_mut(index) else {
                return false;
            };
            match slot.state {
                SlotState::Free => return false,
                SlotState::Active => {
                    self.active.fetch_sub(1, Ordering::AcqRel);
                }
                SlotState::Reserved | SlotState::Draining => {}
            }
            *slot = Slot { generation: slot.generation.wrapping_add(1), state: SlotState::Free };
            self.in_use.fetch_sub(1, Ordering::AcqRel);
            true
        })
    }

    /// The state of the handle's slot, or `None` if the handle is stale.
    pub fn state(&self, handle: &SlotHandle) -> Option<SlotState> {
        self.with_slots(|slots| self.live(slots, handle).ok().map(|s| s.state))
    }

    /// The handle's slot if its reservation is current: taken, and (unless the broken variant is selected)
    /// of the same generation.
    fn live<'a>(&self, slots: &'a mut [Slot], handle: &SlotHandle) -> Result<&'a mut Slot, SlotError> {
        let no_generation_check = self.bug() == Bug::NoGenerationCheck;
        match slots.get_mut(handle.index()) {
            Some(slot)
                if slot.state != SlotState::Free
                    && (no_generation_check || slot.generation == handle.generation) =>
            {
                Ok(slot)
            }
            _ => Err(SlotError::Stale { handle: *handle }),
        }
    }
}

#[cfg(test)]
mod models;
#[cfg(test)]
mod tests;
