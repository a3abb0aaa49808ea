//! Slot leases over `acip::slots::SlotPool` (ACIP-SPEC.md 7.1): `slot_capacity` array slots (32), of which
//! at most `max_clients` (9) may be active. A lease is taken at accept (refused with SERVER_FULL when the
//! active limit is reached or the array is full), activated by CLIENT_CAPABILITIES, drained when teardown
//! starts and released exactly once when every task of the connection has ended. `--fault slot-leak`
//! drains a WebSocket lease without releasing it, as before fix 4dce9818.
//!
//! `--fault stale-callback` reproduces the teardown races of ACIP-SPEC.md 7.5/7.6 (a RECEIVE callback run
//! after CLOSED, on a client looked up by slot after `remove_client`): every lease whose release frees its
//! slot leaves one late callback parked on the slot's *index*. It runs when the slot's next tenant has
//! become active (the interleaving that hurt, made deterministic instead of a timing race) and frees the
//! slot by index with no generation check ([`SlotPool::release_index_unchecked`]): the tenant, still
//! connected, has lost its slot; the pool hands the slot to the next client while the tenant still holds
//! it (counted in [`Slots::shared_reservations`]), and the tenant's own release at its teardown finds the
//! slot gone (a double release). Without the fault no callback is parked and both counts stay 0.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use acip::slots::{SlotError, SlotHandle, SlotPool};

use crate::sync::lock;

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

/// What every lease of one server shares.
#[derive(Debug)]
struct Inner {
    pool: SlotPool,
    double_releases: AtomicU64,
    /// Live leases (neither released nor leaked) per slot index. More than one on an index means the pool
    /// handed a slot to a client while another still held it.
    holders: Mutex<Vec<u32>>,
    /// Reservations that got a slot another live lease still held: must stay 0.
    shared_reservations: AtomicU64,
    /// `--fault stale-callback`: late callbacks parked per slot index (`None` when the fault is off).
    late: Option<Mutex<Vec<u32>>>,
    /// Late callbacks that freed a tenant's slot.
    late_callbacks: AtomicU64,
}

/// The pool, shared by all connections.
#[derive(Debug, Clone)]
pub struct Slots {
    inner: Arc<Inner>,
}

impl Slots {
    /// `capacity` slots, `max_active` active clients; `stale_callback` turns on `--fault stale-callback`
    /// (module doc).
    pub fn new(capacity: usize, max_active: usize, stale_callback: bool) -> Self {
        let pool = SlotPool::new(capacity, max_active);
        let n = pool.capacity();
        Slots {
            inner: Arc::new(Inner {
                pool,
                double_releases: AtomicU64::new(0),
                holders: Mutex::new(vec![0; n]),
                shared_reservations: AtomicU64::new(0),
                late: stale_callback.then(|| Mutex::new(vec![0; n])),
                late_callbacks: AtomicU64::new(0),
            }),
        }
    }

    /// Takes a free slot if fewer than `max_clients` clients are active and the array has room.
    pub fn reserve(&self) -> Result<SlotLease, SlotFull> {
        let pool = &self.inner.pool;
        // The real server refuses at accept when the active limit is reached (ACIP-SPEC.md 7.2). The check
        // races with concurrent activations; `activate` enforces the limit exactly.
        if pool.active() >= pool.max_active() {
            return Err(SlotFull::ActiveLimit { max: pool.max_active() });
        }
        let handle = pool.reserve()?;
        {
            let mut holders = lock(&self.inner.holders);
            let h = &mut holders[handle.index()];
            if *h > 0 {
                self.inner.shared_reservations.fetch_add(1, Ordering::Relaxed);
            }
            *h += 1;
        }
        Ok(SlotLease { inner: self.inner.clone(), handle, done: AtomicBool::new(false) })
    }

    /// Array slots not free (reserved, active, draining or leaked).
    pub fn in_use(&self) -> usize {
        self.inner.pool.in_use()
    }

    pub fn capacity(&self) -> usize {
        self.inner.pool.capacity()
    }

    /// Releases that found the lease already released (or its slot taken away): must stay 0.
    pub fn double_releases(&self) -> u64 {
        self.inner.double_releases.load(Ordering::Relaxed)
    }

    /// Reservations handed a slot that another connection still held: must stay 0.
    pub fn shared_reservations(&self) -> u64 {
        self.inner.shared_reservations.load(Ordering::Relaxed)
    }

    /// `--fault stale-callback`: late callbacks that freed a live tenant's slot.
    pub fn late_callbacks(&self) -> u64 {
        self.inner.late_callbacks.load(Ordering::Relaxed)
    }
}

/// One connection's slot. Dropping a lease without [`SlotLease::release`] or [`SlotLease::leak`] releases
/// it, so a panicking task cannot leak a slot by accident.
#[derive(Debug)]
pub struct SlotLease {
    inner: Arc<Inner>,
    handle: SlotHandle,
    /// Released or leaked.
    done: AtomicBool,
}

impl SlotLease {
    /// CLIENT_CAPABILITIES accepted: the slot belongs to an active client (fails at the active limit).
    /// Under `--fault stale-callback` a late callback parked on this slot's index runs now and frees the
    /// slot under the client (module doc).
    pub fn activate(&self) -> Result<(), SlotFull> {
        self.inner.pool.activate(&self.handle)?;
        if let Some(late) = &self.inner.late {
            let index = self.handle.index();
            let parked = {
                let mut late = lock(late);
                let n = &mut late[index];
                let parked = *n > 0;
                *n = n.saturating_sub(1);
                parked
            };
            // The dead connection's callback knows only the index, not which reservation it belonged to.
            if parked && self.inner.pool.release_index_unchecked(index) {
                self.inner.late_callbacks.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Teardown started: the client no longer counts against `max_clients`.
    pub fn drain(&self) {
        // Draining twice (or after a failed activation) is harmless; the error only says so.
        let _ = self.inner.pool.drain(&self.handle);
    }

    /// Frees the slot. `true` the first time; `false` (and a counted double release) otherwise.
    pub fn release(&self) -> bool {
        self.finish();
        let freed = self.inner.pool.release(&self.handle);
        if !freed {
            self.inner.double_releases.fetch_add(1, Ordering::Relaxed);
        } else if let Some(late) = &self.inner.late {
            // The receive callback still queued for this connection outlives its slot.
            lock(late)[self.handle.index()] += 1;
        }
        freed
    }

    /// `--fault slot-leak`: drain and never release (the pre-4dce9818 WebSocket bug).
    pub fn leak(&self) {
        self.drain();
        self.finish();
    }

    /// Marks the lease done; the first time, it stops counting as a holder of its index. Done before the
    /// pool frees the slot, so a client reserving it next never sees this lease as a holder.
    fn finish(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            let mut holders = lock(&self.inner.holders);
            let h = &mut holders[self.handle.index()];
            *h = h.saturating_sub(1);
        }
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
        let s = Slots::new(3, 2, false);
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
        assert_eq!((s.in_use(), s.double_releases(), s.shared_reservations()), (1, 1, 0));
    }

    #[test]
    fn stale_callback_frees_the_next_tenant_and_the_slot_is_shared() {
        let s = Slots::new(4, 4, true);
        let gone = s.reserve().unwrap();
        gone.activate().unwrap();
        assert!(gone.release());
        assert_eq!((s.in_use(), s.late_callbacks()), (0, 0), "parked, not yet run");
        let tenant = s.reserve().unwrap();
        tenant.activate().unwrap();
        assert_eq!((s.in_use(), s.late_callbacks()), (0, 1), "the late callback freed the active tenant");
        let second = s.reserve().unwrap();
        assert_eq!(s.shared_reservations(), 1, "one slot, two live clients");
        second.activate().unwrap();
        assert_eq!((s.in_use(), s.late_callbacks()), (1, 1), "one callback per teardown");
        assert!(!tenant.release());
        assert!(second.release());
        assert_eq!((s.in_use(), s.double_releases()), (0, 1));
    }

    #[test]
    fn without_the_fault_a_reused_slot_is_left_alone() {
        let s = Slots::new(4, 4, false);
        for _ in 0..3 {
            let l = s.reserve().unwrap();
            l.activate().unwrap();
            assert_eq!(s.in_use(), 1);
            assert!(l.release());
        }
        assert_eq!(
            (s.in_use(), s.double_releases(), s.shared_reservations(), s.late_callbacks()),
            (0, 0, 0, 0)
        );
    }
}
