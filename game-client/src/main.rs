//! `duet-client`: Duet's client binary. For now it runs headless (`--headless`); the windowed room
//! arrives with the desktop issue.

use std::path::PathBuf;
use std::time::Duration;

use bevy::app::ScheduleRunnerPlugin;
use bevy::prelude::*;
use bevy_pkv::PkvStore;
use duet_client::headless::{HeadlessOptions, HeadlessPlugin, emit};
use duet_client::net::RoomLink;
use duet_client::storage::FolderStore;
use duet_client::transfer::Store;

const USAGE: &str =
    "usage: duet-client --headless --room LINK [--name NAME] [--say TEXT]... [--data-dir DIR]
  --room LINK     a room link (http://host/r/ROOM) or signaling URL (ws://host/signal/ROOM)
  --name NAME     set the display name before joining
  --say TEXT      send TEXT once the peer has said hello (repeatable)
  --send FILE     send FILE once the peer has said hello (repeatable)
  --data-dir DIR  where identity and history live (default: the platform data dir;
                  env DUET_DATA_DIR)
  --downloads DIR where received files go (default: DATA_DIR/downloads; env DUET_DOWNLOADS)
Events are printed as JSON lines; stdin takes `say TEXT`, `send PATH`, `rename NAME`, `history`, `quit`.";

struct Args {
    room: RoomLink,
    name: Option<String>,
    say: Vec<String>,
    send: Vec<PathBuf>,
    data_dir: PathBuf,
    downloads: PathBuf,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut room, mut name, mut say, mut data_dir, mut headless) =
        (None, None, vec![], None, false);
    let (mut send, mut downloads) = (vec![], None);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--headless" => headless = true,
            "--room" => room = Some(RoomLink::parse(&value()?).map_err(|e| e.to_string())?),
            "--name" => name = Some(value()?),
            "--say" => say.push(value()?),
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--send" => send.push(PathBuf::from(value()?)),
            "--downloads" => downloads = Some(PathBuf::from(value()?)),
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !headless {
        return Err("the windowed client is not built yet; run with --headless".into());
    }
    let data_dir = data_dir
        .or_else(|| std::env::var_os("DUET_DATA_DIR").map(PathBuf::from))
        .or_else(|| {
            directories::ProjectDirs::from("app", "Duet", "Duet")
                .map(|d| d.data_dir().to_path_buf())
        })
        .ok_or("no data directory: pass --data-dir")?;
    let downloads = downloads
        .or_else(|| std::env::var_os("DUET_DOWNLOADS").map(PathBuf::from))
        .unwrap_or_else(|| data_dir.join("downloads"));
    Ok(Args {
        room: room.ok_or("--room is required")?,
        name,
        say,
        send,
        data_dir,
        downloads,
    })
}

fn main() -> AppExit {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("duet-client: {message}");
            }
            eprintln!("{USAGE}");
            return AppExit::from_code(2);
        }
    };
    let store_dir = args.data_dir.join("store");
    if let Err(e) = std::fs::create_dir_all(&store_dir) {
        emit(
            serde_json::json!({"event": "error", "message": format!("cannot create {}: {e}", store_dir.display())}),
        );
        return AppExit::from_code(1);
    }
    let store = match FolderStore::new(&args.downloads) {
        Ok(store) => store,
        Err(e) => {
            emit(
                serde_json::json!({"event": "error", "message": format!("cannot use {} for downloads: {e}", args.downloads.display())}),
            );
            return AppExit::from_code(1);
        }
    };
    let mut app = App::new();
    // Chunks are pumped and credit granted once per update, so the tick bounds the credit round
    // trip. DUET_TICK_US overrides it for measurements.
    let tick_us = std::env::var("DUET_TICK_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    app.add_plugins(
        MinimalPlugins.set(ScheduleRunnerPlugin::run_loop(Duration::from_micros(
            tick_us,
        ))),
    )
    .insert_resource(PkvStore::new_in_dir(&store_dir))
    .insert_resource(args.room)
    .insert_resource(HeadlessOptions {
        say: args.say,
        send: args.send,
    })
    .insert_resource(Store(Box::new(store)))
    .add_plugins(duet_client::DuetCorePlugins)
    .add_plugins(HeadlessPlugin);
    // Tuning knob for measurements: DUET_WINDOW=initial,max (chunks of 16 KiB).
    if let Ok(spec) = std::env::var("DUET_WINDOW")
        && let Some((initial, max)) = spec.split_once(',')
        && let (Ok(initial), Ok(max)) = (initial.parse(), max.parse())
    {
        let mut transfers = app
            .world_mut()
            .resource_mut::<duet_client::transfer::Transfers>();
        transfers.window.initial = initial;
        transfers.window.max = max;
    }
    if let Some(name) = args.name {
        app.world_mut()
            .write_message(duet_client::identity::Rename(name));
    }
    app.run()
}
