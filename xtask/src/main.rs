//! Duet's developer commands.
//!
//! - `cargo xtask dev`: install what is missing, build, serve Duet on http://127.0.0.1:8787.
//! - `cargo xtask test`: install what is missing, build, run every test (inside an `lo`-only network
//!   namespace, so WebRTC peers and servers only ever talk over loopback).
//! - `cargo xtask bench NAME`: run a benchmark, writing `target/bench/NAME.json`.
//! - `cargo xtask build-worker`: rebuild the Worker if its sources changed (wrangler's build hook).
//! - `cargo xtask build-web`: rebuild the browser client into `web/pkg/` if its sources changed.
//! - `cargo xtask deploy`: build both, then `wrangler deploy` (needs a Cloudflare login).
//!
//! Every install step checks first and does nothing when the tool is already there, so once set up
//! all of this runs with no network.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

mod tools;

const USAGE: &str =
    "usage: cargo xtask <dev | test [-- TEST ARGS] | bench NAME | build-worker | build-web | setup>
  dev           install missing tools, build, serve Duet on http://127.0.0.1:8787
  test          install missing tools, build, run every test
  bench NAME    run a benchmark (signaling, transfer, hostile, browser, call, chat) and write target/bench/NAME.json
  build-worker  rebuild the worker's wasm if its sources changed
  build-web     rebuild the browser client (web/pkg) if its sources changed
  deploy        build the worker and the browser client, then `wrangler deploy`
  setup         only install missing tools";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = repo_root();
    std::env::set_current_dir(&root)?;
    match command.as_str() {
        "dev" => dev(&root),
        "test" => test(&root, &rest),
        "bench" => bench(&root, &rest),
        "build-worker" => build_worker(&root, false),
        "build-web" => build_web(&root, false),
        "deploy" => deploy(&root),
        "setup" => tools::ensure_all(&root),
        _ => {
            eprintln!("{USAGE}");
            bail!("unknown command {command:?}")
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// Runs a command, failing with its name if it does not succeed.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn newest_mtime(paths: &[PathBuf]) -> SystemTime {
    fn walk(path: &Path, newest: &mut SystemTime) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                for entry in entries.flatten() {
                    walk(&entry.path(), newest);
                }
            }
        } else if let Ok(modified) = meta.modified() {
            *newest = (*newest).max(modified);
        }
    }
    let mut newest = SystemTime::UNIX_EPOCH;
    for path in paths {
        walk(path, &mut newest);
    }
    newest
}

/// Whether `output` exists and is newer than every file under `inputs`.
fn up_to_date(output: &Path, inputs: &[PathBuf]) -> bool {
    std::fs::metadata(output)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built > newest_mtime(inputs))
}

/// Builds the worker with `worker-build` unless its output is newer than every input.
fn build_worker(root: &Path, force: bool) -> Result<()> {
    let output = root.join("worker/build/index_bg.wasm");
    let inputs = [
        root.join("worker/src"),
        root.join("worker/Cargo.toml"),
        root.join("shared/src"),
        root.join("shared/Cargo.toml"),
        root.join("Cargo.lock"),
        // The `web` profile lives in the workspace manifest.
        root.join("Cargo.toml"),
    ];
    if up_to_date(&output, &inputs) && !force {
        return Ok(());
    }
    let mut cmd = Command::new(tools::cargo_bin("worker-build"));
    cmd.current_dir(root.join("worker"))
        .args(["--release", "--no-opt"])
        .env("WASM_BINDGEN_BIN", tools::cargo_bin("wasm-bindgen"))
        .env("ESBUILD_BIN", root.join(tools::ESBUILD));
    run(&mut cmd).context("building the worker (worker-build)")
}

/// Builds the browser client into `web/pkg/` (served by the Worker as static assets) unless it is
/// newer than every input: the wasm in the `web` profile, wasm-bindgen's JS glue, then wasm-opt.
fn build_web(root: &Path, force: bool) -> Result<()> {
    let pkg = root.join("web/pkg");
    let output = pkg.join("duet-client_bg.wasm");
    let inputs = [
        root.join("game-client/src"),
        root.join("game-client/Cargo.toml"),
        root.join("shared/src"),
        root.join("shared/Cargo.toml"),
        root.join("vendor"),
        root.join("assets"),
        root.join("Cargo.lock"),
        // The `web` profile lives in the workspace manifest.
        root.join("Cargo.toml"),
    ];
    if up_to_date(&output, &inputs) && !force {
        return Ok(());
    }
    println!("building the web client (wasm, profile `web`)");
    run(Command::new(tools::cargo()).current_dir(root).args([
        "build",
        "-p",
        "duet-client",
        "--bin",
        "duet-client",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "web",
    ]))
    .context("building the web client")?;
    let wasm = tools::target_dir(root).join("wasm32-unknown-unknown/web/duet-client.wasm");
    let staging = tools::target_dir(root).join("web-pkg");
    let _ = std::fs::remove_dir_all(&staging);
    run(Command::new(tools::cargo_bin("wasm-bindgen"))
        .args(["--target", "web", "--no-typescript", "--out-dir"])
        .arg(&staging)
        .arg(&wasm))
    .context("wasm-bindgen for the web client")?;
    let bound = staging.join("duet-client_bg.wasm");
    run(Command::new(root.join(tools::WASM_OPT))
        .args([
            "-Os",
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
        ])
        .args([
            "--enable-sign-ext",
            "--enable-mutable-globals",
            "--enable-reference-types",
        ])
        .arg(&bound)
        .arg("-o")
        .arg(&bound))
    .context("wasm-opt for the web client")?;
    // Swap in the new build only when it is complete, so a served page never sees half of one.
    let _ = std::fs::remove_dir_all(&pkg);
    std::fs::rename(&staging, &pkg).context("moving the web build into web/pkg")?;
    let size = std::fs::metadata(&output)?.len();
    println!("web client: {:.1} MiB wasm", size as f64 / (1 << 20) as f64);
    Ok(())
}

/// The environment that keeps wrangler quiet and local: no metrics, no error reports, no fetches
/// of Cloudflare's request metadata.
pub(crate) fn wrangler_env(cmd: &mut Command) -> &mut Command {
    cmd.env("WRANGLER_SEND_METRICS", "false")
        .env("WRANGLER_SEND_ERROR_REPORTS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("WRANGLER_LOG_PATH", "target/wrangler-logs")
}

/// Builds the Worker and the browser client and hands both to `wrangler deploy`, with the
/// build hook skipped (everything is built already).
fn deploy(root: &Path) -> Result<()> {
    tools::ensure_all(root)?;
    build_worker(root, false)?;
    build_web(root, false)?;
    let mut cmd = Command::new(root.join(tools::WRANGLER));
    wrangler_env(&mut cmd)
        .env("DUET_PREBUILT", "1")
        .arg("deploy");
    run(&mut cmd).context("wrangler deploy (log in first: npx wrangler login)")
}

fn dev(root: &Path) -> Result<()> {
    tools::ensure_all(root)?;
    build_worker(root, false)?;
    build_web(root, false)?;
    println!("Duet: http://127.0.0.1:8787  (Ctrl+C stops)");
    let mut cmd = Command::new(root.join(tools::WRANGLER));
    wrangler_env(&mut cmd).args([
        "dev",
        "--ip",
        "127.0.0.1",
        "--port",
        "8787",
        "--inspector-ip",
        "127.0.0.1",
        "--show-interactive-dev-session=false",
    ]);
    run(&mut cmd)
}

/// Wraps `program args` so it runs in a fresh network namespace whose only interface is `lo`
/// (with multicast routed: webrtc-rs opens an mDNS socket and fails without a route).
pub(crate) fn in_loopback_namespace(program: &Path, args: &[OsString]) -> Command {
    let mut script = String::from(
        "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo && exec",
    );
    for part in std::iter::once(program.as_os_str()).chain(args.iter().map(|a| a.as_os_str())) {
        script.push(' ');
        script.push_str(&shell_quote(&part.to_string_lossy()));
    }
    let mut cmd = Command::new("unshare");
    if !is_root() {
        // Unprivileged: a user namespace maps us to root inside, which is enough for `ip`.
        cmd.arg("-r");
    }
    cmd.args(["-n", "sh", "-c", &script]);
    cmd
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Builds the test binaries (network allowed) and returns their paths.
fn build_test_binaries(root: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new(tools::cargo())
        .current_dir(root)
        .args([
            "test",
            "--workspace",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cargo test --no-run")?;
    if !output.status.success() {
        bail!("building the tests failed");
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        // Only test harnesses (profile.test), not the plain binaries cargo also builds.
        if message["reason"] == "compiler-artifact"
            && message["profile"]["test"] == true
            && let Some(exe) = message["executable"].as_str()
        {
            binaries.push(PathBuf::from(exe));
        }
    }
    binaries.sort();
    binaries.dedup();
    Ok(binaries)
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    tools::ensure_all(root)?;
    tools::ensure_test_packages()?;
    build_worker(root, false)?;
    build_web(root, false)?;
    let binaries = build_test_binaries(root)?;
    let mut failed = Vec::new();
    for binary in &binaries {
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("\n=== {name}");
        let args: Vec<OsString> = extra.iter().map(OsString::from).collect();
        let mut cmd = in_loopback_namespace(binary, &args);
        cmd.current_dir(root).env("DUET_PREBUILT", "1");
        if run(&mut cmd).is_err() {
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        bail!("test binaries failed: {}", failed.join(", "));
    }
    println!("\nall {} test binaries passed", binaries.len());
    Ok(())
}

/// Builds `cargo_args`, then runs `binary` (under the target dir) in the loopback namespace with the
/// remaining command-line arguments.
fn run_bench(root: &Path, cargo_args: &[&str], binary: &str, args: &[String]) -> Result<()> {
    tools::ensure_all(root)?;
    build_worker(root, false)?;
    run(Command::new(tools::cargo())
        .current_dir(root)
        .args(cargo_args))?;
    std::fs::create_dir_all(root.join("target/bench"))?;
    let binary = tools::target_dir(root).join(binary);
    let passthrough: Vec<OsString> = args.iter().map(OsString::from).collect();
    let mut cmd = in_loopback_namespace(&binary, &passthrough);
    cmd.current_dir(root).env("DUET_PREBUILT", "1");
    run(&mut cmd)
}

fn bench(root: &Path, args: &[String]) -> Result<()> {
    let name = args.first().map(String::as_str).unwrap_or("");
    let rest = args.get(1..).unwrap_or_default();
    match name {
        "signaling" => run_bench(
            root,
            &[
                "build",
                "--release",
                "-p",
                "duet-tests",
                "--bin",
                "bench-signaling",
            ],
            "release/bench-signaling",
            rest,
        ),
        // The dev profile optimises dependencies: this bench shares the tests' build.
        "transfer" => run_bench(
            root,
            &[
                "build",
                "-p",
                "duet-client",
                "-p",
                "duet-tests",
                "--bin",
                "duet-client",
                "--bin",
                "bench-transfer",
            ],
            "debug/bench-transfer",
            rest,
        ),
        // A headless victim under each kind of flood from a hostile peer; shares the tests' build.
        "hostile" => run_bench(
            root,
            &[
                "build",
                "-p",
                "duet-client",
                "-p",
                "duet-tests",
                "--bin",
                "duet-client",
                "--bin",
                "bench-hostile",
            ],
            "debug/bench-hostile",
            rest,
        ),
        "browser" => {
            tools::ensure_all(root)?;
            tools::ensure_test_packages()?;
            build_web(root, false)?;
            run_bench(
                root,
                &["build", "-p", "duet-tests", "--bin", "bench-browser"],
                "debug/bench-browser",
                rest,
            )
        }
        "call" => {
            tools::ensure_all(root)?;
            tools::ensure_test_packages()?;
            build_web(root, false)?;
            run_bench(
                root,
                &["build", "-p", "duet-tests", "--bin", "bench-call"],
                "debug/bench-call",
                rest,
            )
        }
        // No network: the chat panel and the history store, in one process.
        "chat" => run(Command::new(tools::cargo()).current_dir(root).args([
            "run",
            "-p",
            "duet-client",
            "--example",
            "bench-chat",
        ])),
        _ => {
            bail!(
                "unknown benchmark {name:?}; available: signaling, transfer, hostile, browser, call, chat"
            )
        }
    }
}
