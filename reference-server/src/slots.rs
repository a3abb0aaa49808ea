//! Slot leases over `acip::slots::SlotPool` (ACIP-SPEC.md 7.1): `slot_capacity` array slots (32), of which
//! at most `max_clients` (9) may be active. A lease is taken at accept (refused with SERVER_FULL when the
//! active limit is reached or the array is full), activated by CLIENT_CAPABILITIES, drained when teardown
//! starts and released exactly once when every task of the connection has ended. `--fault slot-leak`
//! drains a WebSocket lease without releasing it, as before fix 4dce9818.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use acip::slots::{SlotError, SlotHandle, SlotPool};

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotFull {
    /// `--max-clients` clients are already active.
    #[error("Maximum client limit reached ({max} clients)")]
    ActiveLimit { max: usize },
    /// Every array slot is taken (also by leaked ones).
    #[error("No available client slots (all {capacity} array slots are in use)")]
    NoSlots { capacity: usize },
}

impl From<SlotError> for SlotFull {
    fn from(e: SlotError) -> Self {
        match e {
            SlotError::ActiveLimit { max_active } => SlotFull::ActiveLimit { max: max_active },
            SlotError::Full { capacity } => SlotFull::NoSlots { capacity },
            // Stale or wrong-state handles cannot come out of `reserve`/`activate` on a fresh lease; map
            // them to the array error rather than panic.
            _ => SlotFull::NoSlots { capacity: 0 },
        }
    }
}

/// The pool, shared by all connections.
#[derive(Debug, Clone)]
pub struct Slots {
    pool: Arc<SlotPool>,
    double_releases: Arc<AtomicU64>,
}

impl Slots {
    pub fn new(capacity: usize, max_active: usize) -> Self {
        Slots { pool: Arc::new(SlotPool::new(capacity, max_active)), double_releases: Arc::default() }
    }

    /// Takes a free slot if fewer than `max_clients` clients are active and the array has room.
    pub fn reserve(&self) -> Result<SlotLease, SlotFull> {
        // The real server refuses at accept when the active limit is reached (ACIP-SPEC.md 7.2). The check
        // races with concurrent activations; `activate` enforces the limit exactly.
        if self.pool.active() >= self.pool.max_active() {
            return Err(SlotFull::ActiveLimit { max: self.pool.max_active() });
        }
        let handle = self.pool.reserve()?;
        Ok(SlotLease {
            pool: self.pool.clone(),
            handle,
            done: AtomicBool::new(false),
            double_releases: self.double_releases.clone(),
        })
    }

    /// Array slots not free (reserved, active, draining or leaked).
    pub fn in_use(&self) -> usize {
        self.pool.in_use()
    }

    pub fn capacity(&self) -> usize {
        self.pool.capacity()
    }

    /// Releases that found the lease already released: must stay 0.
    pub fn double_releases(&self) -> u64 {
        self.double_releases.load(Ordering::Relaxed)
    }
}

/// One connection's slot. Dropping a lease without [`SlotLease::release`] or [`SlotLease::leak`] releases
/// it, so a panicking task cannot leak a slot by accident.
#[derive(Debug)]
pub struct SlotLease {
    pool: Arc<SlotPool>,
    handle: SlotHandle,
    /// Released or leaked.
    done: AtomicBool,
    double_releases: Arc<AtomicU64>,
}

impl SlotLease {
    /// CLIENT_CAPABILITIES accepted: the slot belongs to an active client (fails at the active limit).
    pub fn activate(&self) -> Result<(), SlotFull> {
        Ok(self.pool.activate(&self.handle)?)
    }

    /// Teardown started: the client no longer counts against `max_clients`.
    pub fn drain(&self) {
        // Draining twice (or after a failed activation) is harmless; the error only says so.
        let _ = self.pool.drain(&self.handle);
    }

    /// Frees the slot. `true` the first time; `false` (and a counted double release) otherwise.
    pub fn release(&self) -> bool {
        self.done.store(true, Ordering::Release);
        let freed = self.pool.release(&self.handle);
        if !freed {
            self.double_releases.fetch_add(1, Ordering::Relaxed);
        }
        freed
    }

    /// `--fault slot-leak`: drain and never release (the pre-4dce9818 WebSocket bug).
    pub fn leak(&self) {
        self.drain();
        self.done.store(true, Ordering::Release);
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        if !self.done.load(Ordering::Acquire) {
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
        a.activate().unwrap();
        b.activate().unwrap();
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
