//! A progress line on stderr while a run goes on (only when the caller asks: the CLI asks
//! on a terminal).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::BenchConfig;
use crate::load::Live;

/// The drawing thread; [`Progress::finish`] stops it and clears the line.
pub(crate) struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts a thread that redraws the counters five times a second.
pub(crate) fn start(cfg: &BenchConfig, live: Arc<Live>) -> Progress {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let target = cfg.count.map(|c| c * u64::from(cfg.publisher_count()));
    let conns = u64::from(cfg.publisher_count() + cfg.subscriber_count()).max(u64::from(
        if cfg.scenario == crate::Scenario::Conn {
            cfg.clients
        } else {
            0
        },
    ));
    let thread = std::thread::spawn(move || {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let start = Instant::now();
        let (mut last_sent, mut last_recv, mut last_t) = (0u64, 0u64, start);
        while !flag.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let now = Instant::now();
            let (sent, recv) = (
                live.sent.load(Ordering::Relaxed),
                live.received.load(Ordering::Relaxed),
            );
            let dt = now.duration_since(last_t).as_secs_f64().max(1e-3);
            let connected = live.connected.load(Ordering::Relaxed);
            let mut msg = format!("connected {connected}/{conns}");
            if sent > 0 || recv > 0 {
                msg = format!(
                    "{msg}  sent {sent}{}  ({:.0}/s)  received {recv} ({:.0}/s)",
                    target.map_or(String::new(), |t| format!("/{t}")),
                    (sent - last_sent) as f64 / dt,
                    (recv - last_recv) as f64 / dt,
                );
            }
            bar.set_message(msg);
            bar.tick();
            (last_sent, last_recv, last_t) = (sent, recv, now);
        }
        bar.finish_and_clear();
    });
    Progress {
        stop,
        thread: Some(thread),
    }
}

impl Progress {
    /// Stops drawing and clears the line.
    pub(crate) fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
