//! Where things stand in the room and which colour a person gets: world geometry the logic
//! hit-tests against and the presentation draws at.

use super::*;

/// Radius of an avatar, in world units (pixels at zoom 1).
pub const AVATAR_RADIUS: f32 = 64.0;

/// Where my avatar stands (the room is centred on the world origin).
pub const MY_SPOT: Vec2 = Vec2::new(-170.0, -10.0);

/// Where my peer's avatar stands.
pub const PEER_SPOT: Vec2 = Vec2::new(170.0, -10.0);

/// Which avatar, if any, is under a world position.
pub fn avatar_at(point: Vec2) -> Option<Who> {
    // A little slack around the disc makes dropping forgiving.
    let reach = AVATAR_RADIUS + 12.0;
    [Who::Peer, Who::Me]
        .into_iter()
        .find(|who| point.distance(who.spot()) <= reach)
}

/// The hue (degrees) an identity is drawn in, from its bytes: stable across sessions.
pub fn identity_hue(identity: &uuid::Uuid) -> f32 {
    let bytes = identity.as_bytes();
    (u16::from_le_bytes([bytes[0], bytes[1]]) % 360) as f32
}

/// A stable, pleasant colour for an identity.
pub fn identity_colour(identity: &uuid::Uuid) -> Color {
    Color::hsl(identity_hue(identity), 0.55, 0.58)
}

/// The peer's colour as I see it: their own, unless it is too close to mine to tell the two
/// avatars apart, then turned a third of the way round the colour wheel.
pub fn peer_colour(mine: &uuid::Uuid, theirs: &uuid::Uuid) -> Color {
    let (a, b) = (identity_hue(mine), identity_hue(theirs));
    let gap = (a - b).abs().min(360.0 - (a - b).abs());
    let hue = if gap < 50.0 { (b + 120.0) % 360.0 } else { b };
    Color::hsl(hue, 0.55, 0.58)
}
