//! The room as a small 2D space: a floor, two avatars with names and status, speech bubbles,
//! progress rings, flying file bits, and the drop zone that lights up while a file is dragged.

use bevy::prelude::*;
use bevy::text::TextLayoutInfo;

use super::theme::{Fonts, color, palette};
use super::{PANEL_WIDTH, RoomArea, fit_room};
use crate::contacts::Standing;
use crate::frame::FrameSet;
use crate::identity::Identity;
use crate::ports::{Capabilities, Host};
use crate::room::{
    AVATAR_RADIUS, Avatar, Bubble, DropZone, MY_SPOT, PEER_SPOT, Presence, Screen, Seat,
    TransferList, Who, identity_colour, peer_colour,
};
use crate::transfer::Direction;

/// Marks the one camera.
#[derive(Component)]
pub struct RoomCamera;

#[derive(Component)]
struct NameLabel(Who);

#[derive(Component)]
struct StatusLabel(Who);

#[derive(Component)]
struct Initials(Who);

#[derive(Component)]
struct Disc(Who);

#[derive(Component)]
struct BubbleBack;

#[derive(Component)]
struct EmptySeat;

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<TextScale>()
        .add_systems(Startup, (camera, wake_on_platform_input))
        .add_systems(OnEnter(Screen::Room), floor)
        .add_observer(dress_avatar)
        .add_observer(dress_bubble)
        .add_systems(
            Update,
            (
                fit_camera,
                keep_text_size,
                label_avatars,
                empty_seat,
                place_bubbles,
                draw_rings_and_zone,
                draw_call,
            )
                .run_if(in_state(Screen::Room))
                .in_set(FrameSet::Presentation),
        )
        .add_systems(OnExit(Screen::Room), |host: Res<Host>| {
            host.media.show_peer_video(None)
        })
        .add_systems(Last, pace_frames.run_if(resource_exists::<FramePacing>))
        .add_systems(
            Update,
            no_multisampling_on_the_cpu.run_if(resource_added::<FramePacing>),
        )
        .add_systems(
            Update,
            quiet_egui_wakeups.run_if(resource_exists::<FramePacing>),
        );
}

/// Where frames are paced, egui does not wake the loop by itself: bevy_egui hands it a callback
/// that sends the event loop a wake-up whenever egui asks for an immediate repaint, and it asks
/// after every frame (bevy_egui 0.42 gives it a "modifiers changed" event each frame), which
/// drew a still lobby at ~28 frames a second on a software renderer, 1.6 cores of two. Input
/// still wakes the loop through the window system, and `pace_frames` decides the rest.
fn quiet_egui_wakeups(
    mut added: Query<&mut bevy_egui::EguiContext, Added<bevy_egui::EguiContext>>,
) {
    for mut context in &mut added {
        context.get_mut().set_request_repaint_callback(|_| {});
    }
}

/// Draws only as often as what is on screen changes, where the platform asks for it (the
/// browser: under software WebGL a frame of this scene is expensive, see
/// `docs/bench/browser.md`, "Drawing"): a frame every
/// [`FramePacing::busy`] while a file moves (the transfer runs between frames and keeps the
/// CPU), every [`FramePacing::moving`] while something on screen moves (on a GPU a bubble
/// fading or the waiting seat breathing; a drag over the window, a call ringing), every [`FramePacing::call`]
/// during a call, every [`FramePacing::still`] otherwise; and
/// at once on input. egui's own redraw requests are dropped: it asks after nearly every frame
/// (a blinking cursor, a scheduled repaint), which would mean drawing continuously again; its
/// next frame comes with the clock or the input.
fn pace_frames(
    pacing: Res<FramePacing>,
    transfers: Res<crate::transfer::Transfers>,
    screen: OnScreen,
    settings: Option<ResMut<bevy::winit::WinitSettings>>,
    mut redraws: ResMut<Messages<bevy::window::RequestRedraw>>,
) {
    use bevy::winit::UpdateMode;
    redraws.clear();
    let Some(mut settings) = settings else {
        return;
    };
    let wait = if transfers.lock().running() > 0 {
        pacing.busy
    } else if screen.moving(pacing.animated()) {
        pacing.moving
    } else if screen.in_call() {
        pacing.call
    } else {
        pacing.still
    };
    let mode = UpdateMode::reactive(wait);
    if settings.focused_mode != mode {
        settings.focused_mode = mode;
        settings.unfocused_mode = mode;
    }
}

/// A CPU that draws (llvmpipe on a desktop without a GPU) pays for 4× multisampling in every
/// pixel of every frame, and a frame's CPU is taken from the transfers beside it. The page has
/// no multisampling anywhere (`platform::web::MSAA`).
fn no_multisampling_on_the_cpu(
    pacing: Res<FramePacing>,
    mut cameras: Query<&mut bevy::render::view::Msaa, With<RoomCamera>>,
) {
    if pacing.software {
        for mut msaa in &mut cameras {
            *msaa = bevy::render::view::Msaa::Off;
        }
    }
}

/// What is on screen, as far as the frame pace cares.
#[derive(bevy::ecs::system::SystemParam)]
struct OnScreen<'w, 's> {
    seat: Query<'w, 's, &'static Visibility, With<EmptySeat>>,
    bubbles: Query<'w, 's, &'static Bubble>,
    zone: Res<'w, DropZone>,
    screen: Res<'w, State<Screen>>,
    call: Res<'w, crate::call::CallState>,
    touches: Option<Res<'w, Touches>>,
}

impl OnScreen<'_, '_> {
    fn in_room(&self) -> bool {
        *self.screen.get() == Screen::Room
    }

    /// The waiting seat breathing and a bubble fading (only when `animated`, see
    /// [`FramePacing::animated`]: otherwise both change in steps at the still pace), a drag over the window,
    /// a call ringing, a finger resting on the screen (a long press opens a menu with no event
    /// to wake for). A bubble before its fade is still: its first four seconds need no frames.
    fn moving(&self, animated: bool) -> bool {
        use duet_shared::call::CallPhase;
        let ringing = matches!(
            self.call.call.phase(),
            CallPhase::Calling { .. } | CallPhase::Ringing { .. }
        );
        self.in_room()
            && ((animated
                && (self.seat.iter().any(|v| *v == Visibility::Visible)
                    || self.bubbles.iter().any(Bubble::fading)))
                || self.zone.dragging
                || ringing
                || self
                    .touches
                    .as_ref()
                    .is_some_and(|t| t.iter().next().is_some()))
    }

    /// A call in progress shows who speaks, from levels that come once a second (the peer's
    /// video is the page's own element, not drawn here).
    fn in_call(&self) -> bool {
        use duet_shared::call::CallPhase;
        self.in_room()
            && matches!(
                self.call.call.phase(),
                CallPhase::Connecting { .. } | CallPhase::Active { .. }
            )
    }
}

/// How often to draw, by what is on screen (see `pace_frames`). Inserted by the platforms
/// that want it; without it the app draws continuously.
#[derive(Resource, Debug, Clone, Copy)]
pub struct FramePacing {
    /// While a file moves.
    pub busy: std::time::Duration,
    /// While something on screen moves.
    pub moving: std::time::Duration,
    /// During a call, when nothing else moves: the speaking rings.
    pub call: std::time::Duration,
    /// While nothing moves.
    pub still: std::time::Duration,
    /// Whether the CPU draws (no GPU): then the room is drawn without multisampling too.
    pub software: bool,
}

impl FramePacing {
    /// Whether what moves by itself (the waiting seat's breath, a bubble's fade) is drawn
    /// moving: not where the CPU draws, where each of its frames is taken from everything else.
    pub fn animated(&self) -> bool {
        !self.software
    }

    /// Only as often as the picture changes, and sparingly when drawing runs on the CPU
    /// (software WebGL in a page, llvmpipe on a desktop without a GPU), where every frame drawn
    /// during a transfer is taken from it: there a still room or a running transfer (progress,
    /// rate) redraws once a second, and so does a call in progress: its speaking rings follow
    /// levels that come once a second anyway; input still draws at once. The measurements:
    /// `docs/bench/browser.md`, "Drawing", and `docs/bench/transfer.md`.
    pub fn for_renderer(software: bool) -> Self {
        let ms = std::time::Duration::from_millis;
        if software {
            Self {
                busy: ms(1000),
                moving: ms(66),
                call: ms(1000),
                still: ms(1000),
                software,
            }
        } else {
            Self {
                busy: ms(33),
                moving: ms(16),
                call: ms(33),
                still: ms(250),
                software,
            }
        }
    }
}

/// Input the window system does not see (the browser's DOM file drags and drops, a file
/// chosen in its file picker, the desktop's automation commands) draws a frame at once too, instead of at the next paced frame up
/// to a second later: a dropped file starts moving, and the drop zone lights up, right away.
fn wake_on_platform_input(
    event_loop: Option<Res<bevy::winit::EventLoopProxyWrapper>>,
    host: Res<Host>,
) {
    if let Some(proxy) = event_loop.map(|p| (**p).clone()) {
        host.shell.set_frame_waker(Box::new(move || {
            let _ = proxy.send_event(bevy::winit::WinitUserEvent::WakeUp);
        }));
    }
}

fn camera(
    mut commands: Commands,
    mut gizmos: ResMut<GizmoConfigStore>,
    capabilities: Res<Capabilities>,
) {
    // Rings and outlines read as parts of the room, not as debug lines.
    let (config, _) = gizmos.config_mut::<DefaultGizmoConfigGroup>();
    config.line.width = 5.0;
    // The side panel covers the right of the window: shift the view so the room's origin sits in
    // the middle of what is left.
    commands.spawn((
        Camera2d,
        capabilities.msaa,
        RoomCamera,
        Transform::from_xyz(PANEL_WIDTH / 2.0, 0.0, 0.0),
    ));
}

/// Keeps the room in the part of the window the panels leave, zoomed out where that is small
/// (a phone), so both avatars stay in view and under a finger.
fn fit_camera(
    area: Res<RoomArea>,
    windows: Query<&Window, With<bevy::window::PrimaryWindow>>,
    mut camera: Query<(&mut Transform, &mut Projection), With<RoomCamera>>,
    mut text_scale: ResMut<TextScale>,
) {
    let (Some(area), Ok(window)) = (area.0, windows.single()) else {
        return;
    };
    let (at, scale) = fit_room(area, window.size());
    let Ok((mut transform, mut projection)) = camera.single_mut() else {
        return;
    };
    if transform.translation.truncate() != at {
        transform.translation = at.extend(transform.translation.z);
    }
    if let Projection::Orthographic(ortho) = projection.as_ref()
        && ortho.scale != scale
        && let Projection::Orthographic(ortho) = projection.as_mut()
    {
        ortho.scale = scale;
    }
    let text = text_scale_for(scale);
    if text_scale.0 != text {
        text_scale.0 = text;
    }
}

/// The most world text is enlarged. A phone upright zooms the room out 1.6 times; with its
/// keyboard open, 3 times and more, and names that kept their size there would run into each
/// other (two 16-character names are 165 px each, the avatars 340 apart) and off the room.
const TEXT_SCALE_MAX: f32 = 1.6;

/// World text's enlargement for a room drawn `room` times smaller than 1:1.
fn text_scale_for(room: f32) -> f32 {
    room.min(TEXT_SCALE_MAX)
}

/// How much world text is enlarged to undo the room's zoom-out: names and bubbles keep their
/// size on screen when the room shrinks to fit a phone, where 20 px names would be 12, up to
/// [`TEXT_SCALE_MAX`].
#[derive(Resource, Clone, Copy, PartialEq, Debug)]
struct TextScale(f32);

impl Default for TextScale {
    fn default() -> Self {
        Self(1.0)
    }
}

/// World text outside bubbles: names, status lines, the waiting seat.
type Labels = Or<(With<NameLabel>, With<StatusLabel>, With<EmptySeat>)>;

/// Where names and status lines stand under an avatar, and their size: an enlarged label
/// moves down with its size, so it never covers the disc.
fn keep_text_size(
    scale: Res<TextScale>,
    mut labels: Query<(&mut Transform, Has<NameLabel>, Has<StatusLabel>), Labels>,
) {
    let s = scale.0;
    for (mut transform, name, status) in &mut labels {
        let y = if name {
            -AVATAR_RADIUS - 24.0 * s
        } else if status {
            -AVATAR_RADIUS - 48.0 * s
        } else {
            transform.translation.y
        };
        if transform.scale.x != s || transform.translation.y != y {
            transform.scale = Vec3::new(s, s, 1.0);
            transform.translation.y = y;
        }
    }
}

fn floor(
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<ColorMaterial>>,
    fonts: Res<Fonts>,
) {
    commands.spawn((
        Mesh2d(meshes.add(Ellipse::new(360.0, 190.0))),
        MeshMaterial2d(materials.add(color(palette::FLOOR))),
        Transform::from_xyz(0.0, -30.0, -10.0),
        DespawnOnExit(Screen::Room),
    ));
    commands.spawn((
        EmptySeat,
        Text2d::new("Waiting for your peer…"),
        TextFont {
            font: fonts.regular.clone().into(),
            font_size: 17.0.into(),
            ..default()
        },
        TextColor(color(palette::MUTED)),
        Transform::from_translation(PEER_SPOT.extend(1.0)),
        DespawnOnExit(Screen::Room),
    ));
}

fn dress_avatar(
    add: On<Add, Avatar>,
    avatars: Query<&Avatar>,
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<ColorMaterial>>,
    fonts: Option<Res<Fonts>>,
) {
    let Ok(Avatar(who)) = avatars.get(add.entity) else {
        return;
    };
    let Some(fonts) = fonts else { return };
    let who = *who;
    let text = |font: &Handle<Font>, size: f32, rgb| {
        (
            TextFont {
                font: font.clone().into(),
                font_size: size.into(),
                ..default()
            },
            TextColor(color(rgb)),
        )
    };
    commands.entity(add.entity).insert((
        Visibility::default(),
        children![
            (
                Disc(who),
                Mesh2d(meshes.add(Circle::new(AVATAR_RADIUS))),
                MeshMaterial2d(materials.add(color(palette::MUTED))),
                Transform::from_xyz(0.0, 0.0, 0.0),
            ),
            (
                Initials(who),
                Text2d::new(""),
                text(&fonts.bold, 40.0, palette::NIGHT),
                Transform::from_xyz(0.0, 0.0, 1.0),
            ),
            (
                NameLabel(who),
                Text2d::new(""),
                text(&fonts.bold, 20.0, palette::TEXT),
                Transform::from_xyz(0.0, -AVATAR_RADIUS - 24.0, 1.0),
            ),
            (
                StatusLabel(who),
                Text2d::new(""),
                text(&fonts.regular, 14.0, palette::MUTED),
                Transform::from_xyz(0.0, -AVATAR_RADIUS - 48.0, 1.0),
            ),
        ],
    ));
}

fn initials(name: &str) -> String {
    let mut letters: String = name
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .collect();
    if letters.is_empty() {
        letters.push('?');
    }
    letters.to_uppercase()
}

#[allow(clippy::type_complexity)]
fn label_avatars(
    identity: Option<Res<Identity>>,
    presence: Res<Presence>,
    zone: Res<DropZone>,
    transfers: Res<TransferList>,
    mut texts: ParamSet<(
        Query<(&NameLabel, &mut Text2d)>,
        Query<(&StatusLabel, &mut Text2d)>,
        Query<(&Initials, &mut Text2d)>,
    )>,
    discs: Query<(&Disc, &MeshMaterial2d<ColorMaterial>)>,
    mut materials: ResMut<Assets<ColorMaterial>>,
) {
    let Some(identity) = identity else { return };
    let peer = match &presence.seat {
        Seat::Here { name, identity, .. } => Some((name.clone(), *identity)),
        _ => None,
    };
    let name_of = |who: Who| match who {
        Who::Me => format!("{} (you)", identity.name),
        Who::Peer => peer.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
    };
    for (label, mut text) in &mut texts.p0() {
        let want = name_of(label.0);
        if text.0 != want {
            text.0 = want;
        }
    }
    let status = |who: Who| -> String {
        let running = |d| transfers.running(d).map(|f| (f * 100.0).round() as u32);
        match who {
            Who::Me => match (running(Direction::Outgoing), running(Direction::Incoming)) {
                (Some(p), _) => format!("sending… {p}%"),
                (None, Some(p)) => format!("receiving… {p}%"),
                (None, None) => match presence.link {
                    crate::room::Link::InRoom => "here".into(),
                    crate::room::Link::Connecting => "connecting…".into(),
                    crate::room::Link::Reconnecting { .. } => "reconnecting…".into(),
                    crate::room::Link::Failed(_) => "disconnected".into(),
                },
            },
            Who::Peer if zone.over_peer => "drop to send".into(),
            Who::Peer if zone.dragging => "drop the file here".into(),
            Who::Peer => match running(Direction::Incoming) {
                Some(p) => format!("sending you a file… {p}%"),
                None => match running(Direction::Outgoing) {
                    Some(p) => format!("receiving… {p}%"),
                    // Who they are to this device, under their name.
                    None => match presence.standing() {
                        Some(Standing::Known { verified: true, .. }) => "verified".into(),
                        Some(Standing::Known { .. }) => "met before".into(),
                        Some(Standing::New) => "new to you".into(),
                        Some(Standing::NotTheOneMet { .. }) => "not the one you met!".into(),
                        None => "here".into(),
                    },
                },
            },
        }
    };
    for (label, mut text) in &mut texts.p1() {
        let want = status(label.0);
        if text.0 != want {
            text.0 = want;
        }
    }
    for (label, mut text) in &mut texts.p2() {
        let full = match label.0 {
            Who::Me => identity.name.clone(),
            Who::Peer => peer.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
        };
        let want = initials(&full);
        if text.0 != want {
            text.0 = want;
        }
    }
    for (disc, material) in &discs {
        let want = match disc.0 {
            Who::Me => identity_colour(&identity.id),
            Who::Peer => peer
                .as_ref()
                .map(|p| peer_colour(&identity.id, &p.1))
                .unwrap_or(color(palette::MUTED)),
        };
        if let Some(mut m) = materials.get_mut(&material.0)
            && m.color != want
        {
            m.color = want;
        }
    }
}

/// The seat where the peer will stand, while nobody stands there. Its outline breathes, except
/// where the CPU draws (software WebGL, llvmpipe): there breathing meant 15 frames a second for
/// as long as the person waits, 1.8 of two cores in a page (`docs/bench/browser.md`), so the
/// outline holds still and the room is drawn at the still pace.
fn empty_seat(
    avatars: Query<&Avatar>,
    presence: Res<Presence>,
    mut seat: Query<&mut Visibility, With<EmptySeat>>,
    mut gizmos: Gizmos,
    (time, pacing): (Res<Time>, Option<Res<FramePacing>>),
) {
    // Nobody is coming while I am refused or cut off: no waiting seat then.
    let waiting = !avatars.iter().any(|a| a.0 == Who::Peer)
        && !matches!(presence.link, crate::room::Link::Failed(_));
    for mut visibility in &mut seat {
        *visibility = if waiting {
            Visibility::Visible
        } else {
            Visibility::Hidden
        };
    }
    if waiting {
        // A slowly breathing outline where the peer will stand.
        let breath = if pacing.is_none_or(|p| p.animated()) {
            0.5 + 0.5 * (time.elapsed_secs() * 1.6).sin()
        } else {
            0.5
        };
        gizmos
            .circle_2d(
                Isometry2d::from_translation(PEER_SPOT),
                AVATAR_RADIUS + breath * 4.0,
                color(palette::MUTED).with_alpha(0.35 + 0.3 * breath),
            )
            .resolution(64);
    }
}

fn dress_bubble(
    add: On<Add, Bubble>,
    bubbles: Query<&Bubble>,
    mut commands: Commands,
    fonts: Option<Res<Fonts>>,
) {
    let (Ok(bubble), Some(fonts)) = (bubbles.get(add.entity), fonts) else {
        return;
    };
    commands.entity(add.entity).insert((
        Text2d::new(bubble.text.clone()),
        TextFont {
            font: fonts.regular.clone().into(),
            font_size: 16.0.into(),
            ..default()
        },
        TextColor(color(palette::NIGHT)),
        bevy::text::TextBounds::new_horizontal(BUBBLE_WIDTH),
        TextLayout::justify(Justify::Center),
        Transform::from_xyz(0.0, 0.0, 5.0),
        children![(
            BubbleBack,
            Sprite::from_color(color(palette::TEXT), Vec2::ONE),
            Transform::from_xyz(0.0, 0.0, -0.5),
        )],
    ));
}

/// A bubble's widest line at 1:1, in px.
const BUBBLE_WIDTH: f32 = 240.0;
/// The narrowest a bubble wraps at on screen, in px, however small the room is drawn.
const BUBBLE_WIDTH_MIN: f32 = 140.0;

/// How wide a bubble's text wraps, in its own (enlarged) units: it keeps the share of the room
/// it has at 1:1 (a third of it), but not below [`BUBBLE_WIDTH_MIN`] px of text on screen, so
/// a zoomed-out room shows short bubbles at a readable size.
fn bubble_width(scale: f32) -> f32 {
    (BUBBLE_WIDTH / scale).max(BUBBLE_WIDTH_MIN)
}

/// Stacks bubbles over their avatar (newest lowest), sizes their backgrounds to the text, fades.
fn place_bubbles(
    mut bubbles: Query<(
        &Bubble,
        &mut Transform,
        &mut TextColor,
        &mut bevy::text::TextBounds,
        &TextLayoutInfo,
        &Children,
    )>,
    mut backs: Query<&mut Sprite, With<BubbleBack>>,
    scale: Res<TextScale>,
) {
    let s = scale.0;
    let mut heights = [0.0f32; 2];
    let mut order: Vec<_> = bubbles.iter_mut().collect();
    order.sort_by(|a, b| a.0.age.total_cmp(&b.0.age));
    for (bubble, mut transform, mut text_color, mut bounds, layout, children) in order {
        let width = Some(bubble_width(s));
        if bounds.width != width {
            bounds.width = width;
        }
        let slot = if bubble.who == Who::Me { 0 } else { 1 };
        let spot = bubble.who.spot();
        // The text's size in the world: its layout, enlarged.
        let size = layout.size * s;
        let y = spot.y + AVATAR_RADIUS + 26.0 * s + heights[slot] + size.y / 2.0;
        heights[slot] += size.y + 22.0 * s;
        // Rise in over the first 0.2 s.
        let rise = (1.0 - (bubble.age / 0.2).min(1.0)) * -12.0 * s;
        transform.translation = Vec3::new(spot.x, y + rise, 5.0);
        transform.scale = Vec3::new(s, s, 1.0);
        let alpha = bubble.alpha();
        text_color.0 = color(palette::NIGHT).with_alpha(alpha);
        if let Some(back) = children.first()
            && let Ok(mut sprite) = backs.get_mut(*back)
        {
            // The back is the text's child: its size is in the text's own units.
            sprite.custom_size = Some(layout.size + Vec2::new(22.0, 14.0));
            sprite.color = color(palette::TEXT).with_alpha(alpha * 0.95);
        }
    }
}

/// The call on the avatars: a pulsing ring on the other side while it rings, a steady one on
/// both during the call, thickened by each side's voice (the speaking indicator); and the
/// peer's video, when their camera is on, over their avatar.
fn draw_call(
    mut gizmos: Gizmos,
    call: Res<crate::call::CallState>,
    camera: Query<(&Camera, &GlobalTransform), With<RoomCamera>>,
    time: Res<Time>,
    host: Res<Host>,
    mut video_shown: Local<bool>,
) {
    use duet_shared::call::CallPhase;
    let good = color(palette::GOOD);
    let ring = |gizmos: &mut Gizmos, spot: Vec2, r: f32, tint: Color| {
        gizmos
            .circle_2d(Isometry2d::from_translation(spot), r, tint)
            .resolution(96);
    };
    let pulse = 0.5 + 0.5 * (time.elapsed_secs() * 4.0).sin();
    match call.call.phase() {
        CallPhase::Calling { .. } => {
            ring(
                &mut gizmos,
                PEER_SPOT,
                AVATAR_RADIUS + 22.0 + 6.0 * pulse,
                good.with_alpha(0.4 + 0.5 * pulse),
            );
        }
        CallPhase::Ringing { .. } => {
            ring(
                &mut gizmos,
                MY_SPOT,
                AVATAR_RADIUS + 22.0 + 6.0 * pulse,
                good.with_alpha(0.4 + 0.5 * pulse),
            );
        }
        CallPhase::Connecting { .. } | CallPhase::Active { .. } => {
            for (spot, level, muted) in [
                (MY_SPOT, call.stats.my_level, call.call.muted()),
                (PEER_SPOT, call.stats.peer_level, call.peer_muted),
            ] {
                let tint = if muted { color(palette::MUTED) } else { good };
                ring(
                    &mut gizmos,
                    spot,
                    AVATAR_RADIUS + 22.0,
                    tint.with_alpha(0.6),
                );
                // Audio levels are linear amplitude, 0..1: quiet speech is ~0.02, loud ~0.3.
                // The square root makes both visible (0.02 -> 5.7 px, 0.3 -> 14).
                let swell = ((level as f32).sqrt() * 40.0).min(14.0);
                if !muted && swell > 1.0 {
                    ring(
                        &mut gizmos,
                        spot,
                        AVATAR_RADIUS + 22.0 + swell,
                        good.with_alpha(0.8),
                    );
                }
            }
        }
        CallPhase::Idle => {}
    }
    let active = matches!(call.call.phase(), CallPhase::Active { .. });
    let spot = camera.single().ok().and_then(|(c, t)| {
        let centre = c.world_to_viewport(t, PEER_SPOT.extend(0.0)).ok()?;
        let edge = c
            .world_to_viewport(t, (PEER_SPOT + Vec2::X * AVATAR_RADIUS).extend(0.0))
            .ok()?;
        Some((centre.x, centre.y, 2.0 * (edge.x - centre.x).abs()))
    });
    let show = (active && call.peer_camera).then_some(spot).flatten();
    if show.is_some() || *video_shown {
        host.media.show_peer_video(show);
        *video_shown = show.is_some();
    }
}

fn draw_rings_and_zone(
    mut gizmos: Gizmos,
    zone: Res<DropZone>,
    transfers: Res<TransferList>,
    avatars: Query<&Avatar>,
    time: Res<Time>,
) {
    let t = time.elapsed_secs();
    let peer_here = avatars.iter().any(|a| a.0 == Who::Peer);
    let accent = color(palette::ACCENT);
    // Progress rings: the transfer's share done, clockwise from the top, on both avatars.
    let ring = |gizmos: &mut Gizmos, spot: Vec2, fraction: f32, tint: Color| {
        let r = AVATAR_RADIUS + 9.0;
        gizmos
            .circle_2d(Isometry2d::from_translation(spot), r, tint.with_alpha(0.18))
            .resolution(96);
        if fraction > 0.0 {
            let angle = std::f32::consts::TAU * fraction;
            gizmos
                .arc_2d(Isometry2d::new(spot, Rot2::radians(-angle)), angle, r, tint)
                .resolution(96);
        }
    };
    let outgoing = transfers.running(Direction::Outgoing);
    let incoming = transfers.running(Direction::Incoming);
    if let Some(f) = outgoing.or(incoming) {
        ring(&mut gizmos, MY_SPOT, f, accent);
        if peer_here {
            ring(&mut gizmos, PEER_SPOT, f, accent);
            // Bits flying from sender to receiver.
            let (from, to) = if outgoing.is_some() {
                (MY_SPOT, PEER_SPOT)
            } else {
                (PEER_SPOT, MY_SPOT)
            };
            for i in 0..5 {
                let phase = ((t * 0.9) + i as f32 / 5.0).fract();
                let start = from + (to - from).normalize() * (AVATAR_RADIUS + 16.0);
                let end = to - (to - from).normalize() * (AVATAR_RADIUS + 16.0);
                let p =
                    start.lerp(end, phase) + Vec2::Y * (phase * std::f32::consts::PI).sin() * 26.0;
                gizmos.circle_2d(Isometry2d::from_translation(p), 4.0, accent);
            }
        }
    }
    if zone.dragging && peer_here {
        let pulse = 0.5 + 0.5 * (t * 5.0).sin();
        let (r, tint) = if zone.over_peer {
            (AVATAR_RADIUS + 18.0, accent)
        } else {
            (
                AVATAR_RADIUS + 14.0 + pulse * 6.0,
                accent.with_alpha(0.5 + 0.4 * pulse),
            )
        };
        gizmos
            .circle_2d(Isometry2d::from_translation(PEER_SPOT), r, tint)
            .resolution(96);
        gizmos
            .circle_2d(Isometry2d::from_translation(PEER_SPOT), r + 3.0, tint)
            .resolution(96);
    }
}

#[cfg(test)]
mod tests {
    use bevy::ecs::system::RunSystemOnce;

    use super::*;

    /// The pace `pace_frames` sets in a room holding `what`, and the pacing it chose from.
    fn pace_with(software: bool, what: impl Bundle) -> (FramePacing, bevy::winit::UpdateMode) {
        use bevy::winit::WinitSettings;
        let pacing = FramePacing::for_renderer(software);
        let mut world = World::new();
        world.insert_resource(pacing);
        world.insert_resource(crate::transfer::Transfers::default());
        world.insert_resource(State::new(Screen::Room));
        world.insert_resource(DropZone::default());
        world.insert_resource(crate::call::CallState::default());
        world.insert_resource(WinitSettings::default());
        world.init_resource::<Messages<bevy::window::RequestRedraw>>();
        world.spawn(what);
        world.run_system_once(pace_frames).unwrap();
        (pacing, world.resource::<WinitSettings>().focused_mode)
    }

    /// Someone waiting alone in a room: on a GPU the seat breathes at the moving pace; where
    /// the CPU draws, the room waits at the still pace (once a second), not 15 frames a second.
    #[test]
    fn a_waiting_seat_keeps_a_cpu_renderer_at_the_still_pace() {
        use bevy::winit::UpdateMode;
        for software in [true, false] {
            let (pacing, mode) = pace_with(software, (EmptySeat, Visibility::Visible));
            let want = if software {
                pacing.still
            } else {
                pacing.moving
            };
            assert_eq!(mode, UpdateMode::reactive(want), "software: {software}");
        }
    }

    /// A chat bubble needs frames only while it fades: before, the room is still; and where
    /// the CPU draws, it fades in steps at the still pace.
    #[test]
    fn a_bubble_asks_for_frames_only_while_it_fades_and_not_from_a_cpu_renderer() {
        use bevy::winit::UpdateMode;
        for software in [true, false] {
            for (age, fading) in [(1.0, false), (5.0, true)] {
                let bubble = Bubble {
                    who: Who::Peer,
                    text: "hi".into(),
                    age,
                };
                let (pacing, mode) = pace_with(software, bubble);
                let want = if fading && !software {
                    pacing.moving
                } else {
                    pacing.still
                };
                assert_eq!(
                    mode,
                    UpdateMode::reactive(want),
                    "software: {software}, age {age}"
                );
            }
        }
    }

    #[test]
    fn names_and_bubbles_keep_their_size_on_screen_when_the_room_zooms_out() {
        // A phone upright: the room drawn at 1/1.58 (see `ui::tests`).
        let s = 620.0 / 393.0;
        let mut world = World::new();
        world.insert_resource(TextScale(s));
        let name = world
            .spawn((NameLabel(Who::Peer), Transform::from_xyz(0.0, -88.0, 1.0)))
            .id();
        let status = world
            .spawn((StatusLabel(Who::Peer), Transform::default()))
            .id();
        let seat = world
            .spawn((
                EmptySeat,
                Transform::from_translation(PEER_SPOT.extend(1.0)),
            ))
            .id();
        world.run_system_once(keep_text_size).unwrap();
        let at = |e| *world.get::<Transform>(e).unwrap();
        // Enlarged as much as the room shrinks: 20 px names stay 20 px on screen.
        for e in [name, status, seat] {
            assert_eq!(at(e).scale, Vec3::new(s, s, 1.0));
        }
        // Lower by as much, so the enlarged name does not cover the disc: its top, half a
        // 20 px line above its centre, stays clear of the disc's edge on screen.
        let name_top = at(name).translation.y + 10.0 * s;
        assert!(name_top < -AVATAR_RADIUS, "{name_top}");
        assert!(at(status).translation.y < at(name).translation.y - 20.0 * s);
        // The waiting seat's text stays where the peer will stand.
        assert_eq!(at(seat).translation.truncate(), PEER_SPOT);
        // A bubble wraps at 240 px at 1:1; on the phone at no less than 140 px on screen.
        assert_eq!(bubble_width(1.0), 240.0);
        assert_eq!(bubble_width(s), 240.0 / s);
        assert_eq!(bubble_width(2.5), BUBBLE_WIDTH_MIN);
        // The room zoomed out 3.2 times (a phone's keyboard open): names grow only so far, and
        // two 16-character names (165 px at 20 px) still leave a gap between the avatars.
        assert_eq!(text_scale_for(1.0), 1.0);
        assert_eq!(text_scale_for(s), s);
        let t = text_scale_for(3.2);
        assert!(165.0 * t < PEER_SPOT.x - MY_SPOT.x - 40.0, "{t}");
    }
}
