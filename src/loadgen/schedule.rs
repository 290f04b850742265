//! The load generator's scheduler: when each arrival goes out, at what pace
//! the thread wakes (and so when answers are read), and what the sending
//! phase amounted to. Arrival `i` is intended at `t0 + i / rate`; a send
//! waits for a free slot under `--concurrency`, and whatever it waited counts
//! in its latency.

use super::Shared;
use super::send::pay;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The sending phase as it went.
pub(super) struct Sending {
    pub(super) tasks: JoinSet<()>,
    /// Arrivals handed to a payment task.
    pub(super) sent: u64,
    /// How long sends went out: the duration, unless a signal cut it short.
    pub(super) window: Duration,
    pub(super) unsent: u64,
    pub(super) interrupted: Option<String>,
}

/// Shortest and longest time between two wakes of the scheduler while it
/// sends: once per arrival, but not more than once a millisecond (arrivals
/// due in between go out together) and at least every 4 ms (answers are read
/// at wakes).
const MIN_WAKE: Duration = Duration::from_millis(1);
const MAX_WAKE: Duration = Duration::from_millis(4);

/// The scheduler's own pace ("batch, don't react"): it yields, so the runtime
/// runs the payment tasks started at this wake (their requests go out) and
/// reads every answer that arrived since the last wake in one go; then the
/// thread sleeps (to the microsecond) until `wake_at`, deaf to the sockets.
/// A wake costs the machine a context switch, which is most of what a send
/// costs, so answers do not each get one: an answer is read at the next wake,
/// at most [`MAX_WAKE`] after it came, and its latency counts that wait.
async fn pace(wake_at: Instant) {
    // The runtime polls this loop before the tasks an I/O poll woke, so it
    // yields twice: first the new payment tasks write their requests and the
    // runtime polls the sockets, then the tasks that poll woke read their
    // answers (else they would wait a whole sleep more).
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    std::thread::sleep(wake_at.saturating_duration_since(Instant::now()));
}

/// The scheduler, a loop on this (single-threaded) runtime: waits for each
/// arrival's intended time at its own pace ([`pace`]: at high rates the
/// arrivals due within a millisecond go out together, up to a millisecond
/// late, which their latency counts), then for a free slot, and starts the
/// arrival's payment task, until the schedule or the duration ends or a
/// signal comes.
pub(super) async fn send_all(shared: Arc<Shared>, t0: Instant) -> Sending {
    let schedule = shared.cfg.schedule;
    let arrivals = schedule.arrivals();
    let end = t0 + schedule.duration();
    let slots = Arc::new(Semaphore::new(shared.cfg.concurrency));
    let mut stop = shared.stop.clone();
    let mut last_wake = t0;
    let mut out = Sending {
        tasks: JoinSet::new(),
        sent: 0,
        window: schedule.duration(),
        unsent: 0,
        interrupted: None,
    };
    for i in 0..arrivals {
        let intended = t0 + schedule.offset(i);
        out.interrupted = stop.borrow().map(str::to_string);
        while out.interrupted.is_none() && intended > Instant::now() {
            // At the arrival's time, but not sooner than MIN_WAKE after the
            // last wake nor later than MAX_WAKE from now.
            let wake_at = intended
                .max(last_wake + MIN_WAKE)
                .min(Instant::now() + MAX_WAKE);
            pace(wake_at).await;
            last_wake = Instant::now();
            out.interrupted = stop.borrow().map(str::to_string);
        }
        // A slot for this arrival, unless the duration ends (or a signal comes) first.
        let slot = match (&out.interrupted, slots.clone().try_acquire_owned()) {
            (Some(_), _) => None,
            (None, Ok(permit)) => Some(permit),
            (None, Err(_)) => tokio::select! {
                slot = tokio::time::timeout_at(end.into(), slots.clone().acquire_owned()) => {
                    slot.ok().and_then(Result::ok)
                }
                signal = stop.wait_for(Option::is_some) => {
                    out.interrupted = signal.ok().and_then(|s| *s).map(str::to_string);
                    None
                }
            },
        };
        // A send whose slot was free goes out even if the scheduler woke a
        // little after the window's end (it is late, not unsent); one that
        // had to wait for a slot is given up at the end.
        let Some(permit) = slot else {
            out.unsent = arrivals - i;
            if out.interrupted.is_some() {
                out.window = t0.elapsed().min(schedule.duration());
            }
            break;
        };
        out.sent += 1;
        out.tasks.spawn(pay(shared.clone(), i, intended, permit));
        // Finished tasks leave the set at once: it holds at most --concurrency.
        while out.tasks.try_join_next().is_some() {}
    }
    out
}
