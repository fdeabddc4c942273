//! Calls in the app: runs the shared call state machine ([`duet_shared::call::Call`]) over the
//! peer protocol's control channel and turns its effects into messages for the media layer and
//! the UI.
//!
//! The media connection itself is the platform's media layer, which reads [`MediaCommand`]s
//! and answers with [`MediaReport`]s: in the browser a second `RTCPeerConnection` with
//! `getUserMedia` (`platform/web/media.rs`); on the desktop a second webrtc-rs connection
//! carrying Opus voice from `cpal` (`platform/native/media.rs`, voice only). An app without
//! call media ([`CallsSupported`] false) shows no call buttons and declines a call from the
//! peer at once with [`DeclineReason::Unsupported`], so the caller reads why instead of
//! waiting for an answer.

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use duet_shared::call::{Call, CallEffect, CallEnd, CallId, CallPhase, DeclineReason};
use duet_shared::peer::Control;

use crate::frame::FrameSet;
use crate::identity::PeerProfile;
use crate::net::{ControlReceived, NetEvent, SendControl};
pub use crate::ports::{CallStats, MediaReport};
use crate::ports::{Host, MediaOp};

/// What the person does about calls (from the UI or the headless runner).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallAction {
    /// Call the peer, camera on or off.
    Start {
        /// Start with the camera on.
        video: bool,
    },
    /// Take the ringing call.
    Accept {
        /// Answer with the camera on.
        video: bool,
    },
    /// Turn the ringing call down.
    Decline,
    /// End the call (or stop ringing).
    HangUp,
    /// Mute/unmute, camera on/off.
    SetMedia {
        /// Microphone muted.
        muted: bool,
        /// Camera on.
        camera: bool,
    },
}

/// What the media layer must do: the machine's media effects (start or stop media, apply the
/// peer's description or candidate, mute), as [`MediaOp`]s.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MediaCommand(pub MediaOp);

/// Something the UI and the event log show about the call.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum CallChanged {
    /// The call entered a new phase.
    Phase(CallPhase),
    /// The call ended; the sentence says why.
    Ended(CallEnd),
    /// The peer muted/unmuted or turned the camera on/off.
    PeerMedia {
        /// Their microphone is muted.
        muted: bool,
        /// Their camera is on.
        camera: bool,
    },
    /// An action that could not be taken, in words (nobody to call, nothing ringing...).
    Refused(String),
    /// The running call's media numbers, once a second.
    Stats(CallStats),
}

/// The call, as this side sees it.
#[derive(Resource, Debug, Default)]
pub struct CallState {
    /// The state machine.
    pub call: Call,
    /// The peer's microphone is muted (during a call).
    pub peer_muted: bool,
    /// The peer's camera is on (during a call).
    pub peer_camera: bool,
    /// The latest media numbers (during a call).
    pub stats: CallStats,
}

/// Whether this app can take part in calls (the app sets it from the platform's
/// [`crate::ports::Capabilities`]: both the browser and the desktop have call media, so that is
/// the default). A resource so logic tests can run an app without call media (an older or
/// trimmed build) and check that it declines in words.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallsSupported(pub bool);

impl Default for CallsSupported {
    fn default() -> Self {
        Self(true)
    }
}

/// Calls over the control channel.
pub struct CallPlugin;

impl Plugin for CallPlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<CallAction>()
            .add_message::<MediaCommand>()
            .add_message::<MediaReport>()
            .add_message::<CallChanged>()
            .init_resource::<CallState>()
            .init_resource::<CallsSupported>()
            .add_systems(
                Update,
                (drive_media.run_if(resource_exists::<Host>), step_calls)
                    .chain()
                    .in_set(FrameSet::Core),
            );
    }
}

/// Hands the machine's media effects to the platform's media layer and brings its reports
/// back. Without a [`Host`] (logic tests, which play both sides in one process and must not
/// open devices) [`MediaCommand`]s stay as messages for whoever drives the media.
fn drive_media(
    host: Res<Host>,
    mut commands: MessageReader<MediaCommand>,
    mut reports: MessageWriter<MediaReport>,
    ice: Option<Res<crate::net::IceServers>>,
) {
    // The call's connection goes through the same servers as the room's (the configured ones,
    // or the server's with their credentials).
    let ice = ice.map(|ice| ice.servers.clone()).unwrap_or_default();
    for MediaCommand(op) in commands.read() {
        host.media.command(op.clone(), &ice);
    }
    reports.write_batch(host.media.reports());
}

/// What the call machine hears in a frame: the person's actions, the peer's signals and
/// presence, the media layer's reports.
#[derive(SystemParam)]
struct CallInputs<'w, 's> {
    actions: MessageReader<'w, 's, CallAction>,
    received: MessageReader<'w, 's, ControlReceived>,
    net: MessageReader<'w, 's, NetEvent>,
    reports: MessageReader<'w, 's, MediaReport>,
}

/// Where the call machine's effects go: the peer, the media layer, the UI.
#[derive(SystemParam)]
struct CallOutputs<'w> {
    send: MessageWriter<'w, SendControl>,
    media: MessageWriter<'w, MediaCommand>,
    changed: MessageWriter<'w, CallChanged>,
}

fn step_calls(
    mut state: ResMut<CallState>,
    supported: Res<CallsSupported>,
    profile: Res<PeerProfile>,
    mut inputs: CallInputs,
    mut out: CallOutputs,
) {
    let now = crate::util::now_ms();
    let before = state.call.phase();
    let mut effects = Vec::new();
    for event in inputs.net.read() {
        if let NetEvent::PeerLeft(_) = event {
            effects.extend(state.call.peer_left(now));
        }
    }
    for ControlReceived(message) in inputs.received.read() {
        if let Control::Call(signal) = message {
            effects.extend(state.call.on_signal(signal.clone(), now));
        }
    }
    for report in inputs.reports.read() {
        effects.extend(on_report(&mut state, report.clone(), now, &mut out.changed));
    }
    let present = profile.hello.is_some() && profile.incompatible.is_none();
    for action in inputs.actions.read() {
        match on_action(&mut state.call, *action, supported.0, present, now) {
            Ok(more) => effects.extend(more),
            Err(why) => {
                out.changed.write(CallChanged::Refused(why));
            }
        }
    }
    // An app without call media turns every call down at once, saying why, instead of ringing
    // with nothing to answer.
    if !supported.0
        && let CallPhase::Ringing { .. } = state.call.phase()
    {
        effects.extend(
            state
                .call
                .decline_as(DeclineReason::Unsupported, now)
                .unwrap_or_default(),
        );
    }
    effects.extend(state.call.tick(now));

    if state.call.phase() != before {
        out.changed.write(CallChanged::Phase(state.call.phase()));
    }
    for effect in effects {
        apply(&mut state, effect, &mut out);
    }
}

/// The machine's answer to a report of the media layer; the numbers of the running call are
/// kept and shown, not given to the machine.
fn on_report(
    state: &mut CallState,
    report: MediaReport,
    now: u64,
    changed: &mut MessageWriter<CallChanged>,
) -> Vec<CallEffect> {
    match report {
        MediaReport::LocalDescription { call, sdp } => state.call.local_description(call, sdp),
        MediaReport::LocalCandidate {
            call,
            candidate,
            mid,
            mline,
        } => state.call.local_candidate(call, candidate, mid, mline),
        MediaReport::Connected(call) => state.call.media_connected(call, now),
        MediaReport::Failed(call, why) => state.call.media_failed(call, why, now),
        MediaReport::Stats(call, stats) => {
            if state.call.phase().call() == Some(call) {
                state.stats = stats;
                changed.write(CallChanged::Stats(stats));
            }
            Vec::new()
        }
    }
}

/// The machine's answer to what the person did, or why it cannot be done, in words.
fn on_action(
    call: &mut Call,
    action: CallAction,
    supported: bool,
    present: bool,
    now: u64,
) -> Result<Vec<CallEffect>, String> {
    match action {
        CallAction::Start { .. } if !supported => Err(
            "This app cannot make calls: open this room's link in a browser to call.".to_owned(),
        ),
        CallAction::Start { .. } if !present => {
            Err("Your peer is not in the room, so there is nobody to call yet.".to_owned())
        }
        CallAction::Start { video } => {
            let id = CallId(uuid::Uuid::new_v4().as_u64_pair().0);
            call.start(id, video, now).map_err(|e| e.to_string())
        }
        CallAction::Accept { video } => call.accept(video, now).map_err(|e| e.to_string()),
        CallAction::Decline => call.decline(now).map_err(|e| e.to_string()),
        CallAction::HangUp => Ok(call.hang_up(now)),
        CallAction::SetMedia { muted, camera } => Ok(call.set_media(muted, camera)),
    }
}

/// Carries out one of the machine's effects.
fn apply(state: &mut CallState, effect: CallEffect, out: &mut CallOutputs) {
    match effect {
        CallEffect::Media(op) => {
            out.media.write(MediaCommand(op));
        }
        CallEffect::Send(signal) => {
            out.send.write(SendControl(Control::Call(signal)));
        }
        CallEffect::Ended(why) => {
            state.peer_muted = false;
            state.peer_camera = false;
            state.stats = CallStats::default();
            out.changed.write(CallChanged::Ended(why));
        }
        CallEffect::PeerMedia { muted, camera } => {
            state.peer_muted = muted;
            state.peer_camera = camera;
            out.changed.write(CallChanged::PeerMedia { muted, camera });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::NetEvent;
    use matchbox_socket::PeerId;

    use crate::net::testing::drain;

    fn app() -> App {
        let mut app = crate::net::testing::offline_app(None);
        app.init_resource::<PeerProfile>()
            .add_plugins(CallPlugin)
            // These tests are about the logic, not the platform: no devices, no connections.
            .insert_resource(CallsSupported(true));
        app
    }

    /// Moves every control message `from` sent to `to`.
    fn pass(from: &mut App, to: &mut App) {
        for SendControl(message) in drain::<SendControl>(from) {
            to.world_mut().write_message(ControlReceived(message));
        }
    }

    fn greet(app: &mut App) {
        app.world_mut().resource_mut::<PeerProfile>().hello = Some(crate::identity::PeerHello {
            key: duet_shared::trust::DeviceKey::from_seed([9; 32]).public(),
            name: "Peer".into(),
            safety_code: "000 000".into(),
        });
    }

    /// An app without call media refuses to call and turns a call down at once, in words on
    /// both sides.
    #[test]
    fn an_app_without_call_media_refuses_and_declines_in_words() {
        let (mut ada, mut desk) = (app(), app());
        desk.insert_resource(CallsSupported(false));
        greet(&mut ada);
        greet(&mut desk);
        desk.world_mut()
            .write_message(CallAction::Start { video: false });
        desk.update();
        assert!(matches!(
            drain::<CallChanged>(&mut desk)[..],
            [CallChanged::Refused(ref why)] if why.contains("in a browser")
        ));
        ada.world_mut()
            .write_message(CallAction::Start { video: true });
        ada.update();
        pass(&mut ada, &mut desk);
        desk.update();
        assert!(drain::<CallChanged>(&mut desk).contains(&CallChanged::Ended(CallEnd::CannotCall)));
        assert!(
            drain::<MediaCommand>(&mut desk).is_empty(),
            "no media without call media"
        );
        pass(&mut desk, &mut ada);
        ada.update();
        assert!(
            drain::<CallChanged>(&mut ada).contains(&CallChanged::Ended(CallEnd::PeerCannotCall))
        );
        assert_eq!(
            ada.world().resource::<CallState>().call.phase(),
            CallPhase::Idle
        );
    }

    /// Two apps back to back in memory (logic only; the real transport is tested in
    /// `tests/headless.rs`).
    #[test]
    fn a_call_rings_connects_through_the_media_layer_and_ends_when_the_peer_leaves() {
        let (mut ada, mut bob) = (app(), app());
        // Alone: nobody to call, said in words.
        ada.world_mut()
            .write_message(CallAction::Start { video: false });
        ada.update();
        assert!(matches!(
            drain::<CallChanged>(&mut ada)[..],
            [CallChanged::Refused(ref why)] if why.contains("not in the room")
        ));
        greet(&mut ada);
        greet(&mut bob);
        ada.world_mut()
            .write_message(CallAction::Start { video: false });
        ada.update();
        pass(&mut ada, &mut bob);
        bob.update();
        assert!(matches!(
            drain::<CallChanged>(&mut bob)[..],
            [CallChanged::Phase(CallPhase::Ringing { video: false, .. })]
        ));
        bob.world_mut()
            .write_message(CallAction::Accept { video: false });
        bob.update();
        // Bob's media layer is told to start, as the answering side.
        assert!(matches!(
            drain::<MediaCommand>(&mut bob)[..],
            [MediaCommand(MediaOp::Start { offerer: false, .. })]
        ));
        pass(&mut bob, &mut ada);
        ada.update();
        let started = drain::<MediaCommand>(&mut ada);
        let [
            MediaCommand(MediaOp::Start {
                call,
                offerer: true,
                ..
            }),
        ] = started[..]
        else {
            panic!("Ada should start media as the offerer: {started:?}");
        };
        // Ada's media layer offers; the offer reaches Bob's media layer.
        ada.world_mut()
            .write_message(MediaReport::LocalDescription {
                call,
                sdp: "v=0".into(),
            });
        ada.update();
        pass(&mut ada, &mut bob);
        bob.update();
        assert!(matches!(
            drain::<MediaCommand>(&mut bob)[..],
            [MediaCommand(MediaOp::RemoteDescription { offer: true, .. })]
        ));
        ada.world_mut().write_message(MediaReport::Connected(call));
        ada.update();
        assert_eq!(
            ada.world().resource::<CallState>().call.phase(),
            CallPhase::Active {
                call,
                offerer: true
            }
        );
        // Bob leaves: Ada's call ends and her media stops, with the reason.
        drain::<CallChanged>(&mut ada);
        ada.world_mut()
            .write_message(NetEvent::PeerLeft(PeerId(uuid::Uuid::nil())));
        ada.update();
        assert!(drain::<MediaCommand>(&mut ada).contains(&MediaCommand(MediaOp::Stop { call })));
        assert!(drain::<CallChanged>(&mut ada).contains(&CallChanged::Ended(CallEnd::PeerLeft)));
        assert_eq!(
            ada.world().resource::<CallState>().call.phase(),
            CallPhase::Idle
        );
    }
}
