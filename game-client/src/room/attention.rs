//! Never missing the peer: while the app is out of sight (a hidden tab, an unfocused window),
//! what the peer does — joining, a message, a file, a call — counts in the title ("(2) Duet"),
//! plays a short chime (which the person can turn off) and tells the platform, which shows a
//! system notification or asks for the window's attention. Looking again clears the count. A
//! ringing call rings audibly, seen or not, until it is answered or ends.

use super::*;
use crate::call::{CallChanged, CallState};
use crate::ports::{NotifyPermission, RING_EVERY_MS, Sound};
use bevy::window::PrimaryWindow;

/// The app's name in the title, after the count.
pub const APP_TITLE: &str = "Duet";

/// Least time between two chimes or notifications: a peer flooding messages (within the chat's
/// own rate limit) still counts each in the title, but the person hears and sees one at most
/// this often.
pub const ALERT_SPACING_MS: u64 = 1_000;

const SETTINGS_KEY: &str = "alert_settings";

/// Something the peer did while the person was not looking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// The peer joined (proved who they are).
    Joined(String),
    /// A chat message from the peer.
    Message(String),
    /// The peer sends a file.
    File {
        /// Who.
        from: String,
        /// The file's (sanitized) name.
        name: String,
    },
    /// The peer calls.
    Call(String),
}

impl Alert {
    /// A word for the kind, for automation.
    pub fn kind(&self) -> &'static str {
        match self {
            Alert::Joined(_) => "joined",
            Alert::Message(_) => "message",
            Alert::File { .. } => "file",
            Alert::Call(_) => "call",
        }
    }

    /// What the notification says. Never a message's text: a notification shows on a locked
    /// screen, where the room's content is nobody's business.
    pub fn body(&self) -> String {
        match self {
            Alert::Joined(who) => format!("{who} is here."),
            Alert::Message(who) => format!("{who} sent you a message."),
            Alert::File { from, name } => format!("{from} is sending you {name}."),
            Alert::Call(who) => format!("{who} is calling you."),
        }
    }
}

/// What the person chose about alerts, kept on this device.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSettings {
    /// Play the chime for what arrives out of sight.
    pub sound: bool,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self { sound: true }
    }
}

/// What the person missed, and whether they are looking.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unseen {
    /// Alerts since the person last looked.
    pub count: u32,
    /// Whether the app is in sight now.
    pub in_sight: bool,
    /// Whether system notifications may be shown (or may be asked for).
    pub permission: NotifyPermission,
}

impl Default for Unseen {
    fn default() -> Self {
        Self {
            count: 0,
            in_sight: true,
            permission: NotifyPermission::Unsupported,
        }
    }
}

/// The window's title for `unseen` alerts.
pub fn title_for(unseen: u32) -> String {
    if unseen == 0 {
        APP_TITLE.to_owned()
    } else {
        format!("({unseen}) {APP_TITLE}")
    }
}

/// An alert was raised (for automation: the title count, and whether a chime played).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct Alerted {
    /// What happened.
    pub alert: Alert,
    /// The count after it.
    pub unseen: u32,
    /// Whether the chime played.
    pub sound: bool,
    /// Whether the platform was told (a notification, the window's request for attention); not
    /// within [`ALERT_SPACING_MS`] of the last time.
    pub told: bool,
}

/// What the person asks of alerts (from the UI).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionAction {
    /// Chime or not.
    SetSound(bool),
    /// Ask for the system's notifications (right after their click).
    AskToNotify,
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Unseen>()
        .add_message::<Alerted>()
        .add_message::<AttentionAction>()
        .add_systems(
            Startup,
            |mut commands: Commands, pkv: Option<Res<PkvStore>>| {
                let settings = pkv
                    .and_then(|pkv| pkv.get::<AlertSettings>(SETTINGS_KEY).ok())
                    .unwrap_or_default();
                commands.insert_resource(settings);
            },
        )
        .add_systems(
            Update,
            (watch_sight, collect_alerts, ring, act, show_title)
                .chain()
                .in_set(FrameSet::Room),
        );
}

/// Whether the person sees the app: the platform says (a page), or else the window's focus.
/// Logic tests without either count as looking unless their window says otherwise.
fn watch_sight(
    host: Option<Res<Host>>,
    windows: Query<&Window, With<PrimaryWindow>>,
    mut unseen: ResMut<Unseen>,
) {
    let platform = host.as_deref().and_then(|h| h.attention.in_sight());
    let in_sight = platform
        .or_else(|| windows.single().ok().map(|w| w.focused))
        .unwrap_or(true);
    let permission = host
        .as_deref()
        .map_or(NotifyPermission::Unsupported, |h| h.attention.permission());
    let next = Unseen {
        count: if in_sight { 0 } else { unseen.count },
        in_sight,
        permission,
    };
    // Only a real change marks the resource changed (the title follows changes).
    if *unseen != next {
        *unseen = next;
    }
}

/// What the peer did this frame, as the core plugins reported it.
#[derive(bevy::ecs::system::SystemParam)]
struct PeerDoings<'w, 's> {
    identity: MessageReader<'w, 's, IdentityEvent>,
    chat: MessageReader<'w, 's, ChatChanged>,
    transfers: MessageReader<'w, 's, TransferEvent>,
    calls: MessageReader<'w, 's, CallChanged>,
    profile: Res<'w, PeerProfile>,
    presence: Res<'w, Presence>,
}

impl PeerDoings<'_, '_> {
    /// This frame's doings as alerts (all read, whether or not anyone is told).
    fn alerts(&mut self) -> Vec<Alert> {
        let Self {
            identity,
            chat,
            transfers,
            calls,
            profile,
            presence,
        } = self;
        // Named only when needed: most frames have nothing to tell.
        let peer = || {
            presence
                .peer_name()
                .map(str::to_owned)
                .or_else(|| profile.hello.as_ref().map(|h| h.name.clone()))
                .unwrap_or_else(|| "Your peer".to_owned())
        };
        let mut alerts = Vec::new();
        for event in identity.read() {
            if let IdentityEvent::PeerHello { name, .. } = event {
                alerts.push(Alert::Joined(name.clone()));
            }
        }
        for ChatChanged(entry) in chat.read() {
            if entry.delivery == crate::chat::Delivery::Received {
                alerts.push(Alert::Message(entry.author.clone()));
            }
        }
        for event in transfers.read() {
            match event {
                TransferEvent::Asked { name, .. }
                | TransferEvent::Started {
                    direction: Direction::Incoming,
                    name,
                    ..
                } => alerts.push(Alert::File {
                    from: peer(),
                    name: name.clone(),
                }),
                _ => {}
            }
        }
        for event in calls.read() {
            if let CallChanged::Phase(duet_shared::call::CallPhase::Ringing { .. }) = event {
                alerts.push(Alert::Call(peer()));
            }
        }
        alerts
    }
}

/// How the person is told: the platform, its window, their choice of sound.
#[derive(bevy::ecs::system::SystemParam)]
struct Telling<'w, 's> {
    host: Option<Res<'w, Host>>,
    window: Query<'w, 's, Entity, With<PrimaryWindow>>,
    settings: Option<Res<'w, AlertSettings>>,
}

/// Turns what the peer did into alerts while the person is not looking.
fn collect_alerts(
    mut doings: PeerDoings,
    telling: Telling,
    mut unseen: ResMut<Unseen>,
    mut alerted: MessageWriter<Alerted>,
    clock: Res<Time<Real>>,
    mut last_told_ms: Local<Option<u64>>,
) {
    let alerts = doings.alerts();
    if unseen.in_sight || alerts.is_empty() {
        return;
    }
    let Telling {
        host,
        window,
        settings,
    } = telling;
    let sound_on = settings.is_none_or(|s| s.sound);
    for alert in alerts {
        unseen.count = unseen.count.saturating_add(1);
        let now = clock.elapsed().as_millis() as u64;
        // A call is always told: it rings only for a while.
        let tell = matches!(alert, Alert::Call(_))
            || last_told_ms.is_none_or(|at| now.saturating_sub(at) >= ALERT_SPACING_MS);
        // A call has its own sound (`ring`).
        let sound = tell && sound_on && !matches!(alert, Alert::Call(_));
        if tell {
            *last_told_ms = Some(now);
            if let Some(host) = host.as_deref() {
                if let Ok(window) = window.single() {
                    host.attention.notify(window, APP_TITLE, &alert.body());
                }
                if sound {
                    host.attention.play(Sound::Chime);
                }
            }
        }
        alerted.write(Alerted {
            alert,
            unseen: unseen.count,
            sound,
            told: tell,
        });
    }
}

/// Rings while a call rings, every [`RING_EVERY_MS`], in sight or not: a call is meant to be
/// heard.
fn ring(
    call: Res<CallState>,
    host: Option<Res<Host>>,
    clock: Res<Time<Real>>,
    mut next_ms: Local<Option<u64>>,
) {
    let ringing = matches!(
        call.call.phase(),
        duet_shared::call::CallPhase::Ringing { .. }
    );
    if !ringing {
        *next_ms = None;
        return;
    }
    let now = clock.elapsed().as_millis() as u64;
    if next_ms.is_none_or(|at| now >= at) {
        *next_ms = Some(now + RING_EVERY_MS);
        if let Some(host) = host.as_deref() {
            host.attention.play(Sound::Ring);
        }
    }
}

fn act(
    mut actions: MessageReader<AttentionAction>,
    mut settings: Option<ResMut<AlertSettings>>,
    mut pkv: Option<ResMut<PkvStore>>,
    host: Option<Res<Host>>,
) {
    for action in actions.read() {
        match action {
            AttentionAction::SetSound(on) => {
                if let Some(settings) = settings.as_deref_mut() {
                    settings.sound = *on;
                    if let Some(pkv) = pkv.as_deref_mut()
                        && let Err(e) = pkv.set(SETTINGS_KEY, &*settings)
                    {
                        warn!("could not keep the alert settings: {e}");
                    }
                }
            }
            AttentionAction::AskToNotify => {
                if let Some(host) = host.as_deref() {
                    host.attention.ask_permission();
                }
            }
        }
    }
}

/// The title carries the count: the window's own (the desktop) and the page's tab.
fn show_title(
    unseen: Res<Unseen>,
    host: Option<Res<Host>>,
    mut windows: Query<&mut Window, With<PrimaryWindow>>,
) {
    if !unseen.is_changed() {
        return;
    }
    let title = title_for(unseen.count);
    if let Ok(mut window) = windows.single_mut()
        && window.title != title
    {
        window.title.clone_from(&title);
    }
    if let Some(host) = host.as_deref() {
        host.attention.show_title(&title);
    }
}
