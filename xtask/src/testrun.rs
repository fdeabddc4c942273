//! Runs one test binary, passing its output through while keeping every panic message it prints.
//!
//! A full run prints tens of thousands of lines, and CI shows only its head and tail: a failed
//! assertion's message sits in the middle and is lost. Repeating the messages at the end puts
//! the reason for a failure where it is read.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How many panics are kept per binary, and how much of each: enough to name every failed test
/// of a binary without repeating a flood.
const MAX_PANICS: usize = 20;
const MAX_LINES_PER_PANIC: usize = 6;
const MAX_LINE_CHARS: usize = 600;

/// What one test binary did.
pub(crate) struct Outcome {
    pub(crate) status: ExitStatus,
    /// Each panic: its "thread '…' panicked at file:line:" line and the message under it.
    pub(crate) panics: Vec<String>,
}

/// How long the output may keep flowing after the binary exited: a process it started and left
/// behind still holds the pipes, and must not hold up the rest of the run.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(10);

/// Runs `cmd` with its standard output and error passed through line by line.
pub(crate) fn run_keeping_panics(cmd: &mut Command) -> Result<Outcome> {
    run_draining_for(cmd, DRAIN_AFTER_EXIT)
}

fn run_draining_for(cmd: &mut Command, drain: Duration) -> Result<Outcome> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {shown}"))?;
    // Each message is kept as soon as it ends, so a pipe held open cannot lose it.
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (done, finished) = mpsc::channel();
    let mut readers = 0;
    if let Some(out) = child.stdout.take() {
        reader(out, std::io::stdout(), &kept, &done);
        readers += 1;
    }
    if let Some(err) = child.stderr.take() {
        reader(err, std::io::stderr(), &kept, &done);
        readers += 1;
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {shown}"))?;
    let deadline = Instant::now() + drain;
    for _ in 0..readers {
        let left = deadline.saturating_duration_since(Instant::now());
        if finished.recv_timeout(left).is_err() {
            eprintln!(
                "(output still open {drain:?} after the binary exited: a process left behind)"
            );
            break;
        }
    }
    let panics = std::mem::take(&mut *kept.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Outcome { status, panics })
}

/// A thread passing `from` through to `to`, which says on `done` when `from` has ended.
fn reader(
    from: impl Read + Send + 'static,
    to: impl Write + Send + 'static,
    kept: &Arc<Mutex<Vec<String>>>,
    done: &mpsc::Sender<()>,
) {
    let (kept, done) = (kept.clone(), done.clone());
    thread::spawn(move || {
        pass_through(from, to, &kept);
        let _ = done.send(());
    });
}

/// Copies `from` to `to`, adding the panic messages seen on the way to `kept`.
fn pass_through(from: impl Read, mut to: impl Write, kept: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    let mut panics = PanicLines::default();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let _ = to.write_all(&line);
                if let Some(message) = panics.see(&String::from_utf8_lossy(&line)) {
                    keep(kept, message);
                }
            }
        }
    }
    let _ = to.flush();
    if let Some(message) = panics.finish() {
        keep(kept, message);
    }
}

fn keep(kept: &Mutex<Vec<String>>, message: String) {
    let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
    if kept.len() < MAX_PANICS {
        kept.push(message);
    }
}

/// Picks panic messages out of a stream of lines.
#[derive(Default)]
struct PanicLines {
    current: Option<(String, usize)>,
}

impl PanicLines {
    /// Takes one line; returns a message it ended.
    fn see(&mut self, line: &str) -> Option<String> {
        let line = line.trim_end();
        if line.contains("panicked at ") {
            let ended = self.finish();
            self.current = Some((clip(line), 1));
            return ended;
        }
        let (text, lines) = self.current.as_mut()?;
        // The message ends where the harness's own lines start.
        let ends = line.is_empty()
            || line.starts_with("note: ")
            || line.starts_with("stack backtrace:")
            || line.starts_with("test ")
            || line.starts_with("---- ")
            || *lines >= MAX_LINES_PER_PANIC;
        if ends {
            return self.finish();
        }
        text.push('\n');
        text.push_str(&clip(line));
        *lines += 1;
        None
    }

    fn finish(&mut self) -> Option<String> {
        self.current.take().map(|(text, _)| text)
    }
}

fn clip(line: &str) -> String {
    match line.char_indices().nth(MAX_LINE_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics_in(text: &str) -> Vec<String> {
        let kept = Mutex::new(Vec::new());
        pass_through(text.as_bytes(), std::io::sink(), &kept);
        kept.into_inner().unwrap()
    }

    #[test]
    fn a_message_is_kept_up_to_the_harness_note() {
        let text = "[Dex] {\"event\":\"link\"}\n\
            thread 'a_test' panicked at game-client/tests/networks.rs:960:5:\n\
            {\"rtt_ms\":231}\n\
            note: run with `RUST_BACKTRACE=1`\n\
            test a_test ... FAILED\n";
        assert_eq!(
            panics_in(text),
            ["thread 'a_test' panicked at game-client/tests/networks.rs:960:5:\n{\"rtt_ms\":231}"]
        );
    }

    #[test]
    fn a_process_left_behind_does_not_hold_up_the_run() {
        let started = Instant::now();
        let outcome = run_draining_for(
            Command::new("sh").args([
                "-c",
                "sleep 30 & echo \"thread 'x' panicked at fake.rs:1:1:\"; \
                 echo '(a fake, from an xtask test)'; echo; exit 3",
            ]),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(outcome.status.code(), Some(3));
        assert_eq!(
            outcome.panics,
            ["thread 'x' panicked at fake.rs:1:1:\n(a fake, from an xtask test)"]
        );
    }

    #[test]
    fn a_long_message_is_cut_and_a_flood_is_capped() {
        let mut text = String::new();
        for i in 0..30 {
            text.push_str(&format!("thread 't{i}' panicked at x.rs:1:1:\n"));
            for _ in 0..10 {
                text.push_str(&"y".repeat(2_000));
                text.push('\n');
            }
        }
        let kept = panics_in(&text);
        assert_eq!(kept.len(), MAX_PANICS);
        assert_eq!(kept[0].lines().count(), MAX_LINES_PER_PANIC);
        assert!(
            kept[0]
                .lines()
                .all(|l| l.chars().count() <= MAX_LINE_CHARS + 1)
        );
    }
}
