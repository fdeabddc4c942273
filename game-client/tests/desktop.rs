//! The windowed client, end to end: two desktop clients (each on its own Xvfb screen, rendered by
//! Mesa's software Vulkan) in one room through `wrangler dev`, in an `lo`-only namespace. Ada
//! types a chat message with real X keyboard events (xdotool) into the egui input; it arrives at
//! Bob. Ada drops a file onto Bob's avatar (drag-and-drop window events injected at the avatar's
//! screen position); it arrives intact. Screenshots of both windows go to `target/screenshots/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use duet_tests::automation::{Delivery, Dir, Layout, Screen};
use duet_tests::desktop::Xvfb;
use duet_tests::{Event, HeadlessClient, Wrangler, assert_loopback_only, on, repo_root, temp_dir};
use sha2::{Digest, Sha256};

struct Desktop {
    client: HeadlessClient,
    x: Xvfb,
}

impl Desktop {
    /// A windowed client on its own X display; programs in `tools` (if any) come first on its
    /// `PATH`.
    fn start(server: &str, link: &str, dir: &Path, name: &str, tools: Option<&Path>) -> Desktop {
        let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
        Self::start_binary(binary, server, link, dir, name, tools)
    }

    /// [`start`](Self::start) with another build of the client (an older version's).
    fn start_binary(
        binary: &Path,
        server: &str,
        link: &str,
        dir: &Path,
        name: &str,
        tools: Option<&Path>,
    ) -> Desktop {
        let x = Xvfb::start();
        let client = x
            .client(binary, server, link, dir, name, tools, &[])
            .expect("start the desktop client");
        Desktop { client, x }
    }

    /// A windowed client in the lobby at the system scale factor `scale` (X11's own setting,
    /// which winit reads), on a screen large enough for its window.
    fn start_scaled(server: &str, dir: &Path, name: &str, scale: u32) -> Desktop {
        let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
        let x = Xvfb::start_sized(1280 * scale, 720 * scale);
        let client = x
            .client(
                binary,
                server,
                "",
                dir,
                name,
                None,
                &[format!("WINIT_X11_SCALE_FACTOR={scale}")],
            )
            .expect("start the desktop client");
        Desktop { client, x }
    }

    fn expect<T>(&mut self, what: &str, pick: impl Fn(&Event) -> Option<T>) -> T {
        self.client
            .wait(what, Duration::from_secs(90), pick)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn layout(&mut self) -> Layout {
        self.client.command("layout").unwrap();
        self.expect("layout", on!(Event::Layout(x) => (**x).clone()))
    }

    fn screenshot(&mut self, path: &Path) {
        let _ = std::fs::remove_file(path);
        self.client
            .command(&format!("screenshot {}", path.display()))
            .unwrap();
        self.expect("screenshot", on!(Event::Screenshot { .. }));
        // The PNG is written right after the capture is reported.
        let mut size = 0;
        for _ in 0..100 {
            size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if size > 10_000 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(size > 10_000, "{} is {size} bytes", path.display());
    }
}

/// Where a control is, or a panic that names it.
fn point(at: Option<[f32; 2]>, what: &str) -> (f32, f32) {
    let [x, y] = at.unwrap_or_else(|| panic!("no {what} on screen"));
    (x, y)
}

#[test]
fn two_desktop_clients_chat_and_drop_a_file_on_the_avatar() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let work = temp_dir("desktop").unwrap();
    let shots: PathBuf = repo_root().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // Ada starts in the lobby and clicks "Create a room"; Bob opens the link she gets.
    let mut ada = Desktop::start(&wrangler.base, "", &work.join("ada"), "Ada", None);
    ada.expect(
        "lobby",
        on!(Event::Screen {
            screen: Screen::Lobby,
            ..
        }),
    );
    std::thread::sleep(Duration::from_millis(500));
    ada.screenshot(&shots.join("ada-lobby.png"));
    let lobby = ada.layout();
    let (x, y) = point(lobby.create_button, "create button");
    ada.x.click_at(x, y, 1);
    let link = ada.expect(
        "room screen",
        on!(Event::Screen { screen: Screen::Room, link } => link.clone()),
    );
    let link = link.expect("a room's link");
    assert!(link.starts_with(&format!("{}/r/", wrangler.base)), "{link}");
    // Bob's desktop answers his file dialog and his file manager with two stand-ins that note
    // what they were asked: `zenity` (rfd's dialog when no desktop portal runs) answers "save
    // here" with a path, `xdg-open` just records the folder.
    let tools = work.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    for (name, script) in [
        (
            "zenity",
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\ncat \"$0.answer\"\n",
        ),
        (
            "xdg-open",
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\n",
        ),
    ] {
        let path = tools.join(name);
        std::fs::write(&path, script).unwrap();
        let mut permissions = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).unwrap();
    }
    let mut bob = Desktop::start(
        &wrangler.base,
        &link,
        &work.join("bob"),
        "Bob",
        Some(&tools),
    );
    ada.expect(
        "Bob's hello",
        on!(Event::PeerHello { name, .. } if *name == "Bob"),
    );
    bob.expect(
        "Ada's hello",
        on!(Event::PeerHello { name, .. } if *name == "Ada"),
    );

    // Chat with real keyboard events: click into the input, type, press Enter.
    let layout = ada.layout();
    let (x, y) = point(layout.chat_input, "chat input");
    // No window manager on Xvfb: give the window the keyboard focus as one would.
    ada.x
        .xdotool(&["search", "--name", "Duet", "windowfocus", "--sync"]);
    ada.x.click_at(x, y, 1);
    std::thread::sleep(Duration::from_millis(300));
    ada.x
        .xdotool(&["type", "--delay", "30", "Hello Bob, catch!"]);
    ada.x.xdotool(&["key", "Return"]);
    if std::env::var_os("DUET_DESKTOP_DEBUG").is_some() {
        std::thread::sleep(Duration::from_millis(1500));
        ada.screenshot(&shots.join("debug-ada-typed.png"));
        ada.x.xdotool(&["getmouselocation"]);
        eprintln!("layout {layout:?}");
    }
    bob.expect(
        "the typed message",
        on!(Event::Chat(x) if x.text == "Hello Bob, catch!" && !x.mine),
    );
    ada.expect(
        "delivered",
        on!(Event::Chat(x) if x.text == "Hello Bob, catch!" && x.state == Delivery::Delivered),
    );

    // Drop a file onto Bob's avatar as it appears on Ada's screen.
    let source = work.join("holiday photos.bin");
    // 200 MB, the largest file Duet sends, so the screenshots show a real transfer in flight.
    let bytes: Vec<u8> = (0..200 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&source, &bytes).unwrap();
    let (px, py) = point(layout.peer, "peer's avatar");
    // A drop beside the avatar is not a send.
    ada.client
        .command(&format!(
            "drop {:.0} {:.0} {}",
            px,
            py + 170.0,
            source.display()
        ))
        .unwrap();
    ada.expect("hint", on!(Event::Notice { message, .. } if *message == "Drop the file on Bob's avatar to send it."));
    ada.client
        .command(&format!("drop {px:.0} {py:.0} {}", source.display()))
        .unwrap();
    ada.expect("sending", on!(Event::TransferStarted { dir: Dir::Out, .. }));
    // 200 MB is above what Bob takes unasked: he clicks "Accept" in his file list.
    bob.expect("the question", on!(Event::TransferAsked { .. }));
    let accept = (0..50)
        .find_map(|_| {
            if let Some([x, y]) = bob.layout().offer_buttons.get("accept").copied() {
                return Some((x, y));
            }
            std::thread::sleep(Duration::from_millis(100));
            None
        })
        .expect("an Accept button in Bob's file list");
    bob.x
        .xdotool(&["search", "--name", "Duet", "windowfocus", "--sync"]);
    bob.x.click_at(accept.0, accept.1, 1);
    ada.expect("accepted", on!(Event::TransferAccepted { .. }));
    // Progress shows while it flows (the transfer runs beside the frames, so a frame may catch
    // only part of it); then the file is there.
    let (mut midway, mut saved) = (false, None);
    while saved.is_none() {
        let step = bob
            .client
            .wait("received", Duration::from_secs(90), |e| match e {
                Event::TransferProgress {
                    dir: Dir::In,
                    done,
                    total,
                    ..
                } => Some((*done > 0 && done < total, None)),
                Event::TransferCompleted {
                    dir: Dir::In,
                    location,
                    ..
                } => Some((false, Some(location.clone()))),
                _ => None,
            })
            .unwrap_or_else(|e| {
                // What the sender saw meanwhile says which side stalled.
                for event in ada.client.pending() {
                    if !matches!(event, Event::TransferProgress { .. }) {
                        eprintln!("[Ada] {}", event.to_line());
                    }
                }
                panic!("{e:#}")
            });
        midway |= step.0;
        saved = step.1;
    }
    assert!(midway, "Bob saw the transfer under way");
    let saved = saved.unwrap();
    ada.expect("sent", on!(Event::TransferCompleted { dir: Dir::Out, .. }));
    let started = std::time::Instant::now();
    ada.screenshot(&shots.join("ada-sending.png"));
    bob.screenshot(&shots.join("bob-receiving.png"));
    println!("screenshots taken in {:?}", started.elapsed());
    let saved = PathBuf::from(saved);
    assert_eq!(saved.file_name().unwrap(), "holiday photos.bin");
    let got = std::fs::read(&saved).unwrap();
    assert_eq!(Sha256::digest(&got), Sha256::digest(&bytes));

    // Out of sight: the keyboard focus goes from Ada's window to the screen's root window.
    // What Bob writes now counts in her window's title, and her window asks for attention.
    ada.x
        .xdotool(&["search", "--name", "Duet", "windowfocus", "--sync"]);
    let root = ada
        .x
        .xdotool_output(&["search", "--maxdepth", "0", "--name", ".*"]);
    ada.x.xdotool(&["windowfocus", "--sync", root.trim()]);
    std::thread::sleep(Duration::from_millis(500));
    bob.client.command("say Are you there, Ada?").unwrap();
    let unseen = ada.expect(
        "an alert for the message",
        on!(Event::Alerted { what, unseen, .. } if *what == "message" => *unseen),
    );
    assert_eq!(unseen, 1);
    let titled = |ada: &Desktop, title: &str| {
        (0..100).any(|_| {
            let found = ada.x.has_window_named(title);
            if !found {
                std::thread::sleep(Duration::from_millis(100));
            }
            found
        })
    };
    assert!(titled(&ada, "(1) Duet"), "the window's title counts it");
    ada.screenshot(&shots.join("ada-out-of-sight.png"));
    // Back in sight: the count goes.
    ada.x
        .xdotool(&["search", "--name", "Duet", "windowfocus", "--sync"]);
    assert!(titled(&ada, "Duet"), "the count went");

    // Bob answers so both windows show a conversation, then both windows are captured.
    bob.client.command("say Got it, thanks Ada!").unwrap();
    ada.expect(
        "answer",
        on!(Event::Chat(x) if x.text == "Got it, thanks Ada!"),
    );
    std::thread::sleep(Duration::from_millis(500));
    ada.screenshot(&shots.join("ada.png"));
    bob.screenshot(&shots.join("bob.png"));

    // Bob keeps a copy elsewhere with "Save as…", then shows his downloads with "Open folder":
    // real clicks on the buttons of the file in his list.
    let copy = work.join("elsewhere/holiday copy.bin");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::write(tools.join("zenity.answer"), format!("{}\n", copy.display())).unwrap();
    bob.x
        .xdotool(&["search", "--name", "Duet", "windowfocus", "--sync"]);
    let actions = bob.layout().file_actions;
    let click = |bob: &mut Desktop, label: &str| {
        let (x, y) = point(actions.get(label).copied(), label);
        bob.x.click_at(x, y, 1);
    };
    click(&mut bob, "Save as…");
    let saved_note = bob.expect(
        "saved a copy",
        on!(Event::Notice { message } if message.starts_with("Saved a copy as")
            => message.clone()),
    );
    assert!(saved_note.contains("holiday copy.bin"), "{saved_note}");
    let asked = std::fs::read_to_string(tools.join("zenity.args")).unwrap();
    assert!(
        asked.contains("--save") && asked.contains("holiday photos.bin"),
        "the dialog was asked: {asked}"
    );
    assert_eq!(
        Sha256::digest(std::fs::read(&copy).unwrap()),
        Sha256::digest(&bytes)
    );
    click(&mut bob, "Open folder");
    let mut opened = String::new();
    for _ in 0..100 {
        opened = std::fs::read_to_string(tools.join("xdg-open.args")).unwrap_or_default();
        if !opened.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(Path::new(opened.trim()), saved.parent().unwrap());

    // Ada created the room, so she may remove Bob: right click on his avatar, then "Kick Bob".
    ada.x.click_at(px, py, 3);
    std::thread::sleep(Duration::from_millis(500));
    let menu = ada.layout();
    let (kx, ky) = point(menu.kick_button, "kick button");
    ada.screenshot(&shots.join("ada-menu.png"));
    ada.x.click_at(kx, ky, 1);
    // The server drops Bob (Ada sees him leave) and confirms the kick, in either order.
    let mut seen = (false, false);
    while seen != (true, true) {
        let event = ada.expect("kick confirmed and Bob gone", |e| match e {
            Event::PeerLeft { .. } => Some(e.clone()),
            Event::Notice { message } if message.starts_with("Your peer was removed") => {
                Some(e.clone())
            }
            _ => None,
        });
        if matches!(event, Event::PeerLeft { .. }) {
            seen.0 = true;
        } else {
            seen.1 = true;
        }
    }
    // The server told Bob why it closed his connection, and his client left the room: he sees
    // Ada go and is told, in words, that he was removed (in either order).
    let mut told = (false, false);
    while told != (true, true) {
        let event = bob.expect("connection cut and Bob told", |e| match e {
            Event::PeerLeft { .. } => Some(e.clone()),
            Event::SignalingClosed { message }
                if message.starts_with("The room's creator removed you") =>
            {
                Some(e.clone())
            }
            _ => None,
        });
        if matches!(event, Event::PeerLeft { .. }) {
            told.0 = true;
        } else {
            told.1 = true;
        }
    }
    ada.screenshot(&shots.join("ada-after-kick.png"));
}

/// The windowed client retries by itself: Ada is alone in her room when the server dies; she
/// is told in words (the status line counts the attempts), her client keeps trying, and once
/// the same server is back she is in the room again without doing anything, so Bob, arriving
/// later, meets her. Screenshot: `target/screenshots/ada-reconnecting.png`.
/// The system's scale factor: a window at 2 has the same layout in logical pixels as one at 1,
/// is drawn at twice the pixels (text included), and takes a click where it shows a button.
#[test]
fn the_window_follows_the_system_scale_factor() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let work = temp_dir("desktop-scale").unwrap();
    let shots: PathBuf = repo_root().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut clients = [1, 2].map(|scale| {
        Desktop::start_scaled(
            &wrangler.base,
            &work.join(format!("at-{scale}")),
            "Ada",
            scale,
        )
    });
    let [plain, double] = clients.each_mut().map(|desktop| {
        desktop.expect(
            "lobby",
            on!(Event::Screen {
                screen: Screen::Lobby,
                ..
            }),
        );
        std::thread::sleep(Duration::from_millis(500));
        desktop.layout()
    });
    assert_eq!(plain.scale_factor, 1.0, "{plain:?}");
    assert_eq!(double.scale_factor, 2.0, "{double:?}");
    assert_eq!(plain.window, Some([1280.0, 720.0]));
    assert_eq!(
        double.window, plain.window,
        "the same window in logical pixels"
    );
    let (x1, y1) = point(plain.create_button, "create button at 1");
    let (x2, y2) = point(double.create_button, "create button at 2");
    // Within one physical pixel at 2: egui rounds to the pixel grid.
    assert!(
        (x1 - x2).abs() <= 0.5 && (y1 - y2).abs() <= 0.5,
        "{x1},{y1} / {x2},{y2}"
    );
    // Drawn at twice the pixels: 2560×1440.
    let [_, ref mut at_two] = clients;
    let shot = shots.join("lobby-scale-2.png");
    at_two.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    let (width, height) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((width, height), (2560, 1440));
    // A click where the button shows, in the screen's own pixels, presses it.
    at_two.x.click_at(x2 * 2.0, y2 * 2.0, 1);
    at_two.expect(
        "room screen",
        on!(Event::Screen {
            screen: Screen::Room,
            ..
        }),
    );
}

#[test]
fn a_windowed_client_reconnects_by_itself_after_a_server_restart() {
    assert_loopback_only();
    let options = duet_tests::WranglerOptions {
        persist_to: Some(temp_dir("desktop-restart-state").unwrap()),
        port: Some(duet_tests::free_port()),
        ..Default::default()
    };
    let wrangler = Wrangler::start(options.clone()).unwrap();
    let link = wrangler.new_room_link().unwrap();
    let work = temp_dir("desktop-restart").unwrap();
    let shots: PathBuf = repo_root().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let mut ada = Desktop::start(&wrangler.base, &link, &work.join("ada"), "Ada", None);
    ada.expect("connected", on!(Event::Connected { .. }));

    // The server goes away: Ada is told, and her client tries again, more than once.
    drop(wrangler);
    ada.expect(
        "told",
        on!(Event::Notice { message } if message.contains("Cannot reach the Duet server")),
    );
    for attempt in 1..=2 {
        ada.expect(
            &format!("failed attempt {attempt}"),
            on!(Event::SignalingClosed { .. }),
        );
    }
    ada.screenshot(&shots.join("ada-reconnecting.png"));

    // The same server comes back; nobody touches Ada's window.
    let wrangler = Wrangler::start(options).unwrap();
    ada.expect(
        "back",
        on!(Event::Notice { message, .. } if *message == "Connected to the room again."),
    );
    let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
    let mut bob = HeadlessClient::start(binary, &link, &work.join("bob"), "Bob").unwrap();
    ada.expect(
        "Bob's hello",
        on!(Event::PeerHello { name, .. } if *name == "Bob"),
    );
    // Nothing is queued: Bob may only speak once he, too, knows Ada is there.
    bob.wait(
        "Ada's hello",
        Duration::from_secs(90),
        on!(Event::PeerHello { name, .. } if *name == "Ada"),
    )
    .unwrap();
    bob.command("say glad you kept trying").unwrap();
    ada.expect(
        "Bob's message",
        on!(Event::Chat(x) if x.text == "glad you kept trying" && !x.mine),
    );
    drop(wrangler);
}

/// Where the desktop install from before device keys is kept: `bob/`, the data directory an
/// older version left behind, and `install.json`, what that version reported about it. Both
/// were made by [`an_older_version_leaves_an_install_behind`]; see the README beside them.
const BEFORE_KEYS: &str = "game-client/tests/fixtures/before-keys";

/// Copies a directory tree, leaving out entries with the names in `leave_out` at any depth.
fn copy_tree(from: &Path, to: &Path, leave_out: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if leave_out.iter().any(|name| entry.file_name() == *name) {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target, leave_out);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Bob used Duet before devices had keys: he created a room, chatted with Ada and received her
/// file. The new version, started on his data directory as it was left, still calls him Bob,
/// lists the file and the room, shows the room's history as it was, and introduces him to a new
/// person under his name, now with a key of his own.
#[test]
fn an_install_from_before_device_keys_keeps_its_name_history_files_and_rooms() {
    assert_loopback_only();
    let fixture = repo_root().join(BEFORE_KEYS);
    let install: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("install.json")).unwrap()).unwrap();
    let text = |key: &str| install[key].as_str().unwrap().to_owned();
    let (room, file) = (text("room"), text("file"));
    let old_history: Vec<duet_tests::automation::ChatLine> =
        serde_json::from_value(install["history"].clone()).unwrap();
    assert!(old_history.len() >= 2, "the fixture holds a conversation");

    // The same server as before, at the same address (the links Bob keeps name it), where the
    // room has since expired: a server of its own, on that port.
    let link = text("link");
    let port = duet_tests::loopback_port(&link);
    let wrangler = Wrangler::start(duet_tests::WranglerOptions {
        port: Some(port),
        ..Default::default()
    })
    .unwrap();
    let work = temp_dir("upgrade").unwrap();
    let dir = work.join("bob");
    copy_tree(&fixture.join("bob"), &dir, &[]);
    let shots: PathBuf = repo_root().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // The first start of this version, with no name given: the stored one is kept. It reports
    // its identity, the files it lists and the lobby in no fixed order.
    let mut bob = Desktop::start(&wrangler.base, "", &dir, "", None);
    bob.client.label = "Bob".into();
    let (mut name, mut received, mut lobby) = (None, None, false);
    while name.is_none() || received.is_none() || !lobby {
        match bob.expect("the start", |e| {
            matches!(
                e,
                Event::Ready { .. }
                    | Event::ReceivedFiles { .. }
                    | Event::Screen {
                        screen: Screen::Lobby,
                        ..
                    }
            )
            .then(|| e.clone())
        }) {
            Event::Ready { name: n, .. } => name = Some(n),
            Event::ReceivedFiles { names } => received = Some(names),
            _ => lobby = true,
        }
    }
    assert_eq!(name.as_deref(), Some(text("name").as_str()));
    assert_eq!(received, Some(vec![file.clone()]));
    assert_eq!(
        duet_tests::hex(&duet_tests::sha256_of(&dir.join("downloads").join(&file))),
        text("file_sha256"),
        "the received file is unchanged"
    );
    std::thread::sleep(Duration::from_millis(500));
    bob.screenshot(&shots.join("upgraded-lobby.png"));

    // The old room is in "Recent rooms". It has expired on the server (this one never knew it),
    // but what was said in it is on Bob's device, as it was.
    let lobby = bob.layout();
    let (x, y) = point(lobby.recent_rooms.get(&room).copied(), "the old room");
    bob.x.click_at(x, y, 1);
    let stored = bob.expect("history", on!(Event::HistoryLoaded { stored } => *stored));
    assert_eq!(stored, old_history.len());
    bob.client.command("history").unwrap();
    let history = bob.expect(
        "history",
        on!(Event::History { entries } => entries.clone()),
    );
    assert_eq!(
        history, old_history,
        "the history is as the old version left it"
    );
    let closed = bob.expect(
        "the room's end",
        on!(Event::SignalingClosed { message } => message.clone()),
    );
    assert!(closed.contains("does not exist"), "{closed}");
    std::thread::sleep(Duration::from_millis(500));
    bob.screenshot(&shots.join("upgraded-old-room.png"));
    bob.client.quit(Duration::from_secs(30)).unwrap();

    // Bob meets someone in a new room: he is Bob, with a key that stays his.
    let new_link = wrangler.new_room_link().unwrap();
    let mut keys = Vec::new();
    for run in 0..2 {
        let mut bob = Desktop::start(&wrangler.base, &new_link, &dir, "", None);
        bob.client.label = "Bob".into();
        let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
        let mut ada =
            HeadlessClient::start(binary, &new_link, &work.join(format!("ada-{run}")), "Ada")
                .unwrap();
        let (name, key) = ada.expect(
            "Bob's hello",
            on!(Event::PeerHello { name, key, .. } => (name.clone(), key.clone())),
        );
        assert_eq!(name, text("name"));
        keys.push(key);
        bob.expect(
            "Ada's hello",
            on!(Event::PeerHello { name, .. } if *name == "Ada"),
        );
        ada.command("say welcome back").unwrap();
        bob.expect(
            "Ada's message",
            on!(Event::Chat(x) if x.text == "welcome back" && !x.mine),
        );
        bob.client.quit(Duration::from_secs(30)).unwrap();
    }
    assert_eq!(keys[0], keys[1], "Bob's new key is kept");
}

/// Makes [`BEFORE_KEYS`] with an older build of the client (not run by `cargo xtask test`):
///
/// ```text
/// DUET_OLD_CLIENT=/path/to/old/duet-client DUET_OLD_COMMIT=97c3116 \
///   cargo test -p duet-client --test desktop -- --ignored an_older_version_leaves
/// ```
///
/// Bob, windowed, creates a room from his lobby; Ada, headless, joins; they talk and she sends
/// him a file; both quit as a person would. Bob's data directory is kept, with what his client
/// reported (its history, the file's name and hash).
#[test]
#[ignore = "makes a fixture from an older build; see game-client/tests/fixtures/README.md"]
fn an_older_version_leaves_an_install_behind() {
    assert_loopback_only();
    let old = PathBuf::from(
        std::env::var_os("DUET_OLD_CLIENT").expect("DUET_OLD_CLIENT: the older duet-client"),
    );
    let commit = std::env::var("DUET_OLD_COMMIT").expect("DUET_OLD_COMMIT: its commit");
    let wrangler = Wrangler::shared();
    let work = temp_dir("old-install").unwrap();
    let limit = Duration::from_secs(90);
    let event =
        |name: &'static str| move |v: &serde_json::Value| (v["event"] == name).then(|| v.clone());

    let mut bob = Desktop::start_binary(&old, &wrangler.base, "", &work.join("bob"), "Bob", None);
    // The lobby may be reported before the identity: wait for the one, then give the other a
    // moment to be drawn.
    let ready = bob
        .client
        .wait_json("ready", limit, event("ready"))
        .unwrap();
    // `--name` is applied (and stored) just after the start.
    let name = bob
        .client
        .wait_json("the name", limit, |v| {
            (v["event"] == "renamed").then(|| v["name"].clone())
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    bob.client.command("layout").unwrap();
    let layout = bob
        .client
        .wait_json("layout", limit, event("layout"))
        .unwrap();
    let at = |i: usize| layout["create_button"][i].as_f64().unwrap();
    bob.x.click_at(at(0) as f32, at(1) as f32, 1);
    let link = bob
        .client
        .wait_json("room", limit, |v| {
            (v["event"] == "screen" && v["screen"] == "room")
                .then(|| v["link"].as_str().map(str::to_owned))
                .flatten()
        })
        .unwrap();
    let room = link.rsplit('/').next().unwrap().to_owned();

    let mut ada = HeadlessClient::start(&old, &link, &work.join("ada"), "Ada").unwrap();
    for (client, peer) in [(&mut ada, "Bob"), (&mut bob.client, "Ada")] {
        client
            .wait_json("hello", limit, |v| {
                (v["event"] == "peer_hello" && v["name"] == peer).then_some(())
            })
            .unwrap();
    }
    let said = |who: &mut HeadlessClient, text: &'static str, state: &'static str| {
        who.wait_json("chat", limit, move |v| {
            (v["event"] == "chat" && v["text"] == text && v["state"] == state).then_some(())
        })
        .unwrap()
    };
    ada.command("say Hello Bob! This was written before devices had keys.")
        .unwrap();
    said(
        &mut bob.client,
        "Hello Bob! This was written before devices had keys.",
        "received",
    );
    bob.client
        .command("say Hi Ada, send me the notes?")
        .unwrap();
    said(&mut ada, "Hi Ada, send me the notes?", "received");
    said(&mut bob.client, "Hi Ada, send me the notes?", "delivered");

    let file = "notes-before-keys.bin";
    let sha = duet_tests::make_file(&work.join(file), 48_000);
    ada.command(&format!("send {}", work.join(file).display()))
        .unwrap();
    bob.client
        .wait_json("the file", limit, |v| {
            (v["event"] == "transfer_completed" && v["dir"] == "in").then_some(())
        })
        .unwrap();
    bob.client.command("history").unwrap();
    let history = bob
        .client
        .wait_json("history", limit, event("history"))
        .unwrap();
    ada.quit(limit).unwrap();
    let Desktop { client, x } = bob;
    assert!(client.quit(limit).unwrap().success());
    drop(x);

    let out = repo_root().join(BEFORE_KEYS);
    let _ = std::fs::remove_dir_all(&out);
    // All Bob's client keeps, without the scratch directory the test gave his X session and the
    // lock file a running client holds.
    copy_tree(
        &work.join("bob"),
        &out.join("bob"),
        &["xdg-runtime", "duet.lock"],
    );
    let install = serde_json::json!({
        "commit": commit,
        "room": room,
        "link": link,
        "name": name,
        "identity": ready["identity"],
        "file": file,
        "file_sha256": duet_tests::hex(&sha),
        "history": history["entries"],
    });
    std::fs::write(
        out.join("install.json"),
        serde_json::to_string_pretty(&install).unwrap() + "\n",
    )
    .unwrap();
}
