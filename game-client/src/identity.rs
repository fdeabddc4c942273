//! Who I am, and who the peer proved to be.
//!
//! There is no account. A device has a long-term Ed25519 key, made on first start and kept on
//! the device, and a display name the person can change. The key is what peers remember: the
//! signaling server only ever sees a per-room key derived from it (see `duet_shared::trust`).
//! Each connection starts with the authenticated hello (`duet_shared::handshake`): nothing the
//! peer says is taken, and no name is shown, before its proof over this very connection
//! verified. A proof that does not verify ends the connection with a warning: someone may be in
//! the middle.

use bevy::prelude::*;
use bevy_pkv::PkvStore;
use duet_shared::handshake::HandshakeError;
use duet_shared::peer::{Control, MAX_DISPLAY_NAME_CHARS, PROTOCOL_VERSION};
use duet_shared::trust::{DeviceKey, PublicKey, SEED_BYTES};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::frame::FrameSet;
use crate::net::{
    ControlReceived, Disconnect, NetEvent, RebuildSocket, SendControl, SignalingIdentity,
};
use crate::ports::Capabilities;

const KEY: &str = "identity";
/// Where the device key's seed is kept, beside (not inside) the name: identities from before
/// keys existed keep their record as it was and gain a key on first start.
const DEVICE_KEY: &str = "device_key";

/// The stored record: the name, and the UUID earlier versions were known by.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    id: Uuid,
    name: String,
}

/// This device's identity.
#[derive(Resource, Debug, Clone)]
pub struct Identity {
    /// The UUID of the public key: stable for this device, used where a short stable id is
    /// wanted (the avatar's colour, automation reports).
    pub id: Uuid,
    /// Display name shown to the peer.
    pub name: String,
    /// The long-term key. Secret; its public half is who this device is.
    pub key: DeviceKey,
}

impl Identity {
    /// Who this device is to its peers.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }
}

/// Who the peer proved to be on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHello {
    /// Its long-term key.
    pub key: PublicKey,
    /// Its name (cleaned).
    pub name: String,
    /// The code both people see when nobody is in the middle.
    pub safety_code: String,
}

/// What the peer told us about themselves.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerProfile {
    /// Who they are, once their proof verified.
    pub hello: Option<PeerHello>,
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
    /// The peer proved who it is.
    PeerHello {
        /// The UUID of its key.
        identity: Uuid,
        /// Its key.
        key: PublicKey,
        /// Its name.
        name: String,
        /// The code both people can compare.
        safety_code: String,
    },
    /// The peer changed their name.
    PeerRenamed(String),
    /// The peer speaks another protocol version.
    VersionMismatch {
        /// Their version.
        theirs: u16,
    },
    /// The peer's hello did not verify: the connection was closed.
    HelloFailed(HandshakeError),
}

/// Loads or creates the identity; runs the authenticated hello; handles renames both ways.
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
                (meet_peer, receive_profile, rename)
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
    let key = match pkv.get::<[u8; SEED_BYTES]>(DEVICE_KEY) {
        Ok(seed) => DeviceKey::from_seed(seed),
        Err(_) => {
            let key = DeviceKey::from_seed(crate::net::random());
            if let Err(e) = pkv.set(DEVICE_KEY, &key.seed()) {
                error!("could not save the new device key: {e}");
            }
            key
        }
    };
    let id = key.public().uuid();
    let name = match pkv.get::<Stored>(KEY) {
        Ok(stored) => stored.name,
        Err(_) => {
            let name = format!("Guest {}", &id.simple().to_string()[..4]);
            if let Err(e) = pkv.set(
                KEY,
                &Stored {
                    id,
                    name: name.clone(),
                },
            ) {
                error!("could not save the new identity: {e}");
            }
            name
        }
    };
    commands.insert_resource(SignalingIdentity {
        key: key.clone(),
        name: name.clone(),
    });
    commands.insert_resource(Identity { id, name, key });
}

/// The connection's authenticated hello (run by the net layer as messages arrive) ended: the
/// peer is someone, or the connection is left with a warning (a hello that only ran out of
/// time is tried again on a fresh connection).
fn meet_peer(
    mut net: MessageReader<NetEvent>,
    mut profile: ResMut<PeerProfile>,
    mut events: MessageWriter<IdentityEvent>,
    (mut leave, mut rejoin): (MessageWriter<Disconnect>, MessageWriter<RebuildSocket>),
) {
    for event in net.read() {
        match event {
            NetEvent::PeerJoined(_) | NetEvent::PeerLeft(_) => *profile = PeerProfile::default(),
            NetEvent::PeerVerified(verified) => {
                let name = clean_name(&verified.name);
                events.write(IdentityEvent::PeerHello {
                    identity: verified.key.uuid(),
                    key: verified.key,
                    name: name.clone(),
                    safety_code: verified.safety_code.clone(),
                });
                profile.hello = Some(PeerHello {
                    key: verified.key,
                    name,
                    safety_code: verified.safety_code.clone(),
                });
            }
            NetEvent::HelloFailed(why) => {
                profile.hello = None;
                events.write(IdentityEvent::HelloFailed(why.clone()));
                if *why == HandshakeError::TimedOut {
                    // Nothing suggests an attack: meet again on a fresh connection.
                    rejoin.write(RebuildSocket);
                } else {
                    leave.write(Disconnect);
                }
            }
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
            Control::Hello { version, .. } if *version != PROTOCOL_VERSION => {
                profile.incompatible = Some(*version);
                events.write(IdentityEvent::VersionMismatch { theirs: *version });
            }
            Control::Rename { name } => {
                if let Some(hello) = profile.hello.as_mut() {
                    hello.name = clean_name(name);
                    events.write(IdentityEvent::PeerRenamed(hello.name.clone()));
                }
            }
            _ => {}
        }
    }
}

fn rename(
    mut requests: MessageReader<Rename>,
    (mut identity, mut signaling): (ResMut<Identity>, ResMut<SignalingIdentity>),
    mut pkv: ResMut<PkvStore>,
    profile: Res<PeerProfile>,
    mut send: MessageWriter<SendControl>,
    mut events: MessageWriter<IdentityEvent>,
) {
    for Rename(name) in requests.read() {
        identity.name = clean_name(name);
        let stored = Stored {
            id: identity.id,
            name: identity.name.clone(),
        };
        if let Err(e) = pkv.set(KEY, &stored) {
            error!("could not save the new name: {e}");
        }
        signaling.name.clone_from(&identity.name);
        events.write(IdentityEvent::Renamed(identity.name.clone()));
        if profile.hello.is_some() {
            send.write(SendControl(Control::Rename {
                name: identity.name.clone(),
            }));
        }
    }
}

/// For the logic tests of modules above this one.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Makes `app` see a verified peer called `name`, as if its proof had just checked out.
    pub fn verified_peer(app: &mut App, name: &str) {
        app.world_mut().resource_mut::<PeerProfile>().hello = Some(PeerHello {
            key: DeviceKey::from_seed([42; SEED_BYTES]).public(),
            name: name.to_owned(),
            safety_code: "000 000".to_owned(),
        });
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
        assert_eq!(reloaded.public(), first.public(), "same key after restart");
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
    fn a_verified_peer_is_someone_and_a_failed_hello_leaves() {
        let dir = duet_tests::temp_dir("identity-meet").unwrap();
        let mut app = app(&dir);
        app.update();
        let key = DeviceKey::from_seed([2; SEED_BYTES]).public();
        app.world_mut()
            .write_message(NetEvent::PeerVerified(duet_shared::handshake::Verified {
                key,
                name: "Bob\u{202E}".into(),
                safety_code: "123 456".into(),
            }));
        app.update();
        let hello = app.world().resource::<PeerProfile>().hello.clone().unwrap();
        assert_eq!(
            (hello.key, hello.name.as_str()),
            (key, "Bob"),
            "the name is cleaned"
        );
        let events = crate::net::testing::drain::<IdentityEvent>(&mut app);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, IdentityEvent::PeerHello { key: k, .. } if *k == key))
        );
        app.world_mut()
            .write_message(NetEvent::HelloFailed(HandshakeError::Intercepted));
        app.update();
        assert!(app.world().resource::<PeerProfile>().hello.is_none());
        assert_eq!(crate::net::testing::drain::<Disconnect>(&mut app).len(), 1);
        assert!(
            crate::net::testing::drain::<IdentityEvent>(&mut app)
                .contains(&IdentityEvent::HelloFailed(HandshakeError::Intercepted))
        );
        assert!(crate::net::testing::drain::<RebuildSocket>(&mut app).is_empty());
        // A hello that only ran out of time is tried again, not left.
        app.world_mut()
            .write_message(NetEvent::HelloFailed(HandshakeError::TimedOut));
        app.update();
        assert_eq!(
            crate::net::testing::drain::<RebuildSocket>(&mut app).len(),
            1
        );
        assert!(crate::net::testing::drain::<Disconnect>(&mut app).is_empty());
    }

    #[test]
    fn an_identity_from_before_keys_keeps_its_name_and_gains_a_key() {
        let dir = duet_tests::temp_dir("identity-migrate").unwrap();
        {
            // What the previous version stored, and nothing else.
            let mut pkv = bevy_pkv::PkvStore::new_in_dir(&dir);
            let old = Stored {
                id: Uuid::new_v4(),
                name: "Ada".into(),
            };
            pkv.set(KEY, &old).unwrap();
        }
        let key = {
            let mut app = app(&dir);
            app.update();
            let identity = app.world().resource::<Identity>();
            assert_eq!(identity.name, "Ada");
            identity.public()
        };
        let mut again = app(&dir);
        again.update();
        assert_eq!(
            again.world().resource::<Identity>().public(),
            key,
            "the key is kept"
        );
    }

    #[test]
    fn version_mismatch_is_reported() {
        let dir = duet_tests::temp_dir("identity-hello").unwrap();
        let mut app = app(&dir);
        app.update();
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
