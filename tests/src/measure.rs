//! What the transfer benchmarks measure on the processes they start: peak memory growth, and
//! lines of a child's output read with a timeout; and where their reports go.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use anyhow::{Context, Result};

/// Samples the peak RSS of a process every 20 ms until dropped or read.
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicU64>,
    baseline: u64,
}

impl PeakRss {
    /// Starts watching `pid`; its RSS now is the baseline.
    pub fn watch(pid: u32) -> Self {
        let baseline = crate::rss(pid);
        let peak = Arc::new(AtomicU64::new(baseline));
        let stop = Arc::new(AtomicU64::new(0));
        let (p, s) = (Arc::clone(&peak), Arc::clone(&stop));
        std::thread::spawn(move || {
            while s.load(Ordering::Relaxed) == 0 {
                p.fetch_max(crate::rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            peak,
            stop,
            baseline,
        }
    }

    /// Stops watching: the highest RSS seen over the baseline, in MiB.
    pub fn growth_mib(&self) -> f64 {
        self.stop.store(1, Ordering::Relaxed);
        self.peak
            .load(Ordering::Relaxed)
            .saturating_sub(self.baseline) as f64
            / (1024.0 * 1024.0)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(1, Ordering::Relaxed);
    }
}

/// Lines of a child's stdout, readable with a timeout.
pub fn lines_of(child: &mut Child) -> Result<Receiver<String>> {
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Writes `report` to `target/bench/NAME.json` and prints it.
pub fn write_report(name: &str, report: &serde_json::Value) -> Result<()> {
    let out = crate::repo_root().join(format!("target/bench/{name}.json"));
    std::fs::create_dir_all(out.parent().context("target/bench")?)?;
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(&out, &text)?;
    println!("{text}\nwritten to {}", out.display());
    Ok(())
}
