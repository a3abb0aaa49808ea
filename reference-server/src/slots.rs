//! Slot leases over the client-slot pool (ACIP-SPEC.md 7.1): `slot_capacity` array slots (32), of which
//! at most `max_clients` (9) may be active. A lease is taken at accept, activated by CLIENT_CAPABILITIES,
//! drained when teardown starts and released exactly once when every task of the connection has ended.
//! `--fault slot-leak` drains a WebSocket lease without releasing it, as before fix 4dce9818.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::hub::lock;

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotFull {
    /// `--max-clients` connections are already active (or being set up).
    #[error("Maximum client limit reached ({max} clients)")]
    ActiveLimit { max: usize },
    /// Every array slot is taken (also by leaked ones).
    #[error("No available client slots (all {capacity} array slots are in use)")]
    NoSlots { capacity: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Reserved,
    Active,
    Draining,
}

#[derive(Debug)]
struct Pool {
    slots: Vec<State>,
    max_active: usize,
    releases: u64,
    double_releases: u64,
}

impl Pool {
    fn counting(&self) -> usize {
        self.slots.iter().filter(|s| matches!(s, State::Reserved | State::Active)).count()
    }
}

/// The pool, shared by all connections.
#[derive(Debug, Clone)]
pub struct Slots {
    pool: Arc<Mutex<Pool>>,
}

impl Slots {
    pub fn new(capacity: usize, max_active: usize) -> Self {
        let pool = Pool { slots: vec![State::Free; capacity], max_active, releases: 0, double_releases: 0 };
        Slots { pool: Arc::new(Mutex::new(pool)) }
    }

    /// Takes a free slot, if the active limit and the array allow it.
    pub fn reserve(&self) -> Result<SlotLease, SlotFull> {
        let mut p = lock(&self.pool);
        if p.counting() >= p.max_active {
            return Err(SlotFull::ActiveLimit { max: p.max_active });
        }
        let capacity = p.slots.len();
        let index = p.slots.iter().position(|s| *s == State::Free).ok_or(SlotFull::NoSlots { capacity })?;
        p.slots[index] = State::Reserved;
        Ok(SlotLease { pool: self.pool.clone(), index, released: AtomicBool::new(false) })
    }

    /// Array slots not free (reserved, active, draining or leaked).
    pub fn in_use(&self) -> usize {
        lock(&self.pool).slots.iter().filter(|s| **s != State::Free).count()
    }

    pub fn capacity(&self) -> usize {
        lock(&self.pool).slots.len()
    }

    /// Releases that found the slot already free: must stay 0.
    pub fn double_releases(&self) -> u64 {
        lock(&self.pool).double_releases
    }
}

/// One connection's slot. Dropping a lease without [`SlotLease::release`] or [`SlotLease::leak`] releases
/// it, so a panicking task cannot leak a slot by accident.
#[derive(Debug)]
pub struct SlotLease {
    pool: Arc<Mutex<Pool>>,
    index: usize,
    released: AtomicBool,
}

impl SlotLease {
    /// CLIENT_CAPABILITIES accepted: the slot belongs to an active client.
    pub fn activate(&self) {
        let mut p = lock(&self.pool);
        if p.slots[self.index] == State::Reserved {
            p.slots[self.index] = State::Active;
        }
    }

    /// Teardown started: the client no longer counts against `max_clients`.
    pub fn drain(&self) {
        lock(&self.pool).slots[self.index] = State::Draining;
    }

    /// Frees the slot. `true` the first time; `false` (and a counted double release) otherwise.
    pub fn release(&self) -> bool {
        if self.released.swap(true, Ordering::AcqRel) {
            lock(&self.pool).double_releases += 1;
            return false;
        }
        let mut p = lock(&self.pool);
        if p.slots[self.index] == State::Free {
            p.double_releases += 1;
            return false;
        }
        p.slots[self.index] = State::Free;
        p.releases += 1;
        true
    }

    /// `--fault slot-leak`: drain and never release (the pre-4dce9818 WebSocket bug).
    pub fn leak(&self) {
        self.drain();
        self.released.store(true, Ordering::Release);
    }

    /// Whether [`SlotLease::release`] or [`SlotLease::leak`] ran.
    pub fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        if !self.is_released() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_limit_then_array_limit() {
        let s = Slots::new(3, 2);
        let a = s.reserve().unwrap();
        let b = s.reserve().unwrap();
        assert_eq!(s.reserve().unwrap_err(), SlotFull::ActiveLimit { max: 2 });
        a.leak();
        b.drain();
        let c = s.reserve().unwrap();
        assert_eq!(s.reserve().unwrap_err(), SlotFull::NoSlots { capacity: 3 });
        assert!(b.release());
        assert!(!b.release());
        assert!(c.release());
        drop(b);
        assert_eq!((s.in_use(), s.double_releases()), (1, 1));
    }
}
