//! Sharded soaks: one run's clients split over N processes (on one machine or many), so that the N shards
//! together run exactly the clients, seeds, start offsets and reconnects of the one unsharded run with the
//! same `--seed`, and all shards begin their schedules at one common instant.
//!
//! Client `i` of an `--clients C` run belongs to shard `i % N`: every shard computes the whole run's
//! schedules and churn plan from the seed and keeps its own clients, which keep their global index (and so
//! their handshake seeds). Pure functions; the start gate that releases the shards is [`super::gate`].

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most shards one run can be split into.
pub const MAX_SHARDS: u32 = 4096;

/// `--shard I/N`: shard `index` (0-based, as Kubernetes' `JOB_COMPLETION_INDEX`) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("{s:?}: expected I/N, e.g. 0/4"))?;
        let num = |v: &str| v.trim().parse::<u32>().map_err(|_| format!("{s:?}: {v:?} is not a number"));
        let (index, count) = (num(i)?, num(n)?);
        if count == 0 || count > MAX_SHARDS {
            return Err(format!("{s:?}: the shard count must be 1..={MAX_SHARDS}"));
        }
        if index >= count {
            return Err(format!("{s:?}: shards are numbered from 0, so I must be below N ({count})"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The unsharded run: one shard holding every client.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether client `i` of the run is this shard's.
    pub fn owns(&self, client: u32) -> bool {
        client % self.count == self.index
    }

    /// This shard's clients (global indexes, ascending) of a run of `clients`.
    pub fn clients(&self, clients: u32) -> Vec<u32> {
        (self.index..clients).step_by(self.count as usize).collect()
    }
}

/// Milliseconds since the UNIX epoch of `t`.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// How long from `now` until the common start `start_ms`, or why the shard cannot keep it: a start in
/// the past means this shard's clients would begin late, behind the others.
pub fn until_start(start_ms: u64, now: SystemTime) -> Result<Duration, String> {
    let now_ms = unix_ms(now);
    if start_ms < now_ms {
        return Err(format!(
            "the common start (UNIX ms {start_ms}) passed {} ms before this shard's clients were connected; \
             give a later --start-at, or a longer --lead to the start gate",
            now_ms - start_ms
        ));
    }
    Ok(Duration::from_millis(start_ms - now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_shard_specs() {
        assert_eq!("0/4".parse(), Ok(Shard { index: 0, count: 4 }));
        assert_eq!(" 3 / 4 ".parse(), Ok(Shard { index: 3, count: 4 }));
        assert!("4/4".parse::<Shard>().unwrap_err().contains("numbered from 0"));
        assert!("0/0".parse::<Shard>().unwrap_err().contains("1..="));
        assert!("1".parse::<Shard>().unwrap_err().contains("expected I/N"));
        assert!("a/2".parse::<Shard>().is_err());
        assert!(format!("0/{}", MAX_SHARDS + 1).parse::<Shard>().is_err());
        assert_eq!(Shard { index: 2, count: 5 }.to_string(), "2/5");
    }

    #[test]
    fn shards_partition_the_clients_exactly() {
        for clients in [0u32, 1, 7, 64, 65] {
            for count in [1u32, 2, 3, 4, 8, 100] {
                let mut all: Vec<u32> =
                    (0..count).flat_map(|index| Shard { index, count }.clients(clients)).collect();
                all.sort_unstable();
                assert_eq!(all, (0..clients).collect::<Vec<_>>(), "{clients} clients over {count} shards");
                for index in 0..count {
                    let s = Shard { index, count };
                    assert!(s.clients(clients).iter().all(|&c| s.owns(c)));
                    // Shares differ by at most one client.
                    assert!(s.clients(clients).len().abs_diff(clients as usize / count as usize) <= 1);
                }
            }
        }
        assert_eq!(Shard::WHOLE.clients(3), vec![0, 1, 2]);
    }

    #[test]
    fn a_start_in_the_past_is_refused() {
        let now = UNIX_EPOCH + Duration::from_millis(10_000);
        assert_eq!(until_start(12_500, now), Ok(Duration::from_millis(2_500)));
        assert_eq!(until_start(10_000, now), Ok(Duration::ZERO));
        assert!(until_start(9_000, now).unwrap_err().contains("passed 1000 ms before"));
    }
}
