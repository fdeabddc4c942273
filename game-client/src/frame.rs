//! The order of a frame, as system sets every plugin puts its `Update` systems in. The
//! composition root chains them once ([`order`]); a logic test that adds one plugin needs none
//! of it. The network sits around them: arrivals are sorted in `PreUpdate` and sends leave in
//! `PostUpdate` (see `net`), so one frame reads what came in, decides, and sends.

use bevy::prelude::*;

/// The parts of a frame's `Update`, in order.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameSet {
    /// The person's input, finished dialogs and automation commands become messages.
    Input,
    /// The core: identity, chat, calls, transfers.
    Core,
    /// Room logic: screens, presence, avatars, lists, notices.
    Room,
    /// The picture follows what the frame decided; automation reports it.
    Presentation,
}

/// Chains the sets: input, core, room, presentation.
pub fn order(app: &mut App) {
    app.configure_sets(
        Update,
        (
            FrameSet::Input,
            FrameSet::Core,
            FrameSet::Room,
            FrameSet::Presentation,
        )
            .chain(),
    );
}
