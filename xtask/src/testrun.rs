//! Runs one test binary, passing its output through while keeping every panic message it prints.
//!
//! A full run prints tens of thousands of lines, and CI shows only its head and tail: a failed
//! assertion's message sits in the middle and is lost. Repeating the messages at the end puts
//! the reason for a failure where it is read.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;

use anyhow::{Context, Result};

/// How many panics are kept per stream, and how much of each: enough to name every failed test
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

/// Runs `cmd` with its standard output and error passed through line by line.
pub(crate) fn run_keeping_panics(cmd: &mut Command) -> Result<Outcome> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {shown}"))?;
    let out = child
        .stdout
        .take()
        .map(|s| thread::spawn(move || pass_through(s, std::io::stdout())));
    let err = child
        .stderr
        .take()
        .map(|s| thread::spawn(move || pass_through(s, std::io::stderr())));
    let status = child
        .wait()
        .with_context(|| format!("waiting for {shown}"))?;
    let mut panics = Vec::new();
    for reader in [out, err].into_iter().flatten() {
        panics.extend(reader.join().unwrap_or_default());
    }
    Ok(Outcome { status, panics })
}

/// Copies `from` to `to`, returning the panic messages seen on the way.
fn pass_through(from: impl Read, mut to: impl Write) -> Vec<String> {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    let mut panics = PanicLines::default();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let _ = to.write_all(&line);
                panics.see(&String::from_utf8_lossy(&line));
            }
        }
    }
    let _ = to.flush();
    panics.done()
}

/// Picks panic messages out of a stream of lines.
#[derive(Default)]
struct PanicLines {
    kept: Vec<String>,
    current: Option<(String, usize)>,
}

impl PanicLines {
    fn see(&mut self, line: &str) {
        let line = line.trim_end();
        if line.contains("panicked at ") {
            self.finish();
            if self.kept.len() < MAX_PANICS {
                self.current = Some((clip(line), 1));
            }
            return;
        }
        let Some((text, lines)) = &mut self.current else {
            return;
        };
        // The message ends where the harness's own lines start.
        let ends = line.is_empty()
            || line.starts_with("note: ")
            || line.starts_with("stack backtrace:")
            || line.starts_with("test ")
            || line.starts_with("---- ")
            || *lines >= MAX_LINES_PER_PANIC;
        if ends {
            self.finish();
        } else {
            text.push('\n');
            text.push_str(&clip(line));
            *lines += 1;
        }
    }

    fn finish(&mut self) {
        if let Some((text, _)) = self.current.take() {
            self.kept.push(text);
        }
    }

    fn done(mut self) -> Vec<String> {
        self.finish();
        self.kept
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
        let mut lines = PanicLines::default();
        for line in text.lines() {
            lines.see(line);
        }
        lines.done()
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
