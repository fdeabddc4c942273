//! Files in the room: the drop zone over the peer's avatar, the transfer rows and the
//! received-files list that survives a restart.

use super::*;

pub(super) const RECEIVED_KEY: &str = "received_files";

/// Received files listed (oldest leave the list first; on the desktop the files stay in the
/// downloads folder).
pub const MAX_RECEIVED_LISTED: usize = crate::storage::MAX_RECEIVED_KEPT;

/// Transfer rows shown; the oldest finished ones go first.
pub const MAX_ROWS: usize = 100;

/// A file is being dragged over the window: the peer's avatar shows as a drop zone.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct DropZone {
    /// A drag is over the window.
    pub dragging: bool,
    /// The cursor is over the peer's avatar (drop sends).
    pub over_peer: bool,
}

/// One transfer in the list.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRow {
    /// Transfer id.
    pub id: TransferId,
    /// Which way.
    pub direction: Direction,
    /// File name.
    pub name: String,
    /// Bytes in total.
    pub size: u64,
    /// Bytes done.
    pub done: u64,
    /// Bytes per second, when known.
    pub rate: f64,
    /// Seconds left, when known.
    pub eta: Option<f64>,
    /// Running, done or failed.
    pub state: RowState,
}

impl TransferRow {
    /// 0..=1.
    pub fn fraction(&self) -> f32 {
        if self.size == 0 {
            1.0
        } else {
            (self.done as f64 / self.size as f64).clamp(0.0, 1.0) as f32
        }
    }
}

/// Where a transfer stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RowState {
    /// The peer offers it and the person has not said yes or no yet (incoming).
    Asking,
    /// Offered; the peer has not accepted it yet (outgoing).
    AwaitingPeer,
    /// Bytes are moving.
    Running,
    /// Stopped with its bytes kept: the same file sent again resumes (incoming); the
    /// sentence says why it stopped.
    Paused(TransferEnd),
    /// Done; for incoming files, where it was saved.
    Done(String),
    /// Ended without a file; the sentence says why (and whether it resumes).
    Failed(TransferEnd),
}

impl RowState {
    /// Nothing more happens to it without the person or the peer starting it again.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Done(_) | Self::Failed(_) | Self::Paused(_))
    }
}

/// Transfers of this session, newest last.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct TransferList {
    /// Rows.
    pub rows: Vec<TransferRow>,
}

impl TransferList {
    /// Progress (0..=1) of the running transfer going `direction`, for the avatar ring.
    pub fn running(&self, direction: Direction) -> Option<f32> {
        self.rows
            .iter()
            .rev()
            .find(|r| r.direction == direction && r.state == RowState::Running)
            .map(TransferRow::fraction)
    }
}

/// A file I received, kept across restarts and after the peer leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedFile {
    /// File name as saved.
    pub name: String,
    /// Where it is on disk.
    pub location: String,
    /// Size in bytes.
    pub size: u64,
    /// Who sent it.
    pub from: String,
    /// Room it came through.
    pub room: String,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

/// Files received (persisted).
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedFiles {
    /// Newest last.
    pub files: Vec<ReceivedFile>,
}

/// A file drag entered (true) or left (false) the window; `at` is the cursor in world space.
#[derive(Message, Debug, Clone, PartialEq)]
pub struct FileHover {
    /// Dragging now.
    pub active: bool,
    /// Cursor position in world coordinates, when known.
    pub at: Option<Vec2>,
}

/// A file was dropped at `at` (world coordinates, when known).
#[derive(Message, Debug, Clone, PartialEq)]
pub struct FileDropped {
    /// The file.
    pub path: PathBuf,
    /// Cursor position in world coordinates.
    pub at: Option<Vec2>,
}

pub(super) fn drops(
    mut hovers: MessageReader<FileHover>,
    mut dropped: MessageReader<FileDropped>,
    mut zone: ResMut<DropZone>,
    presence: Res<Presence>,
    mut send: MessageWriter<SendFile>,
    mut notices: ResMut<Notices>,
) {
    for hover in hovers.read() {
        zone.dragging = hover.active;
        zone.over_peer = hover.active && hover.at.and_then(avatar_at) == Some(Who::Peer);
    }
    for drop in dropped.read() {
        zone.dragging = false;
        zone.over_peer = false;
        let target = drop.at.and_then(avatar_at);
        match (target, presence.peer_name()) {
            (Some(Who::Peer), Some(_)) => {
                send.write(SendFile(drop.path.clone()));
            }
            (_, None) => notices.post(
                "Your peer is not in the room, so nothing was sent. Files go straight to them, never to a server.",
            ),
            (_, Some(name)) => notices.post(format!("Drop the file on {name}'s avatar to send it.")),
        }
    }
}

pub(super) fn transfers(
    mut events: MessageReader<TransferEvent>,
    mut list: ResMut<TransferList>,
    mut received: ResMut<ReceivedFiles>,
    mut pkv: ResMut<PkvStore>,
    mut notices: ResMut<Notices>,
    presence: Res<Presence>,
    room: Option<Res<CurrentRoom>>,
) {
    let mut received_changed = false;
    for event in events.read() {
        let row = list.apply(event);
        if let Some(notice) = notice(event, presence.peer_name()) {
            notices.post(notice);
        }
        if let TransferEvent::Completed {
            direction: Direction::Incoming,
            location,
            ..
        } = event
        {
            let (name, size) = row.map(|r| (r.name.clone(), r.size)).unwrap_or_default();
            let saved_name = std::path::Path::new(location)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(name);
            received.files.push(ReceivedFile {
                name: saved_name,
                location: location.clone(),
                size,
                from: presence.peer_name().unwrap_or("your peer").to_owned(),
                room: room.as_ref().map(|r| r.room.clone()).unwrap_or_default(),
                at_ms: crate::util::now_ms(),
            });
            received_changed = true;
        }
    }
    // A flood of tiny files costs one save per frame, of a bounded list, not one per file.
    if received_changed {
        let over = received.files.len().saturating_sub(MAX_RECEIVED_LISTED);
        received.files.drain(..over);
        if let Err(e) = pkv.set(RECEIVED_KEY, &*received) {
            notices.post(format!("Could not save the list of received files: {e}"));
        }
    }
    // Finished rows beyond the newest MAX_ROWS leave the list, oldest first; open ones stay.
    if list.rows.len() > MAX_ROWS {
        let mut excess = list.rows.len() - MAX_ROWS;
        list.rows.retain(|r| {
            let drop = excess > 0 && r.state.is_closed();
            excess -= usize::from(drop);
            !drop
        });
    }
}

impl TransferList {
    /// Brings the row an event is about up to date (a start or an offer adds it) and returns
    /// it.
    fn apply(&mut self, event: &TransferEvent) -> Option<&TransferRow> {
        let row = match event {
            TransferEvent::Started {
                id,
                direction,
                name,
                size,
                resumed_from,
            } => {
                let state = match direction {
                    Direction::Outgoing => RowState::AwaitingPeer,
                    Direction::Incoming => RowState::Running,
                };
                return Some(self.add(*id, *direction, name, *size, *resumed_from, state));
            }
            TransferEvent::Asked { id, name, size } => {
                return Some(self.add(*id, Direction::Incoming, name, *size, 0, RowState::Asking));
            }
            TransferEvent::Accepted { id } => {
                let row = self.row(*id)?;
                row.state = RowState::Running;
                row
            }
            TransferEvent::Paused { id, why } => {
                let row = self.row(*id)?;
                row.state = RowState::Paused(why.clone());
                row
            }
            TransferEvent::Progress { id, progress, .. } => {
                let row = self.row(*id)?;
                row.done = progress.done;
                row.rate = progress.bytes_per_sec;
                row.eta = progress.eta_secs;
                row
            }
            TransferEvent::Completed { id, location, .. } => {
                let row = self.row(*id)?;
                row.done = row.size;
                row.state = RowState::Done(location.clone());
                row
            }
            TransferEvent::Failed { id, why, .. } => {
                let row = self.row(*id)?;
                row.state = RowState::Failed(why.clone());
                row
            }
            // About the connection, not one row.
            TransferEvent::Lanes { .. } => return None,
        };
        Some(row)
    }

    fn row(&mut self, id: TransferId) -> Option<&mut TransferRow> {
        self.rows.iter_mut().find(|r| r.id == id)
    }

    /// A new row, in place of any old one with the same id.
    fn add(
        &mut self,
        id: TransferId,
        direction: Direction,
        name: &str,
        size: u64,
        done: u64,
        state: RowState,
    ) -> &TransferRow {
        self.rows.retain(|r| r.id != id);
        self.rows.push(TransferRow {
            id,
            direction,
            name: name.to_owned(),
            size,
            done,
            rate: 0.0,
            eta: None,
            state,
        });
        self.rows.last().expect("just pushed")
    }
}

/// What the person is told about a transfer event, if anything.
fn notice(event: &TransferEvent, peer: Option<&str>) -> Option<String> {
    match event {
        TransferEvent::Asked { name, size, .. } => Some(format!(
            "{} wants to send you {name} ({:.1} MB): accept or decline it in the file list.",
            peer.unwrap_or("Your peer"),
            *size as f64 / 1e6
        )),
        TransferEvent::Paused { why, .. } => Some(why.to_string()),
        TransferEvent::Failed { why, .. } => Some(why.to_string()),
        _ => None,
    }
}
