//! The two synchronisation helpers every task of the server uses (the bottom of the module graph).

use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

/// Locks a mutex, ignoring poisoning: every critical section here only updates counters and maps, so
/// the data stays consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resolves once the watched flag is `true` (or its sender is gone). Returns nothing, so no borrow of
/// the channel is held across an `.await` of the caller.
pub(crate) async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
