//! The headless runner: the client without a window, for tests, benchmarks and scripts.
//!
//! Events go to stdout as one JSON object per line (`{"event":"chat",...}`); commands come in on
//! stdin, one per line: `say TEXT`, `send PATH`, `rename NAME`, `call [video]`, `accept [video]`,
//! `decline`, `hangup`, `mute`, `unmute`, `history`, `quit`. End of stdin also quits, so
//! a test that drops its handle never leaves a client behind.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use bevy::prelude::*;
use serde_json::json;

use crate::call::{CallAction, CallChanged, CallState};
use crate::chat::{ChatChanged, ChatLog, Delivery, HistoryFailed, HistoryLoaded, SendChat};
use crate::frame::FrameSet;
use crate::identity::{Identity, IdentityEvent, Rename};
use crate::net::{NetEvent, SendFailed};
use crate::ports::{Automation, Host};
use crate::transfer::{AnswerOffer, Direction, SendFile, TransferEvent};

/// Options of the headless runner.
#[derive(Resource, Debug, Clone, Default)]
pub struct HeadlessOptions {
    /// Chat messages to send once the peer has said hello.
    pub say: Vec<String>,
    /// Files to send once the peer has said hello.
    pub send: Vec<std::path::PathBuf>,
}

/// Prints events, takes stdin commands.
pub struct HeadlessPlugin;

/// A stdin line this plugin does not know, handed on when [`AcceptExtraCommands`] is set (the
/// windowed client's automation adds `drop`, `screenshot`...).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct ExtraCommand(pub String);

/// Whether unknown stdin lines become [`ExtraCommand`]s instead of errors.
#[derive(Resource, Debug, Clone, Copy, Default)]
pub struct AcceptExtraCommands(pub bool);

#[derive(Resource)]
struct Commands(Mutex<Receiver<Option<String>>>);

impl Plugin for HeadlessPlugin {
    fn build(&self, app: &mut App) {
        let automation = app
            .world()
            .get_resource::<Host>()
            .map(|host| host.automation.clone())
            .expect("the app inserts the platform's Host before the headless runner");
        app.insert_resource(Commands(Mutex::new(automation.command_lines())))
            .insert_resource(EventOut(automation))
            .init_resource::<HeadlessOptions>()
            .init_resource::<AcceptExtraCommands>()
            .add_message::<ExtraCommand>()
            .add_systems(PostStartup, announce)
            .add_systems(
                Update,
                (run_commands, say_when_ready).in_set(FrameSet::Input),
            )
            .add_systems(Last, print_events);
    }
}

/// Where events go: the platform's automation port (stdout; in the browser, the console for the
/// page's test driver).
#[derive(Resource, Clone)]
pub struct EventOut(Arc<dyn Automation>);

impl EventOut {
    /// One event line.
    pub fn emit(&self, value: serde_json::Value) {
        self.0.emit_line(&value.to_string());
    }

    /// One event line as it is.
    pub fn emit_line(&self, line: &str) {
        self.0.emit_line(line);
    }
}

fn announce(identity: Res<Identity>, out: Res<EventOut>) {
    out.emit(json!({"event": "ready", "identity": identity.id, "name": identity.name}));
}

#[allow(clippy::too_many_arguments)]
fn run_commands(
    commands: Res<Commands>,
    log: Res<ChatLog>,
    mut chat: MessageWriter<SendChat>,
    (mut files, mut answers): (MessageWriter<SendFile>, MessageWriter<AnswerOffer>),
    mut rename: MessageWriter<Rename>,
    mut calls: MessageWriter<CallAction>,
    call_state: Res<CallState>,
    mut exit: MessageWriter<AppExit>,
    (extra, out): (Res<AcceptExtraCommands>, Res<EventOut>),
    mut more: MessageWriter<ExtraCommand>,
) {
    let emit = |value| out.emit(value);
    let Ok(rx) = commands.0.lock() else { return };
    while let Ok(line) = rx.try_recv() {
        let Some(line) = line else {
            exit.write(AppExit::Success);
            return;
        };
        let (verb, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match verb {
            "say" => {
                chat.write(SendChat(rest.to_owned()));
            }
            "rename" => {
                rename.write(Rename(rest.to_owned()));
            }
            "send" => {
                files.write(SendFile(rest.into()));
            }
            "call" => {
                calls.write(CallAction::Start {
                    video: rest == "video",
                });
            }
            "accept" => {
                calls.write(CallAction::Accept {
                    video: rest == "video",
                });
            }
            "decline" => {
                calls.write(CallAction::Decline);
            }
            "hangup" => {
                calls.write(CallAction::HangUp);
            }
            "mute" | "unmute" => {
                calls.write(CallAction::SetMedia {
                    muted: verb == "mute",
                    camera: call_state.call.camera(),
                });
            }
            "take_file" | "refuse_file" => match u64::from_str_radix(rest.trim(), 16) {
                Ok(id) => {
                    let id = duet_shared::peer::TransferId(id);
                    answers.write(AnswerOffer {
                        id,
                        accept: verb == "take_file",
                    });
                }
                Err(_) => emit(json!({"event": "error", "message": format!("usage: {verb} ID")})),
            },
            "history" => emit(json!({
                "event": "history",
                "entries": log.entries.iter().map(|e| json!({
                    "id": e.id, "mine": e.mine, "author": e.author, "text": e.text,
                    "state": delivery_name(e.delivery),
                })).collect::<Vec<_>>(),
            })),
            "quit" => {
                exit.write(AppExit::Success);
            }
            "" => {}
            _ if extra.0 => {
                more.write(ExtraCommand(line.clone()));
            }
            other => emit(
                json!({"event": "error", "message": format!("unknown command {other:?}; commands: say TEXT, send PATH, take_file ID, refuse_file ID, rename NAME, call [video], accept [video], decline, hangup, mute, unmute, history, quit")}),
            ),
        }
    }
}

fn say_when_ready(
    mut options: ResMut<HeadlessOptions>,
    mut identity_events: MessageReader<IdentityEvent>,
    mut chat: MessageWriter<SendChat>,
    mut files: MessageWriter<SendFile>,
) {
    let greeted = identity_events
        .read()
        .any(|e| matches!(e, IdentityEvent::PeerHello { .. }));
    if greeted {
        for text in options.say.drain(..) {
            chat.write(SendChat(text));
        }
        for path in options.send.drain(..) {
            files.write(SendFile(path));
        }
    }
}

fn call_event(event: &CallChanged) -> serde_json::Value {
    use duet_shared::call::CallPhase;
    match event {
        CallChanged::Phase(phase) => {
            let (name, call) = match phase {
                CallPhase::Idle => ("idle", None),
                CallPhase::Calling { call, .. } => ("calling", Some(call)),
                CallPhase::Ringing { call, .. } => ("ringing", Some(call)),
                CallPhase::Connecting { call, .. } => ("connecting", Some(call)),
                CallPhase::Active { call, .. } => ("active", Some(call)),
            };
            let video = match phase {
                CallPhase::Calling { video, .. } | CallPhase::Ringing { video, .. } => Some(*video),
                _ => None,
            };
            json!({"event": "call", "phase": name, "call": call.map(|c| c.to_string()), "video": video})
        }
        CallChanged::Ended(why) => {
            json!({"event": "call_ended", "reason": format!("{why:?}"), "message": why.to_string()})
        }
        CallChanged::PeerMedia { muted, camera } => {
            json!({"event": "peer_media", "muted": muted, "camera": camera})
        }
        CallChanged::Refused(why) => json!({"event": "call_refused", "message": why}),
        CallChanged::Stats(stats) => json!({
            "event": "call_stats",
            "inbound_audio_bytes": stats.inbound_audio_bytes,
            "inbound_audio_packets": stats.inbound_audio_packets,
            "outbound_audio_bytes": stats.outbound_audio_bytes,
            "inbound_video_bytes": stats.inbound_video_bytes,
            "outbound_video_bytes": stats.outbound_video_bytes,
            "peer_level": stats.peer_level,
            "my_level": stats.my_level,
            "video_fps": stats.video_fps,
            "rtt_ms": stats.rtt_ms,
            "jitter_ms": stats.jitter_ms,
            "packets_lost": stats.packets_lost,
        }),
    }
}

fn delivery_name(delivery: Delivery) -> &'static str {
    match delivery {
        Delivery::Sent => "sent",
        Delivery::Delivered => "delivered",
        Delivery::NotDelivered => "not_delivered",
        Delivery::Received => "received",
    }
}

fn print_events(
    mut net: MessageReader<NetEvent>,
    mut identity: MessageReader<IdentityEvent>,
    mut chat: MessageReader<ChatChanged>,
    mut history: (MessageReader<HistoryLoaded>, MessageReader<HistoryFailed>),
    mut failed: MessageReader<SendFailed>,
    mut transfers: MessageReader<TransferEvent>,
    (mut calls, out): (MessageReader<CallChanged>, Res<EventOut>),
) {
    let emit = |value| out.emit(value);
    for event in calls.read() {
        emit(call_event(event));
    }
    for event in net.read() {
        emit(match event {
            NetEvent::Connected(id) => json!({"event": "connected", "peer_id": id.0}),
            NetEvent::PeerJoined(id) => json!({"event": "peer_joined", "peer_id": id.0}),
            NetEvent::PeerLeft(id) => json!({"event": "peer_left", "peer_id": id.0}),
            NetEvent::BadFrame(why) => json!({"event": "bad_frame", "message": why}),
            NetEvent::SecondHello => json!({"event": "second_hello"}),
            NetEvent::PeerFailed(why) => {
                json!({"event": "peer_failed", "reason": format!("{why:?}"), "message": why.to_string()})
            }
            NetEvent::SignalingClosed(why) => {
                json!({"event": "signaling_closed", "message": why.to_string()})
            }
        });
    }
    for event in identity.read() {
        emit(match event {
            IdentityEvent::Renamed(name) => json!({"event": "renamed", "name": name}),
            IdentityEvent::PeerHello { identity, name } => {
                json!({"event": "peer_hello", "identity": identity, "name": name})
            }
            IdentityEvent::PeerRenamed(name) => json!({"event": "peer_renamed", "name": name}),
            IdentityEvent::VersionMismatch { theirs } => json!({
                "event": "version_mismatch",
                "theirs": theirs,
                "message": format!("Your peer runs an incompatible version of Duet (protocol {theirs}); update both apps."),
            }),
        });
    }
    for ChatChanged(entry) in chat.read() {
        emit(json!({
            "event": "chat",
            "id": entry.id,
            "mine": entry.mine,
            "author": entry.author,
            "text": entry.text,
            "state": delivery_name(entry.delivery),
        }));
    }
    for loaded in history.0.read() {
        emit(json!({"event": "history_loaded", "stored": loaded.stored}));
    }
    for HistoryFailed(why) in history.1.read() {
        emit(json!({"event": "history_failed", "message": why.to_string()}));
    }
    for failure in failed.read() {
        emit(json!({"event": "send_failed", "message": failure.reason}));
    }
    let dir = |d: &Direction| match d {
        Direction::Outgoing => "out",
        Direction::Incoming => "in",
    };
    for event in transfers.read() {
        emit(match event {
            TransferEvent::Started {
                id,
                direction,
                name,
                size,
                resumed_from,
            } => json!({
                "event": "transfer_started", "id": id.to_string(), "dir": dir(direction),
                "name": name, "size": size, "resumed_from": resumed_from,
            }),
            TransferEvent::Progress {
                id,
                direction,
                progress,
            } => json!({
                "event": "transfer_progress", "id": id.to_string(), "dir": dir(direction),
                "done": progress.done, "total": progress.total,
                "bytes_per_sec": progress.bytes_per_sec, "eta_secs": progress.eta_secs,
            }),
            TransferEvent::Completed {
                id,
                direction,
                location,
            } => json!({
                "event": "transfer_completed", "id": id.to_string(), "dir": dir(direction),
                "location": location,
            }),
            TransferEvent::Failed { id, direction, why } => json!({
                "event": "transfer_failed", "id": id.to_string(), "dir": dir(direction),
                "message": why.to_string(),
            }),
            // A pause is a failure that keeps the partial bytes for a resume.
            TransferEvent::Paused { id, why } => json!({
                "event": "transfer_failed", "id": id.to_string(), "dir": "in",
                "message": why.to_string(), "paused": true,
            }),
            TransferEvent::Asked { id, name, size } => json!({
                "event": "transfer_asked", "id": id.to_string(), "name": name, "size": size,
            }),
            TransferEvent::Accepted { id } => json!({
                "event": "transfer_accepted", "id": id.to_string(),
            }),
        });
    }
}
