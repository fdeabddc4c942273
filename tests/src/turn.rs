//! A real TURN server for tests: Debian's coturn, started by the test with a shared secret (the
//! TURN REST scheme the Worker mints credentials for) and stopped when dropped. Never the
//! package's service.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running `turnserver`.
pub struct Coturn {
    /// Where it listens (UDP and TCP).
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its log.
    pub log: PathBuf,
    /// The namespace it runs in, when not this process's.
    netns: Option<PathBuf>,
    child: Child,
}

impl Coturn {
    /// Starts coturn on `ip:port` relaying from `ip`, taking credentials made with `secret`.
    /// `loopback` lets it relay to loopback peers (only for tests on `lo`).
    pub fn start(ip: IpAddr, port: u16, secret: &str, loopback: bool) -> Result<Self> {
        Self::start_in(None, ip, port, secret, loopback)
    }

    /// [`Coturn::start`] in the network namespace `netns` (a `/proc/PID/ns/net`, see
    /// [`crate::lab`]) when given.
    pub fn start_in(
        netns: Option<&std::path::Path>,
        ip: IpAddr,
        port: u16,
        secret: &str,
        loopback: bool,
    ) -> Result<Self> {
        let logs = crate::repo_root().join("target/test-logs");
        std::fs::create_dir_all(&logs)?;
        let dir = crate::temp_dir("coturn")?;
        // Tests in parallel may each run a coturn on the same address in their own namespace.
        let unique = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let log = logs.join(format!(
            "coturn-{ip}-{port}-{}.log",
            unique.unwrap_or_default()
        ));
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net={}", netns.display()))
                    .arg("turnserver");
                command
            }
            None => Command::new("turnserver"),
        };
        command
            .args([
                "-n",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--simple-log",
                "--verbose",
            ])
            .arg(format!("--listening-ip={ip}"))
            .arg(format!("--relay-ip={ip}"))
            .arg(format!("--listening-port={port}"))
            .args(["--use-auth-secret", "--realm=duet.test"])
            .arg(format!("--static-auth-secret={secret}"))
            .arg(format!(
                "--pidfile={}",
                dir.join("turnserver.pid").display()
            ))
            .arg(format!("--log-file={}", log.display()));
        if loopback {
            command.arg("--allow-loopback-peers");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting turnserver (`cargo xtask test` installs coturn)")?;
        let coturn = Coturn {
            ip,
            port,
            log,
            netns: netns.map(|n| n.to_owned()),
            child,
        };
        coturn.wait_ready(Duration::from_secs(10))?;
        Ok(coturn)
    }

    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let probe = || std::net::TcpStream::connect((self.ip, self.port)).is_ok();
            let up = match &self.netns {
                Some(netns) => crate::lab::in_netns(netns, probe)?,
                None => probe(),
            };
            if up {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "turnserver did not listen on {}:{} within {limit:?}; see {}",
            self.ip,
            self.port,
            self.log.display()
        )
    }

    /// Whether coturn grants an allocation to `username`/`credential` and relays through it
    /// (coturn's own test client, a few messages between two allocations).
    pub fn allocates(&self, username: &str, credential: &str) -> Result<bool> {
        // Bounded: a refused allocation ends at once, but a lost server must not hang a test.
        let status = Command::new("timeout")
            .args(["30", "turnutils_uclient", "-y", "-n", "3", "-m", "1"])
            .args(["-u", username, "-w", credential])
            .args(["-p", &self.port.to_string()])
            .arg(self.ip.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running turnutils_uclient")?;
        Ok(status.success())
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
