//! Installing the tools Duet's commands need, each only when missing or at the wrong version.
//!
//! Versions are pinned where mismatches break things: the wasm-bindgen CLI must equal the
//! `wasm-bindgen` crate in Cargo.lock, worker-build must match the `worker` crate, and wrangler is
//! the newest that runs on Node 20. Nothing here downloads at run time once installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::run;

/// worker-build, matching the `worker` crate.
const WORKER_BUILD_VERSION: &str = "0.8.7";
/// wasm-bindgen CLI, matching the `wasm-bindgen` crate pinned in Cargo.toml.
const WASM_BINDGEN_VERSION: &str = "0.2.130";
/// wrangler, as pinned in package.json / package-lock.json.
const WRANGLER_VERSION: &str = "4.86.0";
/// The wrangler binary inside the repository's node_modules.
pub const WRANGLER: &str = "node_modules/.bin/wrangler";
/// esbuild from wrangler's own install; worker-build would otherwise fetch one.
pub const ESBUILD: &str = "node_modules/@esbuild/linux-x64/bin/esbuild";
/// binaryen's wasm-opt from npm (Debian's is too old for the wasm features Rust emits).
pub const WASM_OPT: &str = "node_modules/.bin/wasm-opt";
/// playwright-core, which the browser tests use to drive Debian's Chromium.
const PLAYWRIGHT: &str = "node_modules/playwright-core/package.json";

/// The cargo driving this xtask (so toolchain overrides carry through).
pub fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// The workspace's target directory, honouring `CARGO_TARGET_DIR`.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Where `cargo install` puts binaries.
pub fn cargo_bin(name: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"),
        PathBuf::from,
    );
    home.join("bin").join(name)
}

fn version_of(program: &Path) -> Option<String> {
    let out = Command::new(program).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Installs everything `dev`, `test` and `bench` need, skipping what is already there.
pub fn ensure_all(root: &Path) -> Result<()> {
    ensure_build_packages()?;
    ensure_wasm_target()?;
    ensure_cargo_tool("worker-build", "worker-build", WORKER_BUILD_VERSION, true)?;
    // Not --locked: the CLI's lockfile wants a crate version this registry mirror lacks.
    ensure_cargo_tool(
        "wasm-bindgen-cli",
        "wasm-bindgen",
        WASM_BINDGEN_VERSION,
        false,
    )?;
    ensure_npm(root)
}

/// Debian packages the client tests need: an X server without a screen (Xvfb), Mesa's software
/// Vulkan/GL (llvmpipe), the X libraries winit loads at run time, xdotool to type into the
/// window like a person, and Chromium for the browser tests (driven by playwright-core, never a
/// downloaded browser), and for the network lab a TURN server (coturn, started by the tests
/// themselves, never as a service) and nftables for its NATs. The build itself needs none of
/// them.
const TEST_PACKAGES: &[&str] = &[
    "chromium",
    "coturn",
    "nftables",
    "conntrack",
    "xvfb",
    "xdotool",
    "mesa-vulkan-drivers",
    "libvulkan1",
    "libgl1-mesa-dri",
    "libegl1",
    "libxkbcommon-x11-0",
    "libxcursor1",
    "libxi6",
    "libxrandr2",
];

/// Debian packages the desktop client's build needs: cmake for libopus (built from the `opus`
/// crate's bundled source) and ALSA's headers for `cpal` (microphone and speakers in calls).
const BUILD_PACKAGES: &[&str] = &["cmake", "pkg-config", "libasound2-dev"];

/// Installs [`TEST_PACKAGES`] with apt when any is missing (needs root, as in CI).
pub fn ensure_test_packages() -> Result<()> {
    ensure_packages(TEST_PACKAGES, "the client tests")
}

/// Installs [`BUILD_PACKAGES`] with apt when any is missing (needs root, as in CI).
pub fn ensure_build_packages() -> Result<()> {
    ensure_packages(BUILD_PACKAGES, "the desktop client's build")
}

fn ensure_packages(packages: &[&str], for_what: &str) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", package])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!(
        "installing Debian packages for {for_what}: {}",
        missing.join(" ")
    );
    if !crate::is_root() {
        anyhow::bail!(
            "{for_what} needs these Debian packages: sudo apt-get install -y {}",
            missing.join(" ")
        );
    }
    run(Command::new("apt-get")
        .args(["update", "-qq"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to add the wasm32 target")?;
    if String::from_utf8_lossy(&installed.stdout).contains("wasm32-unknown-unknown") {
        return Ok(());
    }
    println!("installing the wasm32-unknown-unknown target");
    run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))
}

fn ensure_cargo_tool(package: &str, binary: &str, version: &str, locked: bool) -> Result<()> {
    if version_of(&cargo_bin(binary)).is_some_and(|v| v.contains(version)) {
        return Ok(());
    }
    println!("installing {package} {version} (a few minutes, once)");
    let mut cmd = Command::new(cargo());
    cmd.args(["install", package, "--version", version, "--force"]);
    if locked {
        cmd.arg("--locked");
    }
    run(&mut cmd)
}

fn ensure_npm(root: &Path) -> Result<()> {
    let manifest = root.join("node_modules/wrangler/package.json");
    let current = std::fs::read_to_string(&manifest).unwrap_or_default();
    let pinned = format!("\"version\": \"{WRANGLER_VERSION}\"");
    let present = [WRANGLER, ESBUILD, WASM_OPT, PLAYWRIGHT]
        .iter()
        .all(|path| root.join(path).exists());
    if current.contains(&pinned) && present {
        return Ok(());
    }
    println!("installing npm packages (wrangler {WRANGLER_VERSION}, binaryen, playwright-core)");
    run(Command::new("npm")
        .current_dir(root)
        .args(["ci", "--no-audit", "--no-fund"]))
}
