//! The desktop entry point: command-line flags, the data directory (locked: one client per
//! folder), then the headless runner or the window.

use std::path::PathBuf;
use std::time::Duration;

use super::{DuetCorePlugins, add_platform, add_windowed_client, inject_faults};
use crate::config::ClientConfig;
use crate::headless::{HeadlessOptions, HeadlessPlugin};
use crate::net::RoomLink;
use crate::storage::FolderStore;
use crate::transfer::Store;
use bevy::app::ScheduleRunnerPlugin;
use bevy::prelude::*;
use bevy_pkv::PkvStore;

const USAGE: &str = "usage: duet-client [--room LINK] [--name NAME] [--server URL] [--config FILE]
                   [--data-dir DIR] [--downloads DIR] [--ask-above BYTES] [--automation]
       duet-client --headless --room LINK [--name NAME] [--say TEXT]... [--send FILE]...
  --room LINK     a room link (http://host/r/ROOM) or signaling URL (ws://host/signal/ROOM);
                  the window opens straight into it
  --name NAME     set the display name first
  --server URL    the Duet server (overrides the configuration; env DUET_SERVER;
                  default http://127.0.0.1:8787)
  --config FILE   configuration in RON (default: assets/config.ron; env DUET_CONFIG)
  --data-dir DIR  where identity and history live (default: the platform data dir;
                  env DUET_DATA_DIR)
  --downloads DIR where received files go (default: DATA_DIR/downloads; env DUET_DOWNLOADS)
  --ask-above BYTES  files the peer offers above this size wait for a yes (default: the
                  configuration's ask_above_bytes, 25 MiB; env DUET_ASK_ABOVE)
  --automation    windowed, plus JSON events on stdout and test commands on stdin
  --headless      no window: JSON events on stdout; stdin takes `say TEXT`, `send PATH`,
                  `take_file ID`, `refuse_file ID`, `rename NAME`, `history`, `quit`
  --say TEXT      (headless) send TEXT once the peer has said hello (repeatable)
  --send FILE     (headless) send FILE once the peer has said hello (repeatable)";

struct Args {
    headless: bool,
    automation: bool,
    room: Option<RoomLink>,
    name: Option<String>,
    say: Vec<String>,
    send: Vec<PathBuf>,
    data_dir: PathBuf,
    downloads: PathBuf,
    config: ClientConfig,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut room, mut name, mut say, mut data_dir, mut headless) =
        (None, None, vec![], None, false);
    let (mut send, mut downloads, mut server, mut config_file, mut automation) =
        (vec![], None, None, None, false);
    let mut ask_above = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--headless" => headless = true,
            "--automation" => automation = true,
            "--room" => room = Some(RoomLink::parse(&value()?).map_err(|e| e.to_string())?),
            "--name" => name = Some(value()?),
            "--say" => say.push(value()?),
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--send" => send.push(PathBuf::from(value()?)),
            "--downloads" => downloads = Some(PathBuf::from(value()?)),
            "--server" => server = Some(value()?),
            "--config" => config_file = Some(PathBuf::from(value()?)),
            "--ask-above" => ask_above = Some(value()?),
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if headless && room.is_none() {
        return Err("--headless needs --room".into());
    }
    let data_dir = data_dir
        .or_else(|| std::env::var_os("DUET_DATA_DIR").map(PathBuf::from))
        .or_else(crate::platform::default_data_dir)
        .ok_or("no data directory: pass --data-dir")?;
    let downloads = downloads
        .or_else(|| std::env::var_os("DUET_DOWNLOADS").map(PathBuf::from))
        .unwrap_or_else(|| data_dir.join("downloads"));
    let mut config = load_config(config_file)?;
    if let Some(server) = server.or_else(|| std::env::var("DUET_SERVER").ok()) {
        config = ClientConfig { server, ..config }
            .validated()
            .map_err(|e| e.to_string())?;
    }
    if let Some(bytes) = ask_above.or_else(|| std::env::var("DUET_ASK_ABOVE").ok()) {
        config.ask_above_bytes = bytes
            .parse()
            .map_err(|_| format!("--ask-above needs a number of bytes, not {bytes:?}"))?;
    }
    Ok(Args {
        headless,
        automation,
        room,
        name,
        say,
        send,
        data_dir,
        downloads,
        config,
    })
}

/// `--config`, else `DUET_CONFIG`, else `assets/config.ron` beside the binary or in the source
/// tree, else the built-in defaults (which match `cargo xtask dev`).
fn load_config(explicit: Option<PathBuf>) -> Result<ClientConfig, String> {
    let explicit = explicit.or_else(|| std::env::var_os("DUET_CONFIG").map(PathBuf::from));
    let candidates: Vec<PathBuf> = match explicit {
        Some(path) => vec![path],
        None => [
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("assets/config.ron"))),
            Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../assets/config.ron"
            ))),
        ]
        .into_iter()
        .flatten()
        .filter(|p| p.exists())
        .collect(),
    };
    match candidates.first() {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            ClientConfig::from_ron(&text, &path.display().to_string()).map_err(|e| e.to_string())
        }
        None => Ok(ClientConfig::default()),
    }
}

/// An event line for whoever drives this process, before the app exists (the headless runner
/// writes the rest).
fn emit_error(message: String) {
    let event = duet_shared::automation::Event::Error { message };
    crate::platform::host()
        .automation
        .emit_line(&event.to_line());
}

/// The desktop entry point: flags, data directory lock, then the app.
pub fn main() -> AppExit {
    let mut args = match parse() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("duet-client: {message}");
            }
            eprintln!("{USAGE}");
            return AppExit::from_code(2);
        }
    };
    let data = match DataDir::claim(&args) {
        Ok(data) => data,
        Err(message) => {
            emit_error(message.clone());
            eprintln!("duet-client: {message}");
            return AppExit::from_code(1);
        }
    };
    let mut app = App::new();
    add_platform(&mut app, |capabilities| {
        // Tuning knob for measurements: DUET_WINDOW=initial,max (chunks of 16 KiB).
        if let Ok(spec) = std::env::var("DUET_WINDOW")
            && let Some((initial, max)) = spec.split_once(',')
            && let (Ok(initial), Ok(max)) = (initial.parse(), max.parse())
        {
            capabilities.transfer_window.initial = initial;
            capabilities.transfer_window.max = max;
        }
    });
    if args.headless {
        add_headless_runner(&mut app, &mut args);
    } else {
        app.add_plugins(DefaultPlugins.set(WindowPlugin {
            primary_window: Some(Window {
                title: "Duet".into(),
                resolution: bevy::window::WindowResolution::new(1280, 720),
                ..default()
            }),
            ..default()
        }));
    }
    // Chat in a file of its own, so a flood of messages can fill only that.
    let chat = PkvStore::new_in_dir_with_filename(&data.store_dir, "chat.redb");
    app.insert_resource(PkvStore::new_in_dir(&data.store_dir))
        .insert_resource(crate::chat::history::ChatArchive(Box::new(
            crate::chat::history::PkvHistory::new(chat),
        )))
        .insert_resource(Store(Box::new(data.downloads)))
        .insert_resource(args.config)
        .add_plugins(DuetCorePlugins);
    if args.headless {
        app.add_plugins(HeadlessPlugin);
    } else {
        let join = args.room.take().map(|room| {
            room.signal_url
                .replacen("/signal/", "/r/", 1)
                .replacen("ws", "http", 1)
        });
        add_windowed_client(&mut app, args.automation, join);
        app.add_systems(
            Update,
            pace_for_the_renderer.run_if(not(resource_exists::<crate::ui::FramePacing>)),
        );
    }
    inject_faults(&mut app, crate::platform::fault_drop_grant());
    if let Some(name) = args.name {
        app.world_mut().write_message(crate::identity::Rename(name));
    }
    let exit = app.run();
    drop(data.lock);
    exit
}

/// Paces the window's frames once the renderer is known (see `ui::FramePacing`), as the page
/// does: drawn continuously, two software-rendered windows on two cores took the CPU their
/// transfers needed.
fn pace_for_the_renderer(
    mut commands: Commands,
    adapter: Option<Res<bevy::render::renderer::RenderAdapterInfo>>,
) {
    if let Some(adapter) = adapter {
        let software = adapter.device_type == wgpu_types::DeviceType::Cpu;
        commands.insert_resource(crate::ui::FramePacing::for_renderer(software));
    }
}

/// The data directory, held by this process, and the folder for received files.
struct DataDir {
    store_dir: PathBuf,
    /// Held until the process exits.
    lock: std::fs::File,
    downloads: FolderStore,
}

impl DataDir {
    /// One client per data directory: the key-value store cannot be shared, and two people on
    /// one machine need two identities anyway.
    fn claim(args: &Args) -> Result<Self, String> {
        let store_dir = args.data_dir.join("store");
        std::fs::create_dir_all(&store_dir)
            .map_err(|e| format!("cannot create {}: {e}", store_dir.display()))?;
        let lock = std::fs::File::create(args.data_dir.join("duet.lock"))
            .map_err(|e| format!("cannot use {}: {e}", args.data_dir.display()))?;
        if lock.try_lock().is_err() {
            return Err(format!(
                "another Duet client is already using {}; to run a second one (a second person), give it its own folder with --data-dir",
                args.data_dir.display()
            ));
        }
        let downloads = FolderStore::new(&args.downloads)
            .map_err(|e| format!("cannot use {} for downloads: {e}", args.downloads.display()))?;
        Ok(Self {
            store_dir,
            lock,
            downloads,
        })
    }
}

/// No window: a loop at a fixed tick, warnings to stderr, the room from the flags.
fn add_headless_runner(app: &mut App, args: &mut Args) {
    // Transfers, the hello and the pings run between frames (`transfer::pump_between_frames`),
    // so the tick only bounds how soon a command is read and an event written: 4 ms is well
    // under anything a test or a person notices, where a tick of 0.5 ms kept an idle client
    // at 39 % of a core (`docs/bench/transfer.md`). DUET_TICK_US overrides it for measurements.
    let tick_us = std::env::var("DUET_TICK_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000);
    app.add_plugins((
        MinimalPlugins.set(ScheduleRunnerPlugin::run_loop(Duration::from_micros(
            tick_us,
        ))),
        // Warnings to stderr (`RUST_LOG` overrides): when a test run stalls, the network
        // stack's and the transfer engine's complaints are what explains it.
        bevy::log::LogPlugin {
            level: bevy::log::Level::WARN,
            ..Default::default()
        },
    ))
    .insert_resource(HeadlessOptions {
        say: std::mem::take(&mut args.say),
        send: std::mem::take(&mut args.send),
    });
    if let Some(mut room) = args.room.take() {
        room.ice_servers = args.config.ice_servers.clone();
        app.insert_resource(room);
    }
}
