//! A key's single flight: the channel its waiters watch, the guard that always ends it, and
//! the shared deadline clock of waiters that bound their wait.
//!
//! A waiter with a deadline does not arm a timer of its own: thousands of callers joining one
//! cold key would each register (and, once woken, cancel) a timer, which costs more than the
//! wake-up itself. The flight has one ticker instead, a task that, from the first such
//! waiter's deadline on, publishes the time every hundredth of the deadline until the flight
//! ends. A waiter gives up on the first tick at which its deadline is less than a period
//! away: it waits at most its deadline, and at least 99 % of it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{CachedToken, Entry};
use crate::error::{Error, Result};

/// What a flight's waiters watch.
#[derive(Clone, Default)]
pub(super) struct FlightState {
    /// The fetch's result, once it has one.
    pub(super) result: Option<Result<Arc<CachedToken>>>,
    /// The ticker's latest reading of the clock, and its period.
    tick: Option<(Instant, Duration)>,
}

pub(super) type Flight = watch::Receiver<FlightState>;

/// The flight in progress, as the entry keeps it.
pub(super) struct Slot {
    pub(super) rx: Flight,
    tx: watch::Sender<FlightState>,
    /// The shortest deadline a ticker runs for, if one does.
    ticking: Option<Duration>,
}

impl Slot {
    pub(super) fn new() -> (Slot, watch::Sender<FlightState>) {
        let (tx, rx) = watch::channel(FlightState::default());
        (
            Slot {
                rx,
                tx: tx.clone(),
                ticking: None,
            },
            tx,
        )
    }

    /// Make sure a ticker serves a waiter that started at `started` with `deadline`.
    pub(super) fn tick_for(&mut self, started: Instant, deadline: Duration) {
        if self.ticking.is_some_and(|d| d <= deadline) {
            return;
        }
        self.ticking = Some(deadline);
        let period = (deadline / 100).max(Duration::from_millis(1));
        let first = started + deadline.saturating_sub(period);
        let tx = self.tx.clone();
        let mut rx = self.rx.clone();
        tokio::spawn(async move {
            let mut at = first;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    // The flight ended: nobody needs the clock any more.
                    _ = rx.wait_for(|s| s.result.is_some()) => return,
                }
                let now = Instant::now();
                let mut ended = false;
                tx.send_if_modified(|s| {
                    ended = s.result.is_some();
                    if !ended {
                        s.tick = Some((now, period));
                    }
                    !ended
                });
                if ended {
                    return;
                }
                at = now + period;
            }
        });
    }
}

/// Wait for `rx`'s result; with a deadline, give up once the flight's ticker says it is
/// (nearly) past.
pub(super) async fn wait(
    mut rx: Flight,
    bound: Option<(Instant, Duration)>,
) -> Result<Arc<CachedToken>> {
    loop {
        {
            let state = rx.borrow_and_update();
            match &state.result {
                Some(Ok(t)) => return Ok(t.clone()),
                Some(Err(e)) => return Err(e.clone()),
                None => {}
            }
            if let (Some((started, deadline)), Some((now, period))) = (bound, state.tick) {
                if now + period >= started + deadline {
                    return Err(Error::Timeout(deadline));
                }
            }
        }
        if rx.changed().await.is_err() {
            return Err(Error::config("token fetch task ended without a result"));
        }
    }
}

/// Ends a key's flight whatever happens to the task running it: normally with the fetch's
/// result ([`finish`](Self::finish)), and with an error when the task unwinds (a panicking
/// [`TokenSource`](super::TokenSource)) or is dropped by a shutting-down runtime. Without it, a
/// fetch that never finished would leave its marker behind and every later caller would join a
/// dead flight.
pub(super) struct FlightGuard {
    pub(super) entry: Arc<Entry>,
    pub(super) tx: Option<watch::Sender<FlightState>>,
}

impl FlightGuard {
    pub(super) fn finish(mut self, result: Result<Arc<CachedToken>>) {
        self.end(result);
    }

    fn end(&mut self, result: Result<Arc<CachedToken>>) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        {
            let mut flight = crate::sync::lock(&self.entry.flight);
            *flight = None;
        }
        self.entry.refreshing.store(false, Ordering::Release);
        // Wakes every waiter at once.
        tx.send_replace(FlightState {
            result: Some(result),
            tick: None,
        });
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if self.tx.is_some() {
            tracing::warn!(target: "agent_oauth", "token fetch ended without a result (the token source panicked or was cancelled)");
            self.entry.back_off();
            self.end(Err(Error::config(
                "the token fetch ended without a result (the token source panicked or was cancelled)",
            )));
        }
    }
}
