//! Who I am: a random UUID and a display name, created on first start and kept on this device.
//!
//! There is no account: the identity is what lets the signaling server recognise a reload (and a
//! ban), and what the peer sees in `Hello`. Renaming persists and is announced to the peer.

use bevy::prelude::*;
use bevy_pkv::PkvStore;
use duet_shared::peer::{Control, MAX_DISPLAY_NAME_CHARS, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::frame::FrameSet;
use crate::net::{ControlReceived, NetEvent, SendControl, SignalingIdentity};
use crate::ports::Capabilities;

const KEY: &str = "identity";

/// This device's identity.
#[derive(Resource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Stable random id.
    pub id: Uuid,
    /// Display name shown to the peer.
    pub name: String,
}

/// What the peer told us about themselves.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerProfile {
    /// Their identity and name, once their `Hello` arrived.
    pub hello: Option<(Uuid, String)>,
    /// Set when their protocol version differs from ours: nothing else is exchanged.
    pub incompatible: Option<u16>,
}

/// Change my display name.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct Rename(pub String);

/// Something about identities happened (for the UI and the headless event log).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub enum IdentityEvent {
    /// My name changed (after cleaning).
    Renamed(String),
    /// The peer introduced themselves.
    PeerHello {
        /// Their identity.
        identity: Uuid,
        /// Their name.
        name: String,
    },
    /// The peer changed their name.
    PeerRenamed(String),
    /// The peer speaks another protocol version.
    VersionMismatch {
        /// Their version.
        theirs: u16,
    },
}

/// Loads or creates the identity; says hello; handles renames both ways.
pub struct IdentityPlugin;

impl Plugin for IdentityPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Capabilities>()
            .add_message::<Rename>()
            .add_message::<IdentityEvent>()
            .init_resource::<PeerProfile>()
            .add_systems(PreStartup, load_or_create)
            .add_systems(
                Update,
                (greet_peer, receive_profile, rename)
                    .chain()
                    .in_set(FrameSet::Core),
            );
    }
}

/// Trims and cuts a display name; never empty. Invisible and bidi characters go (a name must
/// show as what it is), and so does anything that reads like the app's own "(you)" label, so the
/// peer cannot be shown as "Ada (you)".
pub fn clean_name(name: &str) -> String {
    let mut visible = duet_shared::names::visible_text(name);
    loop {
        let lower = visible.to_lowercase();
        let Some(at) = ["(you)", "（you）", "[you]"]
            .iter()
            .find_map(|label| lower.find(label).map(|i| (i, label.len())))
        else {
            break;
        };
        // Lowercasing can change byte lengths; only cut where both agree.
        if lower.len() != visible.len() {
            visible = visible.replace(['(', ')', '（', '）', '[', ']'], "");
            break;
        }
        visible.replace_range(at.0..at.0 + at.1, "");
    }
    let cleaned: String = visible.chars().take(MAX_DISPLAY_NAME_CHARS).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        "Guest".to_owned()
    } else {
        cleaned.to_owned()
    }
}

fn load_or_create(mut commands: Commands, mut pkv: ResMut<PkvStore>) {
    let identity = match pkv.get::<Identity>(KEY) {
        Ok(identity) => identity,
        Err(_) => {
            let id = Uuid::new_v4();
            let identity = Identity {
                id,
                name: format!("Guest {}", &id.simple().to_string()[..4]),
            };
            if let Err(e) = pkv.set(KEY, &identity) {
                error!("could not save the new identity: {e}");
            }
            identity
        }
    };
    commands.insert_resource(SignalingIdentity(identity.id));
    commands.insert_resource(identity);
}

fn hello(identity: &Identity) -> Control {
    Control::Hello {
        version: PROTOCOL_VERSION,
        identity: identity.id,
        name: identity.name.clone(),
    }
}

fn greet_peer(
    identity: Res<Identity>,
    capabilities: Res<Capabilities>,
    mut net: MessageReader<NetEvent>,
    mut profile: ResMut<PeerProfile>,
    mut send: MessageWriter<SendControl>,
) {
    for event in net.read() {
        match event {
            NetEvent::PeerJoined(_) => {
                *profile = PeerProfile::default();
                send.write(SendControl(hello(&identity)));
                // What this side's WebRTC stack takes; the wire layer reads the peer's.
                send.write(SendControl(Control::Frames {
                    chunks: capabilities.frame_chunks as u8,
                }));
            }
            NetEvent::PeerLeft(_) => *profile = PeerProfile::default(),
            _ => {}
        }
    }
}

fn receive_profile(
    mut received: MessageReader<ControlReceived>,
    mut profile: ResMut<PeerProfile>,
    mut events: MessageWriter<IdentityEvent>,
) {
    for ControlReceived(message) in received.read() {
        match message {
            Control::Hello {
                version,
                identity,
                name,
            } => {
                if *version != PROTOCOL_VERSION {
                    profile.incompatible = Some(*version);
                    events.write(IdentityEvent::VersionMismatch { theirs: *version });
                    continue;
                }
                let name = clean_name(name);
                profile.hello = Some((*identity, name.clone()));
                events.write(IdentityEvent::PeerHello {
                    identity: *identity,
                    name,
                });
            }
            Control::Rename { name } => {
                if let Some((_, current)) = profile.hello.as_mut() {
                    *current = clean_name(name);
                    events.write(IdentityEvent::PeerRenamed(current.clone()));
                }
            }
            _ => {}
        }
    }
}

fn rename(
    mut requests: MessageReader<Rename>,
    mut identity: ResMut<Identity>,
    mut pkv: ResMut<PkvStore>,
    profile: Res<PeerProfile>,
    mut send: MessageWriter<SendControl>,
    mut events: MessageWriter<IdentityEvent>,
) {
    for Rename(name) in requests.read() {
        identity.name = clean_name(name);
        if let Err(e) = pkv.set(KEY, &*identity) {
            error!("could not save the new name: {e}");
        }
        events.write(IdentityEvent::Renamed(identity.name.clone()));
        if profile.hello.is_some() {
            send.write(SendControl(Control::Rename {
                name: identity.name.clone(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(dir: &std::path::Path) -> App {
        let mut app = crate::net::testing::offline_app(Some(dir));
        app.add_plugins(IdentityPlugin);
        app
    }

    #[test]
    fn identity_is_created_once_and_renames_persist() {
        let dir = duet_tests::temp_dir("identity").unwrap();
        let first = {
            let mut app = app(&dir);
            app.update();
            let first = app.world().resource::<Identity>().clone();
            assert!(first.name.starts_with("Guest"));
            app.world_mut().write_message(Rename("  Ada\u{7}  ".into()));
            app.update();
            assert_eq!(app.world().resource::<Identity>().name, "Ada");
            first
        };
        let mut again = app(&dir);
        again.update();
        let reloaded = again.world().resource::<Identity>();
        assert_eq!(reloaded.id, first.id, "same identity after restart");
        assert_eq!(reloaded.name, "Ada", "rename persisted");
    }

    #[test]
    fn names_show_as_what_they_are() {
        assert_eq!(clean_name("Ada\u{202E}\u{200B}"), "Ada");
        assert_eq!(clean_name("Ada (you)"), "Ada");
        assert_eq!(clean_name("Ada (YOU) (you)"), "Ada");
        assert_eq!(clean_name("Ada （you）"), "Ada");
        assert_eq!(clean_name("(yo(you)u)"), "Guest");
        assert_eq!(clean_name("\u{200B}\u{2066}"), "Guest");
        assert_eq!(clean_name("Zoë 日本"), "Zoë 日本");
    }

    #[test]
    fn hello_is_sent_on_join_and_version_mismatch_is_reported() {
        let dir = duet_tests::temp_dir("identity-hello").unwrap();
        let mut app = app(&dir);
        app.update();
        let peer = matchbox_socket::PeerId(Uuid::new_v4());
        app.world_mut().write_message(NetEvent::PeerJoined(peer));
        app.update();
        let sent: Vec<SendControl> = app
            .world_mut()
            .resource_mut::<Messages<SendControl>>()
            .drain()
            .collect();
        assert!(matches!(
            sent.as_slice(),
            [
                SendControl(Control::Hello {
                    version: PROTOCOL_VERSION,
                    ..
                }),
                SendControl(Control::Frames { .. })
            ]
        ));
        app.world_mut()
            .write_message(ControlReceived(Control::Hello {
                version: PROTOCOL_VERSION + 1,
                identity: Uuid::new_v4(),
                name: "Future".into(),
            }));
        app.update();
        let profile = app.world().resource::<PeerProfile>();
        assert_eq!(profile.incompatible, Some(PROTOCOL_VERSION + 1));
        assert!(profile.hello.is_none());
    }
}
