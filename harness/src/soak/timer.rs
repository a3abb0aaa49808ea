//! The precise send timer of a soak. tokio's timer wheel has 1 ms granularity and rounds every deadline up,
//! so a client task woken by `tokio::time::sleep_until` starts its frame up to ~1 ms late: with 64 clients
//! that lateness (`send_lag`) was 75 % of the end-to-end latency the soak reports.
//!
//! One dedicated thread keeps every pending deadline in a heap ([`Deadlines`]) and sleeps on a condition
//! variable until the earliest one, with its timer slack lowered to 1 ns so the kernel wakes it on time
//! rather than batching the wake-up. It then wakes the waiting task through a oneshot channel. Waking a
//! thread and then a runtime worker still takes tens of µs, so the task is woken that much early (the
//! lead, measured as the run goes) and yields to the runtime until its deadline. The thread never
//! spins; each task polls the clock only for that last lead before its frame (at most `MAX_LEAD`).
//!
//! ```text
//!  client task ── due − lead ──► Deadlines heap ──► timer thread (condvar wait until earliest deadline)
//!       ▲                                                  │ now >= deadline
//!       └─────────────── oneshot (fire ordinal) ◄──────────┘
//!  then yield to the runtime until due
//! ```
//!
//! A deadline never fires before it is due (`now >= due`, on the monotonic clock), and deadlines fire in
//! deadline order (equal ones in the order they were set). The schedule itself stays in `schedule`: the
//! timer only decides *when* a task resumes, never which frame it sends, so coordinated-omission
//! correction is unchanged.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// The longest a task is woken before its deadline (and so the longest it polls the clock per frame).
const MAX_LEAD: Duration = Duration::from_micros(300);
/// The lead is this many times the mean wake-up latency: a little over the typical latency, so most
/// frames find their task already running at the deadline.
const LEAD_PER_LATENCY: f64 = 1.5;
/// Weight of each new latency sample in the running mean.
const LATENCY_WEIGHT: f64 = 1.0 / 32.0;

/// How early to wake a task: [`LEAD_PER_LATENCY`] × the running mean of the wake-up latency (thread
/// wake-up plus the runtime resuming the task), at most [`MAX_LEAD`]. Lock-free; racing updates lose a
/// sample, which an estimate can afford.
#[derive(Debug, Default)]
struct Lead {
    /// Running mean of the latency, in ns.
    mean_ns: AtomicU64,
}

impl Lead {
    fn current(&self) -> Duration {
        lead_for(Duration::from_nanos(self.mean_ns.load(AtomicOrdering::Relaxed)))
    }

    fn observe(&self, latency: Duration) {
        let mean = Duration::from_nanos(self.mean_ns.load(AtomicOrdering::Relaxed));
        let next = next_mean(mean, latency);
        self.mean_ns.store(next.as_nanos().min(u128::from(u64::MAX)) as u64, AtomicOrdering::Relaxed);
    }
}

/// The running mean after one more latency sample (samples are capped at twice [`MAX_LEAD`], so one stall
/// does not move the lead for long).
fn next_mean(mean: Duration, sample: Duration) -> Duration {
    let sample = sample.min(MAX_LEAD * 2).as_secs_f64();
    Duration::from_secs_f64(mean.as_secs_f64() + (sample - mean.as_secs_f64()) * LATENCY_WEIGHT)
}

/// The lead for a mean wake-up latency.
fn lead_for(mean: Duration) -> Duration {
    mean.mul_f64(LEAD_PER_LATENCY).min(MAX_LEAD)
}

/// Timer slack of the timer thread, in ns (the least the kernel takes: 0 would mean "the default", 50 µs).
const TIMER_SLACK_NS: u64 = 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pending deadlines in firing order: earliest first, equal deadlines in the order they were added.
/// Sans-IO: `now` is always an argument, so the order and the "never early" rule are tested without a clock.
#[derive(Debug)]
pub struct Deadlines<T> {
    heap: BinaryHeap<Entry<T>>,
    added: u64,
}

#[derive(Debug)]
struct Entry<T> {
    due: Instant,
    /// Insertion number: breaks ties between equal deadlines first-in, first-out.
    order: u64,
    item: T,
}

impl<T> Entry<T> {
    fn key(&self) -> (Instant, u64) {
        (self.due, self.order)
    }
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// Reversed, so the max-heap's top is the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

impl<T> Default for Deadlines<T> {
    fn default() -> Self {
        Deadlines { heap: BinaryHeap::new(), added: 0 }
    }
}

impl<T> Deadlines<T> {
    /// Adds `item` due at `due`; true when it is now the earliest deadline (the sleeper must re-arm).
    pub fn insert(&mut self, due: Instant, item: T) -> bool {
        let earliest = self.next_due().is_none_or(|d| due < d);
        self.heap.push(Entry { due, order: self.added, item });
        self.added += 1;
        earliest
    }

    /// The earliest pending deadline.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.due)
    }

    /// The earliest deadline and its item if it is due at `now` (never one whose time has not come).
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        if self.next_due()? > now {
            return None;
        }
        self.heap.pop().map(|e| (e.due, e.item))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

struct State {
    deadlines: Deadlines<oneshot::Sender<u64>>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The owner of the timer thread: dropping the last [`Timer`] stops and joins it.
struct Thread {
    shared: Arc<Shared>,
    lead: Lead,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Thread {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.wake.notify_one();
        if let Some(h) = self.handle.take() {
            // Err: the thread panicked; its waiters already fell back to tokio's timer.
            let _ = h.join();
        }
    }
}

/// A handle to the precise timer thread; clones share it.
#[derive(Clone)]
pub struct Timer {
    thread: Arc<Thread>,
}

impl Timer {
    /// Starts the timer thread.
    pub fn start() -> std::io::Result<Timer> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { deadlines: Deadlines::default(), closed: false }),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        let handle = std::thread::Builder::new().name("soak-timer".into()).spawn(move || run(&s))?;
        Ok(Timer { thread: Arc::new(Thread { shared, lead: Lead::default(), handle: Some(handle) }) })
    }

    /// Resumes at `due` or just after it, never before. A deadline already past returns at once (a sender
    /// behind its schedule goes straight on: nothing is skipped or re-based).
    ///
    /// The thread wakes the task a lead early (the wake-up latency it has measured), and the task covers
    /// the rest by yielding to the runtime until `due`: the runtime keeps running other tasks meanwhile,
    /// and only the last few tens of µs before each frame are spent polling the clock.
    pub async fn sleep_until(&self, due: Instant) {
        let lead = self.thread.lead.current();
        let wake = due.checked_sub(lead).unwrap_or(due);
        if self.fire_at(wake).await.is_some() {
            self.thread.lead.observe(wake.elapsed());
        }
        while Instant::now() < due {
            tokio::task::yield_now().await;
        }
    }

    /// Waits for the timer thread to fire `due` (no lead), returning the thread's firing ordinal (0, 1, 2 ... in the order the
    /// thread fired deadlines), or `None` when `due` had passed or the timer was gone.
    async fn fire_at(&self, due: Instant) -> Option<u64> {
        if Instant::now() >= due {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let shared = &self.thread.shared;
        let armed = {
            let mut st = lock(&shared.state);
            if !st.closed && st.deadlines.insert(due, tx) {
                shared.wake.notify_one();
            }
            !st.closed
        };
        if !armed {
            tokio::time::sleep_until(due.into()).await;
            return None;
        }
        match rx.await {
            Ok(n) => Some(n),
            // The thread ended (it panicked) without firing: tokio's timer, late but never early.
            Err(_) => {
                tokio::time::sleep_until(due.into()).await;
                None
            }
        }
    }
}

/// The timer thread: fire whatever is due, then sleep until the earliest deadline or a new earlier one.
fn run(shared: &Shared) {
    // Err (not Linux, or refused): the default slack only makes wake-ups up to 50 µs later.
    let _ = nix::sys::prctl::set_timerslack(TIMER_SLACK_NS as _);
    let mut fired = 0u64;
    let mut st = lock(&shared.state);
    loop {
        let now = Instant::now();
        while let Some((_, tx)) = st.deadlines.pop_due(now) {
            // Err: the waiting task is gone (aborted); nothing to wake.
            let _ = tx.send(fired);
            fired += 1;
        }
        if st.closed {
            // Pending waiters see their sender dropped and fall back to tokio's timer.
            return;
        }
        st = match st.deadlines.next_due() {
            None => shared.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(due) => {
                shared
                    .wake
                    .wait_timeout(st, due.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What a deadline queue must do, so the reference check below runs on the real one and on a broken one.
    trait Queue {
        fn insert(&mut self, due: Instant, id: u32);
        fn pop_due(&mut self, now: Instant) -> Option<(Instant, u32)>;
    }

    impl Queue for Deadlines<u32> {
        fn insert(&mut self, due: Instant, id: u32) {
            Deadlines::insert(self, due, id);
        }
        fn pop_due(&mut self, now: Instant) -> Option<(Instant, u32)> {
            Deadlines::pop_due(self, now)
        }
    }

    /// Deliberately broken: rounds like a 1 ms timer wheel *down*, so a deadline fires up to 1 ms early.
    #[derive(Default)]
    struct CoarseEarly(Deadlines<u32>);

    impl Queue for CoarseEarly {
        fn insert(&mut self, due: Instant, id: u32) {
            self.0.insert(due, id);
        }
        fn pop_due(&mut self, now: Instant) -> Option<(Instant, u32)> {
            self.0.pop_due(now + Duration::from_micros(999))
        }
    }

    /// Deliberately broken: fires the latest due deadline first (a stack of what is due).
    #[derive(Default)]
    struct LatestFirst(Vec<(Instant, u32)>);

    impl Queue for LatestFirst {
        fn insert(&mut self, due: Instant, id: u32) {
            self.0.push((due, id));
        }
        fn pop_due(&mut self, now: Instant) -> Option<(Instant, u32)> {
            let i = self.0.iter().rposition(|(d, _)| *d <= now)?;
            Some(self.0.remove(i))
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A deadline this many µs after the current time (0: due now).
        Insert(u16),
        /// Time moves on this many µs, then everything due is fired.
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![(0u16..3000).prop_map(Op::Insert), (0u16..2000).prop_map(Op::Advance)]
    }

    /// The reference model: a plain list of (due, id); what is due fires earliest first, ties by id (ids are
    /// handed out in insertion order). Returns why `q` disagrees, if it does.
    fn check(q: &mut dyn Queue, ops: &[Op]) -> Result<(), String> {
        let base = Instant::now();
        let mut now = base;
        let mut model: Vec<(Instant, u32)> = Vec::new();
        let mut next_id = 0u32;
        let fire = |q: &mut dyn Queue, model: &mut Vec<(Instant, u32)>, now: Instant| {
            while let Some((due, id)) = q.pop_due(now) {
                if due > now {
                    return Err(format!("deadline {id} fired {:?} early", due - now));
                }
                model.sort();
                let want = model.first().copied().filter(|(d, _)| *d <= now);
                if want != Some((due, id)) {
                    return Err(format!("fired {id}, the model fires {want:?}"));
                }
                model.remove(0);
            }
            match model.iter().min() {
                Some((d, id)) if *d <= now => Err(format!("deadline {id} is due and did not fire")),
                _ => Ok(()),
            }
        };
        for op in ops {
            match op {
                Op::Insert(us) => {
                    let due = now + Duration::from_micros(u64::from(*us));
                    q.insert(due, next_id);
                    model.push((due, next_id));
                    next_id += 1;
                }
                Op::Advance(us) => {
                    now += Duration::from_micros(u64::from(*us));
                    fire(q, &mut model, now)?;
                }
            }
        }
        // finish(): advancing past the last deadline fires everything.
        now += Duration::from_secs(1);
        fire(q, &mut model, now)?;
        if model.is_empty() {
            Ok(())
        } else {
            Err(format!("{} deadlines never fired", model.len()))
        }
    }

    proptest! {
        #[test]
        fn deadlines_fire_in_order_and_never_early(ops in proptest::collection::vec(op(), 0..200)) {
            prop_assert_eq!(check(&mut Deadlines::<u32>::default(), &ops), Ok(()));
        }
    }

    #[test]
    fn the_check_catches_an_early_or_misordered_queue() {
        use Op::*;
        let early = [Insert(500), Advance(100)];
        assert_eq!(check(&mut Deadlines::<u32>::default(), &early), Ok(()));
        let why = check(&mut CoarseEarly::default(), &early).expect_err("fires 400 µs early");
        assert!(why.contains("early"), "{why}");

        let order = [Insert(100), Insert(300), Advance(400)];
        assert_eq!(check(&mut Deadlines::<u32>::default(), &order), Ok(()));
        let why = check(&mut LatestFirst::default(), &order).expect_err("fires 1 before 0");
        assert!(why.contains("fired 1, the model fires Some"), "{why}");
    }

    #[test]
    fn insert_says_when_the_sleeper_must_re_arm() {
        let t = Instant::now();
        let mut d = Deadlines::default();
        assert!(d.insert(t + Duration::from_millis(5), 'a'));
        assert!(!d.insert(t + Duration::from_millis(7), 'b'));
        assert!(!d.insert(t + Duration::from_millis(5), 'c'), "a tie does not move the earliest deadline");
        assert!(d.insert(t + Duration::from_millis(1), 'd'));
        assert_eq!(d.len(), 4);
        assert_eq!(d.pop_due(t), None);
        let fired: Vec<char> =
            std::iter::from_fn(|| d.pop_due(t + Duration::from_millis(6)).map(|x| x.1)).collect();
        assert_eq!(fired, ['d', 'a', 'c']);
        assert_eq!(d.next_due(), Some(t + Duration::from_millis(7)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_thread_wakes_every_task_in_deadline_order_and_never_early() {
        let timer = Timer::start().expect("timer thread");
        // Far enough ahead that every deadline is still pending when set, even on a busy machine.
        let base = Instant::now() + Duration::from_millis(100);
        // Deadlines 1 ms apart, set in a scrambled order from separate tasks.
        let ks: Vec<u64> = (0..40u64).map(|i| (i * 17) % 40).collect();
        let tasks: Vec<_> = ks
            .iter()
            .map(|&k| {
                let (timer, due) = (timer.clone(), base + Duration::from_millis(k));
                tokio::spawn(async move {
                    let ordinal = timer.fire_at(due).await;
                    (k, due, Instant::now(), ordinal)
                })
            })
            .collect();
        let mut woke = Vec::new();
        for t in tasks {
            woke.push(t.await.expect("task"));
        }
        for &(k, due, at, _) in &woke {
            assert!(at >= due, "deadline {k} woke {:?} early", due - at);
        }
        woke.sort_by_key(|w| w.0);
        let ordinals: Vec<Option<u64>> = woke.iter().map(|w| w.3).collect();
        // Each deadline was fired by the thread, and in deadline order.
        assert_eq!(ordinals, (0..40).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn the_lead_follows_the_wake_up_latency_within_its_bound() {
        let us = Duration::from_micros;
        let mut mean = Duration::ZERO;
        for _ in 0..400 {
            mean = next_mean(mean, us(80));
        }
        assert!(mean > us(79) && mean <= us(80), "{mean:?}");
        assert!(lead_for(mean) > us(118) && lead_for(mean) <= us(120), "{:?}", lead_for(mean));
        // A stall moves the mean by a bounded step, and the lead never exceeds its bound.
        let after_stall = next_mean(mean, Duration::from_secs(1));
        assert!(after_stall - mean <= (MAX_LEAD * 2) / 32, "{after_stall:?}");
        assert_eq!(lead_for(Duration::from_secs(1)), MAX_LEAD);
        assert_eq!(lead_for(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sleep_until_never_returns_early() {
        let timer = Timer::start().expect("timer thread");
        // A lead larger than any real latency: the task is woken early and must still wait for the deadline.
        timer.thread.lead.mean_ns.store(MAX_LEAD.as_nanos() as u64, AtomicOrdering::Relaxed);
        let base = Instant::now() + Duration::from_millis(5);
        for k in 0..20u64 {
            let due = base + Duration::from_micros(700 * k);
            timer.sleep_until(due).await;
            let at = Instant::now();
            assert!(at >= due, "woke {:?} early", due - at);
        }
    }

    #[tokio::test]
    async fn a_past_deadline_returns_at_once_and_a_stopped_timer_falls_back() {
        let timer = Timer::start().expect("timer thread");
        assert_eq!(timer.fire_at(Instant::now()).await, None);
        let due = Instant::now() + Duration::from_millis(3);
        lock(&timer.thread.shared.state).closed = true;
        assert_eq!(timer.fire_at(due).await, None);
        assert!(Instant::now() >= due);
    }
}
