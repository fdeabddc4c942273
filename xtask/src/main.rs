//! Duet's developer commands.
//!
//! - `cargo xtask dev`: install what is missing, build, serve Duet on http://127.0.0.1:8787.
//! - `cargo xtask test`: install what is missing, build, run every test (inside an `lo`-only network
//!   namespace, so WebRTC peers and servers only ever talk over loopback).
//! - `cargo xtask bench NAME`: run a benchmark, writing `target/bench/NAME.json` and the
//!   latest-run table of `docs/bench/NAME.md` (`cargo xtask bench-doc NAME` redoes only that).
//! - `cargo xtask build-worker`: rebuild the Worker if its sources changed (wrangler's build hook).
//! - `cargo xtask build-web [--shipped]`: rebuild the browser client into `web/pkg/` if its
//!   sources changed: the quick dev build (what `dev` and the tests serve), or the shipped one.
//! - `cargo xtask deploy`: build both (the shipped web build), then `wrangler deploy` (needs a
//!   Cloudflare login).
//!
//! Every install step checks first and does nothing when the tool is already there, so once set up
//! all of this runs with no network.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

mod testrun;
mod tools;

const USAGE: &str =
    "usage: cargo xtask <dev | test [-- TEST ARGS] | bench NAME | bench-doc NAME | build-worker | build-web | deploy | setup>
  dev           install missing tools, build, serve Duet on http://127.0.0.1:8787
  test          install missing tools, build, run every test
  bench NAME    run a benchmark (signaling, transfer, hostile, hello, browser, call, chat) and write target/bench/NAME.json
  bench-doc NAME  rewrite docs/bench/NAME.md's latest-run table from target/bench/NAME.json
  build-worker  rebuild the worker's wasm if its sources changed
  build-web     rebuild the browser client (web/pkg) if its sources changed (--shipped: the deploy build)
  deploy        build the worker and the browser client, then `wrangler deploy`
  setup         only install missing tools";

/// Errors end in one sentence chain, not a backtrace: CI shows only the tail of the output, and
/// that is where the reason must be.
fn main() -> std::process::ExitCode {
    match command() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn command() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = repo_root();
    std::env::set_current_dir(&root)?;
    match command.as_str() {
        "dev" => dev(&root),
        "test" => test(&root, &rest),
        "bench" => bench(&root, &rest),
        "bench-doc" => bench_doc(&root, rest.first().map(String::as_str).unwrap_or("")),
        "build-worker" => build_worker(&root, false),
        "build-web" => build_web(
            &root,
            false,
            if rest.iter().any(|a| a == "--shipped") {
                WebBuild::Shipped
            } else {
                WebBuild::Dev
            },
        ),
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

/// Which build of the browser client `web/pkg/` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WebBuild {
    /// For `dev` and the tests: profile `web-dev` (no LTO, 16 codegen units), no wasm-opt, the
    /// wasm stored gzipped (`duet-client_bg.wasm.gz`: uncompressed it is over the 25 MiB a
    /// static asset may be), which the Worker serves with `Content-Encoding: gzip`.
    Dev,
    /// What `deploy` ships and the browser benchmarks measure: profile `web` (fat LTO, one
    /// codegen unit, size first), then `wasm-opt -Os`.
    Shipped,
}

impl WebBuild {
    fn profile(self) -> &'static str {
        match self {
            WebBuild::Dev => "web-dev",
            WebBuild::Shipped => "web",
        }
    }

    /// The file in `web/pkg/` that only this build writes.
    fn output(self) -> &'static str {
        match self {
            WebBuild::Dev => "duet-client_bg.wasm.gz",
            WebBuild::Shipped => "duet-client_bg.wasm",
        }
    }
}

/// Builds the browser client into `web/pkg/` (served by the Worker as static assets) unless that
/// build is there and newer than every input: the wasm, wasm-bindgen's JS glue, then for the
/// shipped build wasm-opt, for the dev build gzip.
fn build_web(root: &Path, force: bool, build: WebBuild) -> Result<()> {
    let pkg = root.join("web/pkg");
    let output = pkg.join(build.output());
    let inputs = [
        root.join("game-client/src"),
        root.join("game-client/Cargo.toml"),
        root.join("shared/src"),
        root.join("shared/Cargo.toml"),
        root.join("vendor"),
        root.join("assets"),
        root.join("Cargo.lock"),
        // The `web` profiles live in the workspace manifest.
        root.join("Cargo.toml"),
        // The page itself: a change makes a new build id (`build.json`), which the service
        // worker fetches for the next visit.
        root.join("web/index.html"),
        root.join("web/start.js"),
        root.join("web/style.css"),
        root.join("web/manifest.webmanifest"),
    ];
    if up_to_date(&output, &inputs) && !force {
        return Ok(());
    }
    let profile = build.profile();
    println!("building the web client (wasm, profile `{profile}`)");
    run(Command::new(tools::cargo()).current_dir(root).args([
        "build",
        "-p",
        "duet-client",
        "--bin",
        "duet-client",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        profile,
    ]))
    .context("building the web client")?;
    let wasm = tools::target_dir(root)
        .join("wasm32-unknown-unknown")
        .join(profile)
        .join("duet-client.wasm");
    let staging = tools::target_dir(root).join("web-pkg");
    let _ = std::fs::remove_dir_all(&staging);
    run(Command::new(tools::cargo_bin("wasm-bindgen"))
        .args(["--target", "web", "--no-typescript", "--out-dir"])
        .arg(&staging)
        .arg(&wasm))
    .context("wasm-bindgen for the web client")?;
    let bound = staging.join("duet-client_bg.wasm");
    match build {
        WebBuild::Shipped => run(Command::new(root.join(tools::WASM_OPT))
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
        .context("wasm-opt for the web client")?,
        WebBuild::Dev => {
            gzip(&bound, &staging.join(build.output()))?;
            std::fs::remove_file(&bound)?;
        }
    }
    write_build_id(root, &staging)?;
    // Swap in the new build only when it is complete, so a served page never sees half of one.
    let _ = std::fs::remove_dir_all(&pkg);
    std::fs::rename(&staging, &pkg).context("moving the web build into web/pkg")?;
    let size = std::fs::metadata(&output)?.len();
    println!(
        "web client ({profile}): {:.1} MiB {}",
        size as f64 / (1 << 20) as f64,
        build.output()
    );
    Ok(())
}

/// Writes `build.json` into the web build at `staging`: `{"id"}`, a digest of everything the
/// service worker keeps (the page, its script and style, the manifest, the wasm and its glue).
/// The worker fetches a new build whole when the id changes (`web/sw.js`).
fn write_build_id(root: &Path, staging: &Path) -> Result<()> {
    use std::hash::Hasher;
    let mut files: Vec<PathBuf> = [
        "index.html",
        "start.js",
        "style.css",
        "manifest.webmanifest",
    ]
    .iter()
    .map(|name| root.join("web").join(name))
    .collect();
    let mut built: Vec<PathBuf> = std::fs::read_dir(staging)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    built.sort();
    files.extend(built);
    // Not a security digest: a name that changes whenever a byte does.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in &files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        hasher.write(file.file_name().unwrap_or_default().as_encoded_bytes());
        hasher.write_usize(bytes.len());
        hasher.write(&bytes);
    }
    let id = format!("{:016x}", hasher.finish());
    std::fs::write(
        staging.join("build.json"),
        serde_json::json!({ "id": id }).to_string(),
    )?;
    Ok(())
}

/// Compresses `from` into `to` (fast: this runs on every dev rebuild).
fn gzip(from: &Path, to: &Path) -> Result<()> {
    let mut input =
        std::fs::File::open(from).with_context(|| format!("reading {}", from.display()))?;
    let output = std::fs::File::create(to).with_context(|| format!("writing {}", to.display()))?;
    let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::fast());
    std::io::copy(&mut input, &mut encoder)?;
    encoder.finish()?.sync_all()?;
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
    build_web(root, false, WebBuild::Shipped)?;
    let mut cmd = Command::new(root.join(tools::WRANGLER));
    wrangler_env(&mut cmd)
        .env("DUET_PREBUILT", "1")
        .arg("deploy");
    run(&mut cmd).context("wrangler deploy (log in first: npx wrangler login)")
}

fn dev(root: &Path) -> Result<()> {
    tools::ensure_all(root)?;
    build_worker(root, false)?;
    build_web(root, false, WebBuild::Dev)?;
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

/// Ports the upgrade tests must listen on, because an older version stored links (and, in the
/// browser, its storage's origin) with them: `game-client/tests/fixtures/before-keys/`. They sit
/// in the kernel's ephemeral range, where any outgoing connection of a parallel test may hold
/// one; reserving them keeps the kernel from handing them out.
const FIXTURE_PORTS: &str = "41234,45551";

/// Wraps `program args` so it runs in a fresh network namespace whose only interface is `lo`
/// (with multicast routed: webrtc-rs opens an mDNS socket and fails without a route), with the
/// fixtures' ports reserved (the setting belongs to the namespace).
pub(crate) fn in_loopback_namespace(program: &Path, args: &[OsString]) -> Command {
    let mut script = format!(
        "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo \
         && echo {FIXTURE_PORTS} > /proc/sys/net/ipv4/ip_local_reserved_ports && exec",
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
    // CI has 90 minutes: each phase's time is printed as it ends and again at the end, so a
    // run that grows says where.
    let started = std::time::Instant::now();
    let mut phases: Vec<(String, f64)> = Vec::new();
    let mut lap = std::time::Instant::now();
    let mut phase = |name: &str, phases: &mut Vec<(String, f64)>| {
        let secs = lap.elapsed().as_secs_f64();
        println!("=== {name} took {secs:.0} s");
        phases.push((name.to_owned(), secs));
        lap = std::time::Instant::now();
    };
    tools::ensure_all(root)?;
    tools::ensure_test_packages()?;
    phase("installing tools", &mut phases);
    build_worker(root, false)?;
    phase("building the worker", &mut phases);
    build_web(root, false, WebBuild::Dev)?;
    phase("building the web client", &mut phases);
    let binaries = build_test_binaries(root)?;
    phase("building the tests", &mut phases);
    let mut failed = Vec::new();
    for binary in &binaries {
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("\n=== {name}");
        let args: Vec<OsString> = extra.iter().map(OsString::from).collect();
        // Each binary's files (received test files, wrangler state) live in a folder of their
        // own, removed when it passes: a full run writes gigabytes, and CI's disk is shared.
        let scratch = root.join("target/test-tmp").join(&name);
        let _ = std::fs::remove_dir_all(&scratch);
        let mut cmd = in_loopback_namespace(binary, &args);
        cmd.current_dir(root)
            .env("DUET_PREBUILT", "1")
            .env("DUET_TEST_TMP", &scratch);
        let outcome = testrun::run_keeping_panics(&mut cmd)?;
        phase(&name, &mut phases);
        if outcome.status.success() {
            let _ = std::fs::remove_dir_all(&scratch);
        } else {
            failed.push((name, outcome.panics));
        }
    }
    println!(
        "\n=== time, {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    for (name, secs) in &phases {
        println!("{secs:>7.0} s  {name}");
    }
    if !failed.is_empty() {
        eprintln!("\n=== what failed");
        for (name, panics) in &failed {
            eprintln!("\n{name}: {} panic(s)", panics.len());
            for panic in panics {
                eprintln!("{panic}");
            }
        }
        let names: Vec<&str> = failed.iter().map(|(name, _)| name.as_str()).collect();
        bail!("test binaries failed: {}", names.join(", "));
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

/// A benchmark binary of `duet-tests` that drives headless `duet-client`s: both built with the
/// tests' (dev) profile, which optimises dependencies.
fn headless_bench(root: &Path, bench: &str, rest: &[String]) -> Result<()> {
    run_bench(
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
            bench,
        ],
        &format!("debug/{bench}"),
        rest,
    )
}

fn bench(root: &Path, args: &[String]) -> Result<()> {
    let name = args.first().map(String::as_str).unwrap_or("");
    let started = SystemTime::now();
    run_named_bench(root, name, args.get(1..).unwrap_or_default())?;
    // A partial run (`--only`) writes no report: the page keeps the last full one.
    let report = root.join("target/bench").join(format!("{name}.json"));
    let fresh = std::fs::metadata(&report)
        .and_then(|m| m.modified())
        .is_ok_and(|written| written >= started);
    if fresh {
        bench_doc(root, name)
    } else {
        println!(
            "no new {} written; docs/bench left as they are",
            report.display()
        );
        Ok(())
    }
}

/// Rewrites the "Latest run" block of `docs/bench/NAME.md` (between `<!-- bench:begin -->` and
/// `<!-- bench:end -->`) from `target/bench/NAME.json`: one table row per number, string or
/// flag outside lists, named by its path in the JSON. A bench whose page has no such block is
/// left alone.
fn bench_doc(root: &Path, name: &str) -> Result<()> {
    let page = root.join("docs/bench").join(format!("{name}.md"));
    let Ok(text) = std::fs::read_to_string(&page) else {
        return Ok(());
    };
    let (begin, end) = ("<!-- bench:begin -->", "<!-- bench:end -->");
    let (Some(start), Some(stop)) = (text.find(begin), text.find(end)) else {
        return Ok(());
    };
    let json = root.join("target/bench").join(format!("{name}.json"));
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?,
    )
    .with_context(|| format!("parsing {}", json.display()))?;
    let mut rows = Vec::new();
    flatten("", &report, &mut rows);
    let mut table = format!(
        "{begin}\nFrom `target/bench/{name}.json`, written by `cargo xtask bench {name}`.\n\n\
         | measurement | value |\n|---|---|\n"
    );
    for (key, value) in rows {
        table.push_str(&format!("| `{key}` | {value} |\n"));
    }
    let updated = format!("{}{table}{}", &text[..start], &text[stop..]);
    std::fs::write(&page, updated)?;
    println!("updated {}", page.display());
    Ok(())
}

/// Every leaf of `value` as (`a.b.c`, its text), in document order; a list is one row.
fn flatten(prefix: &str, value: &serde_json::Value, rows: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, rows);
            }
        }
        // Lists are per-run details: the JSON keeps them, the page shows the summary.
        serde_json::Value::Array(items) => {
            rows.push((
                prefix.to_owned(),
                format!("{} entries (in the JSON)", items.len()),
            ));
        }
        serde_json::Value::Number(n) => rows.push((
            prefix.to_owned(),
            n.as_f64()
                .filter(|f| f.fract() != 0.0)
                .map_or(n.to_string(), |f| format!("{f:.3}")),
        )),
        serde_json::Value::Null => rows.push((prefix.to_owned(), "—".to_owned())),
        other => rows.push((prefix.to_owned(), other.to_string())),
    }
}

fn run_named_bench(root: &Path, name: &str, rest: &[String]) -> Result<()> {
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
        "transfer" => headless_bench(root, "bench-transfer", rest),
        // A headless victim under each kind of flood from a hostile peer; shares the tests' build.
        "hostile" => headless_bench(root, "bench-hostile", rest),
        // The network lab (coturn, nftables) between headless clients (the tests' build) and
        // Chromiums (the shipped web build, as for `browser`).
        "wan" => {
            tools::ensure_all(root)?;
            tools::ensure_test_packages()?;
            build_web(root, false, WebBuild::Shipped)?;
            headless_bench(root, "bench-wan", rest)
        }
        // Two headless clients, then two Chromium pages, meeting ten times; the tests' builds.
        "hello" => {
            tools::ensure_all(root)?;
            tools::ensure_test_packages()?;
            build_web(root, false, WebBuild::Dev)?;
            headless_bench(root, "bench-hello", rest)
        }
        "browser" => {
            tools::ensure_all(root)?;
            tools::ensure_test_packages()?;
            build_web(root, false, WebBuild::Shipped)?;
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
            build_web(root, false, WebBuild::Shipped)?;
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
                "unknown benchmark {name:?}; available: signaling, transfer, wan, hostile, hello, browser, call, chat"
            )
        }
    }
}
