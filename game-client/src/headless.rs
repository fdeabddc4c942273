//! The headless runner: the client without a window, for tests, benchmarks and scripts.
//!
//! Events go to stdout as one JSON object per line (`{"event":"chat",...}`); commands come in on
//! stdin, one per line: `say TEXT`, `send PATH`, `rename NAME`, `call [video]`, `accept [video]`,
//! `decline`, `hangup`, `mute`, `unmute`, `history`, `quit`. End of stdin also quits, so
//! a test that drops its handle never leaves a client behind.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use bevy::prelude::*;
use duet_shared::automation::{self as auto, ContactLine, Event};

use crate::call::{CallAction, CallChanged, CallState};
use crate::chat::{ChatChanged, ChatLog, Delivery, HistoryFailed, HistoryLoaded, SendChat};
use crate::contacts::{Contact, ContactAction, ContactEvent, Contacts, Standing};
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
struct StdinLines(Mutex<Receiver<Option<String>>>);

impl Plugin for HeadlessPlugin {
    fn build(&self, app: &mut App) {
        let automation = app
            .world()
            .get_resource::<Host>()
            .map(|host| host.automation.clone())
            .expect("the app inserts the platform's Host before the headless runner");
        app.insert_resource(StdinLines(Mutex::new(automation.command_lines())))
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
    /// One event.
    pub fn emit(&self, event: Event) {
        self.0.emit_line(&event.to_line());
    }

    /// One event line as it is.
    pub fn emit_line(&self, line: &str) {
        self.0.emit_line(line);
    }

    /// Whether commands can come (see [`Automation::takes_commands`]).
    pub fn takes_commands(&self) -> bool {
        self.0.takes_commands()
    }
}

fn announce(identity: Res<Identity>, out: Res<EventOut>) {
    out.emit(Event::Ready {
        identity: identity.id,
        name: identity.name.clone(),
    });
}

/// A stdin line, understood.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    Say(String),
    Rename(String),
    Send(std::path::PathBuf),
    Call(CallAction),
    Answer(AnswerOffer),
    Contact(ContactAction),
    History,
    Contacts,
    Quit,
    Nothing,
    /// A verb this runner does not know (maybe the windowed automation does).
    Unknown(String),
    /// A known verb used wrongly: its usage.
    Usage(String),
}

/// The commands, for an unknown verb's error.
const COMMANDS: &str = "say TEXT, send PATH, take_file ID, refuse_file ID, rename NAME, \
     call [video], accept [video], decline, hangup, mute, unmute, history, verify, contacts, \
     forget KEY, rename_contact KEY NAME, quit";

/// Reads one stdin line; `camera` is whether the camera is on now (mute keeps it as it is).
fn parse(line: &str, camera: bool) -> Command {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "say" => Command::Say(rest.to_owned()),
        "rename" => Command::Rename(rest.to_owned()),
        "send" => Command::Send(rest.into()),
        "call" => Command::Call(CallAction::Start {
            video: rest == "video",
        }),
        "accept" => Command::Call(CallAction::Accept {
            video: rest == "video",
        }),
        "decline" => Command::Call(CallAction::Decline),
        "hangup" => Command::Call(CallAction::HangUp),
        "mute" | "unmute" => Command::Call(CallAction::SetMedia {
            muted: verb == "mute",
            camera,
        }),
        "take_file" | "refuse_file" => match u64::from_str_radix(rest.trim(), 16) {
            Ok(id) => Command::Answer(AnswerOffer {
                id: duet_shared::peer::TransferId(id),
                accept: verb == "take_file",
            }),
            Err(_) => Command::Usage(format!("usage: {verb} ID")),
        },
        "history" => Command::History,
        "verify" => Command::Contact(ContactAction::VerifyPeer),
        "contacts" => Command::Contacts,
        "forget" | "rename_contact" => {
            contact_command(verb, rest).map_or_else(Command::Usage, Command::Contact)
        }
        "quit" => Command::Quit,
        "" => Command::Nothing,
        other => Command::Unknown(other.to_owned()),
    }
}

/// What stdin commands may make happen.
#[derive(bevy::ecs::system::SystemParam)]
struct Doers<'w> {
    chat: MessageWriter<'w, SendChat>,
    files: MessageWriter<'w, SendFile>,
    answers: MessageWriter<'w, AnswerOffer>,
    rename: MessageWriter<'w, Rename>,
    contacts: MessageWriter<'w, ContactAction>,
    calls: MessageWriter<'w, CallAction>,
    exit: MessageWriter<'w, AppExit>,
    more: MessageWriter<'w, ExtraCommand>,
}

fn run_commands(
    lines: Res<StdinLines>,
    (log, people, call_state): (Res<ChatLog>, Res<Contacts>, Res<CallState>),
    (extra, out): (Res<AcceptExtraCommands>, Res<EventOut>),
    mut doers: Doers,
) {
    let Ok(rx) = lines.0.lock() else { return };
    while let Ok(line) = rx.try_recv() {
        let Some(line) = line else {
            doers.exit.write(AppExit::Success);
            return;
        };
        match parse(&line, call_state.call.camera()) {
            Command::Say(text) => {
                doers.chat.write(SendChat(text));
            }
            Command::Rename(name) => {
                doers.rename.write(Rename(name));
            }
            Command::Send(path) => {
                doers.files.write(SendFile(path));
            }
            Command::Call(action) => {
                doers.calls.write(action);
            }
            Command::Answer(answer) => {
                doers.answers.write(answer);
            }
            Command::Contact(action) => {
                doers.contacts.write(action);
            }
            Command::History => out.emit(Event::History {
                entries: log.entries.iter().map(chat_line).collect(),
            }),
            Command::Contacts => out.emit(Event::Contacts {
                contacts: people.0.iter().map(contact_line).collect(),
            }),
            Command::Quit => {
                doers.exit.write(AppExit::Success);
            }
            Command::Nothing => {}
            Command::Unknown(_) if extra.0 => {
                doers.more.write(ExtraCommand(line.clone()));
            }
            Command::Unknown(other) => out.emit(Event::Error {
                message: format!("unknown command {other:?}; commands: {COMMANDS}"),
            }),
            Command::Usage(message) => out.emit(Event::Error { message }),
        }
    }
}

/// `forget KEY` or `rename_contact KEY NAME` as the action it asks for, or its usage.
fn contact_command(verb: &str, rest: &str) -> Result<ContactAction, String> {
    let (key, name) = rest.split_once(' ').unwrap_or((rest, ""));
    let key = duet_shared::trust::PublicKey::from_hex(key.trim()).map_err(|_| {
        format!(
            "usage: {verb} KEY_HEX{}",
            if verb == "forget" { "" } else { " NAME" }
        )
    })?;
    Ok(if verb == "forget" {
        ContactAction::Forget { key }
    } else {
        ContactAction::Rename {
            key,
            name: name.to_owned(),
        }
    })
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

fn call_event(event: &CallChanged) -> Event {
    use duet_shared::call::CallPhase;
    match event {
        CallChanged::Phase(phase) => {
            let (name, call) = match phase {
                CallPhase::Idle => (auto::CallPhase::Idle, None),
                CallPhase::Calling { call, .. } => (auto::CallPhase::Calling, Some(call)),
                CallPhase::Ringing { call, .. } => (auto::CallPhase::Ringing, Some(call)),
                CallPhase::Connecting { call, .. } => (auto::CallPhase::Connecting, Some(call)),
                CallPhase::Active { call, .. } => (auto::CallPhase::Active, Some(call)),
            };
            let video = match phase {
                CallPhase::Calling { video, .. } | CallPhase::Ringing { video, .. } => Some(*video),
                _ => None,
            };
            Event::Call {
                phase: name,
                call: call.map(|c| c.to_string()),
                video,
            }
        }
        CallChanged::Ended(why) => Event::CallEnded {
            reason: format!("{why:?}"),
            message: why.to_string(),
        },
        CallChanged::PeerMedia { muted, camera } => Event::PeerMedia {
            muted: *muted,
            camera: *camera,
        },
        CallChanged::Refused(why) => Event::CallRefused {
            message: why.to_string(),
        },
        CallChanged::Stats(stats) => Event::CallStats(*stats),
    }
}

fn chat_line(entry: &crate::chat::ChatEntry) -> auto::ChatLine {
    auto::ChatLine {
        id: entry.id,
        mine: entry.mine,
        author: entry.author.clone(),
        text: entry.text.clone(),
        state: match entry.delivery {
            Delivery::Sent => auto::Delivery::Sent,
            Delivery::Delivered => auto::Delivery::Delivered,
            Delivery::NotDelivered => auto::Delivery::NotDelivered,
            Delivery::Received => auto::Delivery::Received,
        },
    }
}

fn dir(direction: &Direction) -> auto::Dir {
    match direction {
        Direction::Outgoing => auto::Dir::Out,
        Direction::Incoming => auto::Dir::In,
    }
}

fn print_events(
    mut net: MessageReader<NetEvent>,
    (mut identity, mut contacts): (MessageReader<IdentityEvent>, MessageReader<ContactEvent>),
    (mut chat, log): (MessageReader<ChatChanged>, Res<ChatLog>),
    mut history: (MessageReader<HistoryLoaded>, MessageReader<HistoryFailed>),
    mut failed: MessageReader<SendFailed>,
    mut transfers: MessageReader<TransferEvent>,
    (mut calls, out): (MessageReader<CallChanged>, Res<EventOut>),
) {
    let emit = |event| out.emit(event);
    for event in calls.read() {
        emit(call_event(event));
    }
    for event in net.read().filter_map(net_event) {
        emit(event);
    }
    for event in identity.read() {
        emit(identity_event(event));
    }
    for event in contacts.read() {
        emit(contact_event(event));
    }
    for ChatChanged(entry) in chat.read() {
        emit(Event::Chat(chat_line(entry)));
    }
    for loaded in history.0.read() {
        emit(Event::HistoryLoaded {
            stored: loaded.stored,
        });
        // Where no `history` command can come, what was loaded is reported by itself.
        if !out.takes_commands() {
            emit(Event::History {
                entries: log.entries.iter().map(chat_line).collect(),
            });
        }
    }
    for HistoryFailed(why) in history.1.read() {
        emit(Event::HistoryFailed {
            message: why.to_string(),
        });
    }
    for failure in failed.read() {
        emit(Event::SendFailed {
            message: failure.reason.clone(),
        });
    }
    for event in transfers.read() {
        emit(transfer_event(event));
    }
}

/// The automation event for a connection event; the hello's end is reported as an identity
/// event instead.
fn net_event(event: &NetEvent) -> Option<Event> {
    use duet_shared::liveness::Health;
    Some(match event {
        NetEvent::IceServers(ice) => Event::IceServers {
            urls: ice.servers.iter().flat_map(|s| s.urls.clone()).collect(),
            relay: ice.has_relay() && ice.servers.iter().any(|s| s.credential.is_some()),
            source: match &ice.source {
                crate::net::IceSource::Configured => "configured".to_owned(),
                crate::net::IceSource::Server => "server".to_owned(),
                crate::net::IceSource::Unavailable(why) => format!("unavailable: {why}"),
            },
        },
        NetEvent::Path(pair) => {
            let word = |t: matchbox_socket::CandidateType| {
                match t {
                    matchbox_socket::CandidateType::Host => "host",
                    matchbox_socket::CandidateType::ServerReflexive => "srflx",
                    matchbox_socket::CandidateType::PeerReflexive => "prflx",
                    matchbox_socket::CandidateType::Relay => "relay",
                }
                .to_owned()
            };
            Event::Path {
                local: word(pair.local),
                remote: word(pair.remote),
                relayed: pair.is_relayed(),
            }
        }
        NetEvent::Link(health) => match *health {
            Health::Live { rtt_ms } => Event::Link {
                rtt_ms,
                silent_s: None,
            },
            Health::Quiet { silent_s } => Event::Link {
                rtt_ms: None,
                silent_s: Some(silent_s),
            },
        },
        NetEvent::Connected(id) => Event::Connected { peer_id: id.0 },
        NetEvent::PeerJoined(id) => Event::PeerJoined { peer_id: id.0 },
        NetEvent::PeerLeft(id) => Event::PeerLeft { peer_id: id.0 },
        NetEvent::BadFrame(why) => Event::BadFrame {
            message: why.to_string(),
        },
        NetEvent::SecondHello => Event::SecondHello,
        NetEvent::PeerFailed(why) | NetEvent::Retrying(why) => Event::PeerFailed {
            reason: format!("{why:?}"),
            message: why.to_string(),
            retrying: matches!(event, NetEvent::Retrying(_)),
        },
        NetEvent::SignalingClosed(why) => Event::SignalingClosed {
            message: why.to_string(),
        },
        NetEvent::PeerVerified(_) | NetEvent::HelloFailed(_) => return None,
        NetEvent::Negotiated(descriptions) => {
            let fingerprint = |sdp: &str| {
                duet_shared::trust::dtls_fingerprint(sdp).unwrap_or_else(|e| e.to_string())
            };
            Event::Negotiated {
                local_fingerprint: fingerprint(&descriptions.local),
                remote_fingerprint: fingerprint(&descriptions.remote),
            }
        }
    })
}

fn contact_event(event: &ContactEvent) -> Event {
    match event {
        ContactEvent::Met {
            key,
            name,
            standing,
        } => {
            let (word, since_ms, verified) = match *standing {
                Standing::New => ("new", None, false),
                Standing::Known { since_ms, verified } => ("known", Some(since_ms), verified),
                Standing::NotTheOneMet {
                    known_since_ms,
                    verified,
                } => ("not_the_one_met", Some(known_since_ms), verified),
            };
            Event::PeerStanding {
                key: key.to_hex(),
                name: name.clone(),
                standing: word.to_owned(),
                since_ms,
                verified,
            }
        }
        ContactEvent::Verified { key } => Event::PeerVerified { key: key.to_hex() },
        ContactEvent::Refused { name } => Event::ImpostorRefused { name: name.clone() },
    }
}

/// A contact as the automation protocol reports it.
pub fn contact_line(contact: &Contact) -> ContactLine {
    ContactLine {
        key: contact.key.to_hex(),
        fingerprint: contact.key.fingerprint(),
        name: contact.shown_name().to_owned(),
        first_seen_ms: contact.first_seen_ms,
        last_seen_ms: contact.last_seen_ms,
        verified: contact.verified,
    }
}

fn identity_event(event: &IdentityEvent) -> Event {
    match event {
        IdentityEvent::Renamed(name) => Event::Renamed { name: name.clone() },
        IdentityEvent::PeerHello {
            identity,
            key,
            name,
            safety_code,
        } => Event::PeerHello {
            identity: *identity,
            name: name.clone(),
            key: key.to_hex(),
            safety_code: safety_code.clone(),
        },
        IdentityEvent::HelloFailed(why) => Event::HelloFailed {
            reason: format!("{why:?}"),
            message: why.to_string(),
        },
        IdentityEvent::PeerRenamed(name) => Event::PeerRenamed { name: name.clone() },
        IdentityEvent::VersionMismatch { theirs } => Event::VersionMismatch {
            theirs: *theirs,
            message: format!(
                "Your peer runs an incompatible version of Duet (protocol {theirs}); update both apps."
            ),
        },
    }
}

fn transfer_event(event: &TransferEvent) -> Event {
    match event {
        TransferEvent::Started {
            id,
            direction,
            name,
            size,
            resumed_from,
        } => Event::TransferStarted {
            id: id.to_string(),
            dir: dir(direction),
            name: name.clone(),
            size: *size,
            resumed_from: *resumed_from,
        },
        TransferEvent::Progress {
            id,
            direction,
            progress,
        } => Event::TransferProgress {
            id: id.to_string(),
            dir: dir(direction),
            done: progress.done,
            total: progress.total,
            bytes_per_sec: progress.bytes_per_sec,
            eta_secs: progress.eta_secs,
        },
        TransferEvent::Completed {
            id,
            direction,
            location,
        } => Event::TransferCompleted {
            id: id.to_string(),
            dir: dir(direction),
            location: location.clone(),
        },
        TransferEvent::Failed { id, direction, why } => Event::TransferFailed {
            id: id.to_string(),
            dir: dir(direction),
            message: why.to_string(),
            paused: false,
        },
        // A pause is a failure that keeps the partial bytes for a resume.
        TransferEvent::Paused { id, why } => Event::TransferFailed {
            id: id.to_string(),
            dir: auto::Dir::In,
            message: why.to_string(),
            paused: true,
        },
        TransferEvent::Asked { id, name, size } => Event::TransferAsked {
            id: id.to_string(),
            name: name.clone(),
            size: *size,
        },
        TransferEvent::Accepted { id } => Event::TransferAccepted { id: id.to_string() },
        TransferEvent::Lanes { open } => Event::Lanes { open: *open },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_commands_and_misuse_gets_its_usage() {
        assert_eq!(
            parse("say hi there", false),
            Command::Say("hi there".into())
        );
        assert_eq!(
            parse("mute", true),
            Command::Call(CallAction::SetMedia {
                muted: true,
                camera: true
            })
        );
        assert_eq!(
            parse("take_file 1f", false),
            Command::Answer(AnswerOffer {
                id: duet_shared::peer::TransferId(0x1f),
                accept: true
            })
        );
        assert_eq!(
            parse("refuse_file zz", false),
            Command::Usage("usage: refuse_file ID".into())
        );
        assert!(
            matches!(parse("forget nothex", false), Command::Usage(u) if u.starts_with("usage: forget"))
        );
        assert_eq!(parse("drop a b", false), Command::Unknown("drop".into()));
        assert_eq!(parse("", false), Command::Nothing);
    }
}
