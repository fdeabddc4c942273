//! Speech bubbles: one per chat line, popping over the speaker's avatar and fading away.

use super::*;

/// How long a speech bubble stays, in seconds (it fades during the last third).
pub const BUBBLE_SECS: f32 = 6.0;

/// At most this many bubbles per avatar; older ones leave first.
pub const MAX_BUBBLES: usize = 3;

/// A speech bubble over an avatar.
#[derive(Component, Debug, Clone, PartialEq)]
pub struct Bubble {
    /// Over whose avatar.
    pub who: Who,
    /// What was said (shortened for the bubble).
    pub text: String,
    /// Seconds since it appeared.
    pub age: f32,
}

impl Bubble {
    /// When its fade begins, in seconds of its life.
    const FADE_FROM: f32 = BUBBLE_SECS * 2.0 / 3.0;

    /// Whether it is fading (its picture changes with every frame).
    pub fn fading(&self) -> bool {
        self.age > Self::FADE_FROM
    }

    /// Opacity: 1 for the first two thirds of its life, then fading to 0.
    pub fn alpha(&self) -> f32 {
        let fade_from = Self::FADE_FROM;
        if self.age <= fade_from {
            1.0
        } else {
            (1.0 - (self.age - fade_from) / (BUBBLE_SECS - fade_from)).clamp(0.0, 1.0)
        }
    }
}

pub(super) fn bubbles(
    mut commands: Commands,
    time: Res<Time>,
    mut changes: MessageReader<ChatChanged>,
    mut seen: Local<std::collections::HashSet<uuid::Uuid>>,
    mut existing: Query<(Entity, &mut Bubble)>,
) {
    let dt = time.delta_secs();
    let mut alive: Vec<(Entity, Who, f32)> = Vec::new();
    for (entity, mut bubble) in &mut existing {
        bubble.age += dt;
        if bubble.age >= BUBBLE_SECS {
            commands.entity(entity).despawn();
        } else {
            alive.push((entity, bubble.who, bubble.age));
        }
    }
    for ChatChanged(entry) in changes.read() {
        // Receipts update an entry; only a new message pops a bubble.
        if !seen.insert(entry.id) {
            continue;
        }
        let who = if entry.mine { Who::Me } else { Who::Peer };
        let mut text: String = entry.text.chars().take(140).collect();
        if entry.text.chars().count() > 140 {
            text.push('…');
        }
        // Make room: the oldest bubbles of that avatar leave first.
        let mut mine: Vec<_> = alive.iter().filter(|(_, w, _)| *w == who).collect();
        mine.sort_by(|a, b| b.2.total_cmp(&a.2));
        while mine.len() >= MAX_BUBBLES {
            let (entity, _, _) = mine.remove(0);
            commands.entity(*entity).despawn();
        }
        commands.spawn((
            Bubble {
                who,
                text,
                age: 0.0,
            },
            DespawnOnExit(Screen::Room),
        ));
    }
}
