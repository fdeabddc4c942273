//! The people this device has met: who a proven key was before, and whether the person compared
//! the safety code with them.
//!
//! Kept on the device only ([`Contacts`], at most [`MAX_CONTACTS`], the least recently seen go
//! first). When a peer proves its key, [`ContactEvent::Met`] says where it stands: never met, met
//! before (and since when), or — the case this module exists for — a new key under the name of
//! someone met before: not the person met before. A new key under the name of someone the person
//! *verified* is refused: this side leaves the room until the person decides (forgets the old
//! contact and joins again).

use bevy::prelude::*;
use bevy_pkv::PkvStore;
use duet_shared::trust::PublicKey;
use serde::{Deserialize, Serialize};

use crate::frame::FrameSet;
use crate::identity::{IdentityEvent, PeerProfile};
use crate::net::Disconnect;

/// Where the list is kept.
const KEY: &str = "contacts";
/// Most contacts kept: a person meets far fewer; a flood of new keys (a stranger reconnecting
/// with fresh identities) cannot grow the store without end.
pub const MAX_CONTACTS: usize = 500;

/// One person met before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Their long-term key: who they are.
    pub key: PublicKey,
    /// The name they last gave.
    pub name: String,
    /// The name this person gave them here, if any (shown instead of `name`).
    #[serde(default)]
    pub petname: Option<String>,
    /// First met (ms since the epoch).
    pub first_seen_ms: u64,
    /// Last met (ms since the epoch).
    pub last_seen_ms: u64,
    /// The person compared the safety code with them.
    #[serde(default)]
    pub verified: bool,
}

impl Contact {
    /// The name to show: the person's own for them, else theirs.
    pub fn shown_name(&self) -> &str {
        self.petname.as_deref().unwrap_or(&self.name)
    }
}

/// Everyone met, most recently seen first.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contacts(pub Vec<Contact>);

impl Contacts {
    /// The contact with this key.
    pub fn get(&self, key: &PublicKey) -> Option<&Contact> {
        self.0.iter().find(|c| &c.key == key)
    }

    /// Records a meeting at `now_ms` and says where the peer stands, from what was known before.
    pub fn meet(&mut self, key: PublicKey, name: &str, now_ms: u64) -> Standing {
        let standing = self.standing(&key, name);
        self.record(key, name, now_ms);
        standing
    }

    /// Records a meeting at `now_ms`: the contact moves to the front, new or not.
    fn record(&mut self, key: PublicKey, name: &str, now_ms: u64) {
        match self.0.iter().position(|c| c.key == key) {
            Some(index) => {
                let mut contact = self.0.remove(index);
                contact.name = name.to_owned();
                contact.last_seen_ms = now_ms;
                self.0.insert(0, contact);
            }
            None => self.0.insert(
                0,
                Contact {
                    key,
                    name: name.to_owned(),
                    petname: None,
                    first_seen_ms: now_ms,
                    last_seen_ms: now_ms,
                    verified: false,
                },
            ),
        }
        self.0.truncate(MAX_CONTACTS);
    }

    /// Where a peer proving `key` under `name` stands, without recording anything.
    pub fn standing(&self, key: &PublicKey, name: &str) -> Standing {
        if let Some(known) = self.get(key) {
            return Standing::Known {
                since_ms: known.first_seen_ms,
                verified: known.verified,
            };
        }
        let same_name = |c: &&Contact| {
            c.name.to_lowercase() == name.to_lowercase()
                || c.petname
                    .as_ref()
                    .is_some_and(|p| p.to_lowercase() == name.to_lowercase())
        };
        // A verified namesake outweighs one merely met.
        let namesake = self
            .0
            .iter()
            .filter(same_name)
            .max_by_key(|c| (c.verified, c.last_seen_ms));
        match namesake {
            Some(other) => Standing::NotTheOneMet {
                known_since_ms: other.first_seen_ms,
                verified: other.verified,
            },
            None => Standing::New,
        }
    }

    /// Marks `key` verified (the person compared the code); false if it is not a contact.
    pub fn verify(&mut self, key: &PublicKey) -> bool {
        match self.0.iter_mut().find(|c| &c.key == key) {
            Some(contact) => {
                contact.verified = true;
                true
            }
            None => false,
        }
    }
}

/// Where a peer who just proved its key stands for this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Standing {
    /// Never met: "new unknown user".
    New,
    /// Met before.
    Known {
        /// First met (ms since the epoch).
        since_ms: u64,
        /// The person compared the safety code with them.
        verified: bool,
    },
    /// A key never met, under the name of someone met before: not that person.
    NotTheOneMet {
        /// When the one met before was first met.
        known_since_ms: u64,
        /// Whether the one met before was verified (then this side refuses the newcomer).
        verified: bool,
    },
}

/// What the person does with the list.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub enum ContactAction {
    /// "I compared the code": the peer in the room is verified.
    VerifyPeer,
    /// Give a contact a name of the person's own (empty: back to theirs).
    Rename {
        /// Whom.
        key: PublicKey,
        /// The new name.
        name: String,
    },
    /// Forget a contact: the next meeting is with a new unknown user.
    Forget {
        /// Whom.
        key: PublicKey,
    },
}

/// Something about contacts happened (for the room and the automation log).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub enum ContactEvent {
    /// The peer who proved `key` stands so.
    Met {
        /// Their key.
        key: PublicKey,
        /// The name they gave.
        name: String,
        /// Where they stand.
        standing: Standing,
    },
    /// The peer is verified now.
    Verified {
        /// Their key.
        key: PublicKey,
    },
    /// A newcomer wore the name of a verified contact: this side left the room.
    Refused {
        /// The name they wore.
        name: String,
    },
}

/// Keeps the list, tells where each peer stands, and carries out the person's actions.
pub struct ContactsPlugin;

impl Plugin for ContactsPlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<ContactAction>()
            .add_message::<ContactEvent>()
            .init_resource::<Contacts>()
            .add_systems(PreStartup, load)
            .add_systems(Update, (meet, act).chain().in_set(FrameSet::Core));
    }
}

fn load(mut contacts: ResMut<Contacts>, pkv: Option<Res<PkvStore>>) {
    if let Some(stored) = pkv.and_then(|pkv| pkv.get::<Contacts>(KEY).ok()) {
        *contacts = stored;
        contacts.0.truncate(MAX_CONTACTS);
    }
}

fn save(contacts: &Contacts, pkv: Option<&mut PkvStore>) {
    if let Some(pkv) = pkv
        && let Err(e) = pkv.set(KEY, contacts)
    {
        error!("could not save the contacts: {e}");
    }
}

fn meet(
    mut hellos: MessageReader<IdentityEvent>,
    mut contacts: ResMut<Contacts>,
    mut pkv: Option<ResMut<PkvStore>>,
    mut events: MessageWriter<ContactEvent>,
    mut leave: MessageWriter<Disconnect>,
) {
    for hello in hellos.read() {
        let IdentityEvent::PeerHello { key, name, .. } = hello else {
            continue;
        };
        let standing = contacts.standing(key, name);
        if let Standing::NotTheOneMet { verified: true, .. } = standing {
            // Refused until the person decides: nothing is recorded for the newcomer.
            events.write(ContactEvent::Refused { name: name.clone() });
            leave.write(Disconnect);
            continue;
        }
        contacts.record(*key, name, crate::util::now_ms());
        save(&contacts, pkv.as_deref_mut());
        events.write(ContactEvent::Met {
            key: *key,
            name: name.clone(),
            standing,
        });
    }
}

fn act(
    mut actions: MessageReader<ContactAction>,
    mut contacts: ResMut<Contacts>,
    profile: Res<PeerProfile>,
    mut pkv: Option<ResMut<PkvStore>>,
    mut events: MessageWriter<ContactEvent>,
) {
    for action in actions.read() {
        match action {
            ContactAction::VerifyPeer => {
                let Some(hello) = &profile.hello else {
                    continue;
                };
                if contacts.verify(&hello.key) {
                    events.write(ContactEvent::Verified { key: hello.key });
                }
            }
            ContactAction::Rename { key, name } => {
                let petname = (!name.trim().is_empty()).then(|| crate::identity::clean_name(name));
                if let Some(contact) = contacts.0.iter_mut().find(|c| &c.key == key) {
                    contact.petname = petname.filter(|p| *p != contact.name);
                }
            }
            ContactAction::Forget { key } => contacts.0.retain(|c| &c.key != key),
        }
        save(&contacts, pkv.as_deref_mut());
    }
}

#[cfg(test)]
mod tests;
