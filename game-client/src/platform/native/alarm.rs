//! Rings a [`Wake`] at a wall-clock time: the desktop's way to keep the transfer engine's
//! deadlines (a progress report, a grant repeated after a quiet spell) when the pump that runs it
//! is off the frame loop and nothing arrives to wake it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::ports::Wake;

/// One thread, started on the first request, sleeping until the earliest time asked for.
pub struct Alarm {
    wake: Wake,
    shared: Arc<Shared>,
    started: std::sync::Once,
}

#[derive(Default)]
struct Shared {
    /// The earliest time asked for and not rung yet (ms since the epoch).
    due: Mutex<Option<u64>>,
    changed: Condvar,
}

impl Alarm {
    /// An alarm that rings `wake`.
    pub fn new(wake: Wake) -> Self {
        Self {
            wake,
            shared: Arc::default(),
            started: std::sync::Once::new(),
        }
    }

    /// Rings at `at_ms` (ms since the epoch) at the latest. An earlier request than the one
    /// pending replaces it; a later one is dropped, since the pump asks again after each turn.
    pub fn ring_at(&self, at_ms: u64) {
        self.started.call_once(|| {
            let (shared, wake) = (self.shared.clone(), self.wake.clone());
            let spawned = std::thread::Builder::new()
                .name("duet-alarm".into())
                .spawn(move || ring(&shared, &wake));
            if let Err(e) = spawned {
                bevy::log::error!("cannot start the transfer alarm: {e}");
            }
        });
        let mut due = crate::util::lock_shared(&self.shared.due);
        if due.is_none_or(|d| at_ms < d) {
            *due = Some(at_ms);
            self.shared.changed.notify_one();
        }
    }
}

/// The alarm's thread: for the process's lifetime.
fn ring(shared: &Shared, wake: &Wake) {
    let mut due = crate::util::lock_shared(&shared.due);
    loop {
        match *due {
            None => {
                due = shared
                    .changed
                    .wait(due)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            Some(at) => {
                let now = crate::util::now_ms();
                if now >= at {
                    *due = None;
                    wake.wake();
                } else {
                    due = shared
                        .changed
                        .wait_timeout(due, Duration::from_millis(at - now))
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Waits until `wake` rang (polled with a no-op context), up to `limit`.
    fn rang_within(wake: &Wake, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        while started.elapsed() < limit {
            if wake.poll(&mut cx) {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    #[test]
    fn it_rings_at_the_earliest_time_asked_and_not_before() {
        let wake = Wake::default();
        let alarm = Alarm::new(wake.clone());
        let now = crate::util::now_ms();
        alarm.ring_at(now + 400);
        // An earlier request wins; a later one changes nothing.
        alarm.ring_at(now + 80);
        alarm.ring_at(now + 300);
        let rang = rang_within(&wake, Duration::from_secs(2)).expect("it rang");
        assert!(rang >= Duration::from_millis(60), "too early: {rang:?}");
        assert!(
            rang < Duration::from_millis(280),
            "not the earliest: {rang:?}"
        );
        // Only once: the dropped later requests do not ring again.
        assert_eq!(rang_within(&wake, Duration::from_millis(500)), None);
        // And again when asked again.
        alarm.ring_at(crate::util::now_ms() + 20);
        assert!(rang_within(&wake, Duration::from_secs(2)).is_some());
    }
}
