//! Concurrency models of the slot pool (ACIP-SPEC.md 7.5-7.6), run by loom under `--cfg loom` (tests named
//! `loom_*`) and once with std threads under plain `cargo test`. Each model also runs on a deliberately
//! broken pool ([`Bug`]) and must catch it, which shows the model can fail at all.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p acip --release --lib loom_ -- --nocapture` prints how many
//! interleavings each model explored.

use super::{Bug, SlotError, SlotPool, SlotState};
use crate::sync::Arc;

#[cfg(loom)]
use loom::thread;
#[cfg(not(loom))]
use std::thread;

/// Model 1: more contenders than slots reserve, activate and release concurrently (three parties, two
/// slots, all of which may be active). Afterwards nothing may be left taken or counted active, and the whole
/// capacity must be reservable and activatable again. Catches [`Bug::LeakyRelease`]: two releases at once
/// lose a decrement and the pool refuses clients with free slots.
pub(crate) fn reserve_release_contention(bug: Bug) {
    const CAPACITY: usize = 2;
    const CONTENDERS: usize = 3;
    let pool = Arc::new(SlotPool::with_bug(CAPACITY, CAPACITY, bug));
    let parties: Vec<_> = (0..CONTENDERS)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || match pool.reserve() {
                Ok(h) => {
                    assert!(pool.in_use() <= CAPACITY, "in_use {} over capacity", pool.in_use());
                    pool.activate(&h).expect("max_active == capacity: activation cannot be refused");
                    assert_eq!(pool.state(&h), Some(SlotState::Active));
                    assert!(pool.release(&h), "the only holder must win its release");
                    assert!(!pool.release(&h), "a second release of the same handle must lose");
                    true
                }
                Err(SlotError::Full { capacity }) => {
                    assert_eq!(capacity, CAPACITY);
                    false
                }
                Err(e) => panic!("unexpected {e}"),
            })
        })
        .collect();
    let won = parties.into_iter().map(|p| p.join().unwrap()).filter(|&w| w).count();
    assert!(won >= 1, "someone must get a slot");
    assert_eq!(pool.in_use(), 0, "slots leaked: in_use() after every holder released");
    assert_eq!(pool.active(), 0, "active count leaked");
    for _ in 0..CAPACITY {
        let h = pool.reserve().expect("the whole capacity is free again");
        pool.activate(&h).expect("and activatable");
    }
}

/// Model 2: teardown racing an in-flight receive. A receive path holds a copy of the handle and, when it
/// notices the connection ending, drains and releases; the close path releases and the slot is immediately
/// reused by the next client (capacity 1). Exactly one release may win, and the stale receive path must not
/// touch the next tenant. Catches [`Bug::NoGenerationCheck`].
pub(crate) fn teardown_races_receive(bug: Bug) {
    let pool = Arc::new(SlotPool::with_bug(1, 1, bug));
    let h = pool.reserve().unwrap();
    pool.activate(&h).unwrap();

    let receiver = {
        let pool = pool.clone();
        thread::spawn(move || {
            // Drain may find the slot already released (Stale): the close path got there first.
            let _ = pool.drain(&h);
            pool.release(&h)
        })
    };
    let closer = {
        let pool = pool.clone();
        thread::spawn(move || {
            let released = pool.release(&h);
            let next = pool.reserve().expect("the only slot was just freed");
            pool.activate(&next).expect("the next client activates");
            (released, next)
        })
    };
    let receiver_released = receiver.join().unwrap();
    let (closer_released, next) = closer.join().unwrap();
    assert!(receiver_released ^ closer_released, "release must succeed exactly once");
    assert_ne!(next, h);
    assert_eq!(next.index(), h.index(), "capacity 1: the slot was reused");
    assert_eq!(pool.state(&next), Some(SlotState::Active), "the stale receive path touched the next tenant");
    assert_eq!(pool.state(&h), None);
    assert_eq!((pool.in_use(), pool.active()), (1, 1));
}

#[cfg(not(loom))]
mod std_threads {
    //! STYLE.md rule 16: the model bodies also run (on the correct pool) under plain `cargo test`.
    use super::*;

    #[test]
    fn model_reserve_release_contention_runs_on_std_threads() {
        for _ in 0..200 {
            reserve_release_contention(Bug::None);
        }
    }

    #[test]
    fn model_teardown_races_receive_runs_on_std_threads() {
        for _ in 0..200 {
            teardown_races_receive(Bug::None);
        }
    }
}

#[cfg(loom)]
mod loom_checks {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Exhaustive up to this many preemptions per execution: enough for every two-party race here, small
    /// enough that the whole loom step runs in well under a minute (46,668 + 108 interleavings).
    const PREEMPTIONS: usize = 3;

    /// Runs `model` under loom with a small preemption bound (exhaustive up to that bound) and returns how
    /// many interleavings it explored, or the panic if the model failed in one of them.
    fn explore(name: &str, model: fn(Bug), bug: Bug, preemptions: usize) -> std::thread::Result<usize> {
        // A std counter (not loom's): it counts executions of the model, outside the model.
        let runs = std::sync::Arc::new(AtomicUsize::new(0));
        let mut builder = ::loom::model::Builder::new();
        builder.preemption_bound = Some(preemptions);
        let counter = runs.clone();
        let result = catch_unwind(AssertUnwindSafe(|| {
            builder.check(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                model(bug);
            })
        }));
        let runs = runs.load(Ordering::SeqCst);
        match &result {
            Ok(()) => println!(
                "loom {name} ({bug:?}, preemption bound {preemptions}): {runs} interleavings explored, all passed"
            ),
            Err(_) => println!(
                "loom {name} ({bug:?}, preemption bound {preemptions}): failure found in interleaving {runs}"
            ),
        }
        result.map(|()| runs)
    }

    #[test]
    fn loom_reserve_release_contention() {
        explore("reserve_release_contention", reserve_release_contention, Bug::None, PREEMPTIONS).unwrap();
    }

    #[test]
    fn loom_reserve_release_contention_catches_leaky_release() {
        let found =
            explore("reserve_release_contention", reserve_release_contention, Bug::LeakyRelease, PREEMPTIONS);
        assert!(found.is_err(), "the model must catch a release that leaks");
    }

    #[test]
    fn loom_teardown_races_receive() {
        explore("teardown_races_receive", teardown_races_receive, Bug::None, PREEMPTIONS).unwrap();
    }

    #[test]
    fn loom_teardown_races_receive_catches_missing_generation_check() {
        let found =
            explore("teardown_races_receive", teardown_races_receive, Bug::NoGenerationCheck, PREEMPTIONS);
        assert!(found.is_err(), "the model must catch a free without the generation check");
    }
}
