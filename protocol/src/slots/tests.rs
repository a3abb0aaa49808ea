//! The slot pool against a plain model (STYLE.md rule 14): `enum Op`, `Model`, `apply`, `finish`.

use proptest::prelude::*;

use super::*;

/// One call on the pool. Handle arguments index the list of every handle ever issued (so stale handles are
/// exercised as much as live ones).
#[derive(Debug, Clone)]
enum Op {
    Reserve,
    Activate(usize),
    Drain(usize),
    Release(usize),
    State(usize),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Reserve),
        2 => any::<usize>().prop_map(Op::Activate),
        1 => any::<usize>().prop_map(Op::Drain),
        2 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::State),
    ]
}

/// The reference: a vector of `(generation, state)` with no atomics and no cleverness.
struct Model {
    slots: Vec<(u32, SlotState)>,
    max_active: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Handle(Result<(usize, u32), SlotError>),
    Unit(Result<(), SlotError>),
    Released(bool),
    State(Option<SlotState>),
}

impl Model {
    fn new(capacity: usize, max_active: usize) -> Self {
        Model { slots: vec![(0, SlotState::Free); capacity], max_active }
    }

    fn live(&self, h: &SlotHandle) -> Option<SlotState> {
        let (generation, state) = *self.slots.get(h.index())?;
        (generation == h.generation() && state != SlotState::Free).then_some(state)
    }

    fn count(&self, s: SlotState) -> usize {
        self.slots.iter().filter(|x| x.1 == s).count()
    }

    fn apply(&mut self, op: &Op, h: Option<SlotHandle>) -> Out {
        let capacity = self.slots.len();
        match op {
            Op::Reserve => Out::Handle(match self.slots.iter().position(|s| s.1 == SlotState::Free) {
                Some(i) => {
                    self.slots[i].1 = SlotState::Reserved;
                    Ok((i, self.slots[i].0))
                }
                None => Err(SlotError::Full { capacity }),
            }),
            Op::Activate(_) => {
                let h = h.unwrap();
                Out::Unit(match self.live(&h) {
                    None => Err(SlotError::Stale { handle: h }),
                    Some(SlotState::Reserved) if self.count(SlotState::Active) >= self.max_active => {
                        Err(SlotError::ActiveLimit { max_active: self.max_active })
                    }
                    Some(SlotState::Reserved) => {
                        self.slots[h.index()].1 = SlotState::Active;
                        Ok(())
                    }
                    Some(state) => Err(SlotError::WrongState { handle: h, state, op: "activate" }),
                })
            }
            Op::Drain(_) => {
                let h = h.unwrap();
                Out::Unit(match self.live(&h) {
                    None => Err(SlotError::Stale { handle: h }),
                    Some(SlotState::Reserved | SlotState::Active) => {
                        self.slots[h.index()].1 = SlotState::Draining;
                        Ok(())
                    }
                    Some(state) => Err(SlotError::WrongState { handle: h, state, op: "drain" }),
                })
            }
            Op::Release(_) => {
                let h = h.unwrap();
                Out::Released(match self.live(&h) {
                    None => false,
                    Some(_) => {
                        let slot = &mut self.slots[h.index()];
                        *slot = (slot.0 + 1, SlotState::Free);
                        true
                    }
                })
            }
            Op::State(_) => Out::State(self.live(&h.unwrap())),
        }
    }
}

fn apply(pool: &SlotPool, op: &Op, h: Option<SlotHandle>) -> Out {
    match op {
        Op::Reserve => Out::Handle(pool.reserve().map(|h| (h.index(), h.generation()))),
        Op::Activate(_) => Out::Unit(pool.activate(&h.unwrap())),
        Op::Drain(_) => Out::Unit(pool.drain(&h.unwrap())),
        Op::Release(_) => Out::Released(pool.release(&h.unwrap())),
        Op::State(_) => Out::State(pool.state(&h.unwrap())),
    }
}

/// After any history: releasing every handle empties the pool, and the whole capacity is reservable.
fn finish(pool: &SlotPool, handles: &[SlotHandle]) {
    for h in handles {
        pool.release(h);
    }
    assert_eq!((pool.in_use(), pool.active()), (0, 0));
    for _ in 0..pool.capacity() {
        pool.reserve().unwrap();
    }
    assert!(matches!(pool.reserve(), Err(SlotError::Full { .. })));
}

proptest! {
    #[test]
    fn pool_matches_model(
        capacity in 1usize..6,
        max_active in 0usize..4,
        ops in proptest::collection::vec(op_strategy(), 0..200),
    ) {
        let pool = SlotPool::new(capacity, max_active);
        let mut model = Model::new(capacity, max_active);
        let mut handles: Vec<SlotHandle> = Vec::new();
        for op in &ops {
            let h = match op {
                Op::Reserve => None,
                Op::Activate(i) | Op::Drain(i) | Op::Release(i) | Op::State(i) => {
                    if handles.is_empty() { continue; }
                    Some(handles[i % handles.len()])
                }
            };
            let expected = model.apply(op, h);
            let actual = apply(&pool, op, h);
            prop_assert_eq!(&actual, &expected, "{:?}", op);
            if let Out::Handle(Ok((index, generation))) = expected {
                handles.push(SlotHandle { index: index as u16, generation });
            }
            prop_assert_eq!(pool.in_use(), capacity - model.count(SlotState::Free));
            prop_assert_eq!(pool.active(), model.count(SlotState::Active));
            prop_assert!(pool.active() <= max_active);
        }
        finish(&pool, &handles);
    }
}

#[test]
fn lifecycle_and_counts() {
    let pool = SlotPool::default();
    assert_eq!((pool.capacity(), pool.max_active()), (32, 9));
    let h = pool.reserve().unwrap();
    assert_eq!((h.index(), h.generation(), pool.in_use(), pool.active()), (0, 0, 1, 0));
    pool.activate(&h).unwrap();
    assert_eq!(pool.active(), 1);
    pool.drain(&h).unwrap();
    assert_eq!((pool.state(&h), pool.active(), pool.in_use()), (Some(SlotState::Draining), 0, 1));
    assert!(pool.release(&h));
    assert!(!pool.release(&h));
    assert_eq!(pool.in_use(), 0);
    let again = pool.reserve().unwrap();
    assert_eq!((again.index(), again.generation()), (0, 1));
    assert_eq!(pool.activate(&h), Err(SlotError::Stale { handle: h }));
    assert_eq!(pool.state(&again), Some(SlotState::Reserved));
}

#[test]
fn thirty_third_reconnect_succeeds_when_each_client_is_released() {
    // The 4dce9818 exhaustion: 40 sequential clients through 32 slots, each released on disconnect.
    let pool = SlotPool::default();
    for _ in 0..40 {
        let h = pool.reserve().unwrap();
        pool.activate(&h).unwrap();
        assert!(pool.release(&h));
    }
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn active_limit_and_full() {
    let pool = SlotPool::new(3, 1);
    let a = pool.reserve().unwrap();
    let b = pool.reserve().unwrap();
    pool.activate(&a).unwrap();
    assert_eq!(pool.activate(&b), Err(SlotError::ActiveLimit { max_active: 1 }));
    assert_eq!(pool.state(&b), Some(SlotState::Reserved));
    pool.reserve().unwrap();
    assert_eq!(pool.reserve(), Err(SlotError::Full { capacity: 3 }));
    assert!(pool.release(&a));
    pool.activate(&b).unwrap();
}

#[test]
fn broken_variants_misbehave_when_run_sequentially_too() {
    // Not a race: shows what each bug does to a stale handle or a count, deterministically.
    let pool = SlotPool::with_bug(1, 1, Bug::NoGenerationCheck);
    let old = pool.reserve().unwrap();
    assert!(pool.release(&old));
    let next = pool.reserve().unwrap();
    assert!(pool.release(&old), "without the generation check a stale handle frees the next tenant");
    assert_eq!(pool.state(&next), None);
}

#[test]
fn release_index_unchecked_frees_the_current_tenant() {
    // The `--fault stale-callback` hook: acting by index frees whoever holds the slot now, and the checked
    // API then sees that tenant's handle as stale (its own release is refused, not a second free).
    let pool = SlotPool::new(2, 2);
    let old = pool.reserve().unwrap();
    assert!(pool.release(&old));
    let tenant = pool.reserve().unwrap();
    pool.activate(&tenant).unwrap();
    assert_eq!((tenant.index(), pool.in_use(), pool.active()), (old.index(), 1, 1));
    assert!(pool.release_index_unchecked(old.index()));
    assert_eq!((pool.in_use(), pool.active(), pool.state(&tenant)), (0, 0, None));
    // The slot goes to the next client while `tenant` is still connected.
    let second = pool.reserve().unwrap();
    assert_eq!((second.index(), second.generation()), (tenant.index(), tenant.generation() + 1));
    assert!(!pool.release(&tenant), "the tenant's own release finds its slot gone");
    assert_eq!(pool.state(&second), Some(SlotState::Reserved));
    assert!(!pool.release_index_unchecked(1), "a free slot is left alone");
    assert!(!pool.release_index_unchecked(2), "out of range");
    assert!(pool.release(&second));
    assert_eq!((pool.in_use(), pool.active()), (0, 0));
}

#[test]
fn every_error_message() {
    let h = SlotHandle { index: 3, generation: 7 };
    let lines = [
        SlotError::Full { capacity: 32 },
        SlotError::ActiveLimit { max_active: 9 },
        SlotError::Stale { handle: h },
        SlotError::WrongState { handle: h, state: SlotState::Draining, op: "activate" },
    ]
    .map(|e| format!("{e:?}: {e}"));
    insta::assert_snapshot!("slot_error_messages", lines.join("\n"));
}
