//! A Node script of `tests/e2e` or `tests/bench` that drives browsers while a Rust test or
//! benchmark drives the rest: its stdout lines as they come (echoed to stderr), lines written
//! to its stdin, and its final `RESULT {json}`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running script.
pub struct Script {
    node: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line not waited for, for the error that says what the script did.
    seen: String,
}

impl Script {
    /// Starts `node PATH ARGS` (`path` relative to the repository) with `env` set.
    pub fn start(path: &str, args: &[String], env: &[(&str, &Path)]) -> Result<Script> {
        let root = crate::repo_root();
        let mut command = Command::new("node");
        command
            .arg(root.join(path))
            .args(args)
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (var, value) in env {
            command.env(var, value);
        }
        let mut node = command
            .spawn()
            .context("node (cargo xtask test installs the npm packages)")?;
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        let stdout = node.stdout.take().context("stdout")?;
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[{name}] {line}");
                let _ = lines_tx.send(line);
            }
        });
        Ok(Script {
            stdin: node.stdin.take(),
            node,
            lines,
            seen: String::new(),
        })
    }

    /// Waits for a line that starts with `start`; returns the rest of it.
    pub fn wait_for_start(&mut self, start: &str, within: Duration) -> Result<String> {
        let deadline = Instant::now() + within;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(got) if got.starts_with(start) => return Ok(got[start.len()..].to_owned()),
                Ok(got) => {
                    self.seen.push_str(&got);
                    self.seen.push('\n');
                }
                Err(_) => bail!("the script never printed {start:?}:\n{}", self.seen),
            }
        }
    }

    /// Writes `line` to the script's stdin.
    pub fn say(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .context("the script's stdin is closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Closes the script's stdin, waits for its end and returns its `RESULT`, which must say
    /// `"ok": true`.
    pub fn result(mut self) -> Result<serde_json::Value> {
        drop(self.stdin.take());
        let status = self.node.wait()?;
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        let result = crate::result_line(&self.seen)
            .with_context(|| format!("no result ({status}):\n{}", self.seen))?;
        if !status.success() || result["ok"] != true {
            bail!("the script failed ({status}): {result}");
        }
        Ok(result)
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Ok(None) = self.node.try_wait() {
            let _ = self.node.kill();
            let _ = self.node.wait();
        }
    }
}
