//! The owner's rights: kick or ban the peer, and free a seat of a full room from outside.

use super::*;

/// Kick or ban the peer (owner only).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moderate(pub Moderation);

/// Who holds the seats of my own room while it refuses me as full (the owner-only members
/// call), so that I can free one from outside: a stranger with the link holding both seats
/// would otherwise lock me out, since kicking needs a peer id only visible from inside.
/// Empty otherwise.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct SeatHolders {
    /// Oldest first.
    pub members: Vec<duet_shared::api::SeatHolder>,
}

/// Free a seat of my full room: remove or ban whoever holds it (room owner only).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeSeat {
    /// The seat holder's signaling id.
    pub peer: PeerId,
    /// Kick or ban.
    pub action: Moderation,
}

/// My own room refused me as full: ask who holds its seats (see [`SeatHolders`]).
pub(super) fn ask_seat_holders(room: Option<&CurrentRoom>, calls: &mut MessageWriter<ApiCall>) {
    if let Some(room) = room
        && let Some(owner_key) = &room.owner_key
    {
        calls.write(ApiCall::Members {
            room: room.room.clone(),
            owner_key: owner_key.clone(),
        });
    }
}

pub(super) fn free_seat(
    mut asks: MessageReader<FreeSeat>,
    room: Option<Res<CurrentRoom>>,
    mut calls: MessageWriter<ApiCall>,
) {
    for ask in asks.read() {
        if let Some(room) = room.as_deref()
            && let Some(owner_key) = &room.owner_key
        {
            calls.write(ApiCall::Moderate {
                room: room.room.clone(),
                owner_key: owner_key.clone(),
                peer: ask.peer,
                action: ask.action,
            });
        }
    }
}

pub(super) fn moderate(
    mut asks: MessageReader<Moderate>,
    room: Option<Res<CurrentRoom>>,
    presence: Res<Presence>,
    mut calls: MessageWriter<ApiCall>,
    mut notices: ResMut<Notices>,
) {
    for Moderate(action) in asks.read() {
        let Some(owner_key) = room.as_ref().and_then(|r| r.owner_key.clone()) else {
            notices.post("Only the person who created this room can remove someone from it.");
            continue;
        };
        let Some(peer) = presence.peer_id else {
            notices.post("Your peer is not in the room.");
            continue;
        };
        calls.write(ApiCall::Moderate {
            room: room.as_ref().map(|r| r.room.clone()).unwrap_or_default(),
            owner_key,
            peer,
            action: *action,
        });
    }
}
