//! Palette, fonts and window chrome, so every part of the client looks like one product.

use std::borrow::Cow;

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

/// Regular weight of Inter (SIL OFL, see `assets/fonts/LICENSE-Inter.txt`).
pub const FONT_REGULAR: &[u8] = include_bytes!("../../../assets/fonts/Inter-Regular.otf");
/// Semi-bold weight of Inter.
pub const FONT_BOLD: &[u8] = include_bytes!("../../../assets/fonts/Inter-SemiBold.otf");

/// The palette (sRGB).
pub mod palette {
    /// Window background.
    pub const NIGHT: [u8; 3] = [0x1a, 0x1e, 0x29];
    /// Panels.
    pub const PANEL: [u8; 3] = [0x22, 0x27, 0x35];
    /// The room's floor.
    pub const FLOOR: [u8; 3] = [0x2a, 0x30, 0x42];
    /// Raised surfaces (inputs, rows).
    pub const RAISED: [u8; 3] = [0x2f, 0x36, 0x4a];
    /// Main text.
    pub const TEXT: [u8; 3] = [0xec, 0xe9, 0xe4];
    /// Secondary text.
    pub const MUTED: [u8; 3] = [0x93, 0x9b, 0xb0];
    /// Accent: buttons, progress, the drop zone.
    pub const ACCENT: [u8; 3] = [0xf2, 0xa6, 0x5a];
    /// Good news (delivered, done).
    pub const GOOD: [u8; 3] = [0x76, 0xc8, 0x93];
    /// Bad news (errors, not delivered).
    pub const BAD: [u8; 3] = [0xe5, 0x73, 0x7b];
}

/// A palette entry as a Bevy colour.
pub fn color(rgb: [u8; 3]) -> Color {
    Color::srgb_u8(rgb[0], rgb[1], rgb[2])
}

/// A palette entry as an egui colour.
pub fn ecolor(rgb: [u8; 3]) -> egui::Color32 {
    egui::Color32::from_rgb(rgb[0], rgb[1], rgb[2])
}

/// The font handles for world text.
#[derive(Resource, Clone)]
pub struct Fonts {
    /// Inter Regular.
    pub regular: Handle<Font>,
    /// Inter SemiBold.
    pub bold: Handle<Font>,
    /// Noto Emoji, the face egui draws emoji with. Held so the asset stays; text never names it:
    /// it is the emoji family every other face falls back to ([`map_emoji_family`]).
    pub emoji: Handle<Font>,
}

/// The family name inside egui's Noto Emoji face.
pub const EMOJI_FAMILY: &str = "Noto Emoji";

pub(super) fn plugin(app: &mut App) {
    app.add_plugins(world_fonts)
        .insert_resource(ClearColor(color(palette::NIGHT)))
        .add_systems(EguiPrimaryContextPass, style_egui)
        .add_systems(
            Last,
            (|host: Res<crate::ports::Host>| host.shell.app_ready())
                .run_if(resource_added::<Styled>),
        );
}

/// The faces world text uses, and emoji among them. Its own plugin so a test can load the fonts
/// without a window.
pub fn world_fonts(app: &mut App) {
    let mut fonts = app.world_mut().resource_mut::<Assets<Font>>();
    let regular = fonts.add(Font::from_bytes(FONT_REGULAR.to_vec()));
    let bold = fonts.add(Font::from_bytes(FONT_BOLD.to_vec()));
    let emoji = fonts.add(Font::from_bytes(emoji_face().to_vec()));
    app.insert_resource(Fonts {
        regular,
        bold,
        emoji,
    })
    .add_systems(
        PostUpdate,
        map_emoji_family.after(bevy::text::load_font_assets_into_font_collection),
    );
}

/// Noto Emoji's bytes, taken from egui's own font set: the same bytes named through their crate's
/// constant here would be a second copy in the binary (418 kB), since a constant is copied into
/// every crate that uses it.
fn emoji_face() -> Cow<'static, [u8]> {
    egui::FontDefinitions::default()
        .font_data
        .remove("NotoEmoji-Regular")
        .map(|data| data.font.clone())
        .unwrap_or_default()
}

/// Names Noto Emoji as the emoji family once Bevy has it. Inter has no emoji; parley looks a
/// cluster it marks as emoji up in that family. With no system fonts (the web), the family was
/// empty and a 📱 in a bubble drew as a box, where the chat (egui) showed it.
fn map_emoji_family(mut font_cx: ResMut<bevy::text::FontCx>, mut done: Local<bool>) {
    if !*done {
        *done = font_cx
            .set_generic_family(parley::GenericFamily::Emoji, EMOJI_FAMILY)
            .is_ok();
    }
}

/// On a touch screen, the longest a tap may take from the frame that saw the finger down to
/// the one that saw it lifted, in seconds.
const TAP_FRAMES_WITHIN: f64 = 2.0;

/// Present once egui has our fonts: they bind at the start of the next pass, so panels that name
/// the bold family wait for this.
#[derive(Resource)]
pub struct Styled;

/// Applies fonts and colours to egui once.
fn style_egui(
    mut contexts: EguiContexts,
    mut commands: Commands,
    capabilities: Res<crate::ports::Capabilities>,
    mut done: Local<bool>,
) -> Result {
    if *done {
        return Ok(());
    }
    let ctx = contexts.ctx_mut()?;
    let mut fonts = egui::FontDefinitions::default();
    fonts.font_data.insert(
        "inter".into(),
        egui::FontData::from_static(FONT_REGULAR).into(),
    );
    fonts.font_data.insert(
        "inter-bold".into(),
        egui::FontData::from_static(FONT_BOLD).into(),
    );
    fonts
        .families
        .entry(egui::FontFamily::Proportional)
        .or_default()
        .insert(0, "inter".into());
    fonts.families.insert(
        egui::FontFamily::Name("bold".into()),
        vec!["inter-bold".into(), "inter".into()],
    );
    ctx.set_fonts(fonts);
    let mut style = (*ctx.style_of(egui::Theme::Dark)).clone();
    use egui::{FontFamily, FontId, TextStyle};
    style.text_styles = [
        (
            TextStyle::Heading,
            FontId::new(24.0, FontFamily::Name("bold".into())),
        ),
        (TextStyle::Body, FontId::new(15.0, FontFamily::Proportional)),
        (
            TextStyle::Button,
            FontId::new(15.0, FontFamily::Proportional),
        ),
        (
            TextStyle::Small,
            FontId::new(12.5, FontFamily::Proportional),
        ),
        (
            TextStyle::Monospace,
            FontId::new(13.5, FontFamily::Monospace),
        ),
    ]
    .into();
    style.spacing.item_spacing = egui::vec2(8.0, 8.0);
    style.spacing.button_padding = egui::vec2(12.0, 6.0);
    style.spacing.interact_size.y = 30.0;
    if capabilities.touch {
        // A fingertip, not a pointer: every control at least this tall, and apart.
        style.spacing.interact_size.y = crate::ports::TOUCH_TARGET;
        style.spacing.button_padding = egui::vec2(14.0, 10.0);
        style.spacing.item_spacing = egui::vec2(10.0, 8.0);
        // egui times a tap by the frames that saw the finger go down and up; a phone busy with
        // a transfer can take longer than egui's 0.8 s between two, and the tap was lost.
        ctx.options_mut(|o| o.input_options.max_click_duration = TAP_FRAMES_WITHIN);
    }
    let v = &mut style.visuals;
    *v = egui::Visuals::dark();
    v.panel_fill = ecolor(palette::PANEL);
    v.window_fill = ecolor(palette::PANEL);
    v.extreme_bg_color = ecolor(palette::RAISED);
    v.faint_bg_color = ecolor(palette::RAISED);
    v.override_text_color = Some(ecolor(palette::TEXT));
    v.hyperlink_color = ecolor(palette::ACCENT);
    v.selection.bg_fill = ecolor(palette::ACCENT).gamma_multiply(0.45);
    v.widgets.inactive.weak_bg_fill = ecolor(palette::RAISED);
    v.widgets.inactive.bg_fill = ecolor(palette::RAISED);
    v.widgets.hovered.weak_bg_fill = ecolor(palette::ACCENT).gamma_multiply(0.35);
    v.widgets.active.weak_bg_fill = ecolor(palette::ACCENT).gamma_multiply(0.55);
    for w in [
        &mut v.widgets.inactive,
        &mut v.widgets.hovered,
        &mut v.widgets.active,
        &mut v.widgets.noninteractive,
    ] {
        w.corner_radius = egui::CornerRadius::same(8);
    }
    v.window_corner_radius = egui::CornerRadius::same(12);
    ctx.set_theme(egui::ThemePreference::Dark);
    ctx.set_style_of(egui::Theme::Dark, style);
    *done = true;
    commands.insert_resource(Styled);
    Ok(())
}

/// Two overlapping discs, the app's mark, as window icon pixels (RGBA, `size` x `size`).
pub fn icon_rgba(size: u32) -> Vec<u8> {
    let mut pixels = vec![0u8; (size * size * 4) as usize];
    let s = size as f32;
    let discs = [
        (s * 0.38, s * 0.5, s * 0.3, palette::ACCENT),
        (s * 0.62, s * 0.5, s * 0.3, palette::GOOD),
    ];
    for y in 0..size {
        for x in 0..size {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let i = ((y * size + x) * 4) as usize;
            for (cx, cy, r, rgb) in discs {
                let d = ((px - cx).powi(2) + (py - cy).powi(2)).sqrt();
                let coverage = (r - d + 0.5).clamp(0.0, 1.0);
                if coverage > 0.0 {
                    for c in 0..3 {
                        let old = pixels[i + c] as f32;
                        pixels[i + c] = (old + (rgb[c] as f32 - old) * coverage * 0.9) as u8;
                    }
                    pixels[i + 3] = pixels[i + 3].max((coverage * 255.0) as u8);
                }
            }
        }
    }
    pixels
}

#[cfg(test)]
mod tests {
    use bevy::text::{FontCx, LayoutCx, TextPlugin};
    use parley::{FontFamily, PositionedLayoutItem, StyleProperty};

    use super::*;

    /// The faces each glyph of `text` is drawn from, once Bevy has the world fonts: (bytes of
    /// the face, glyph id) per glyph.
    fn faces_of(text: &str) -> Vec<(usize, u32)> {
        let mut app = App::new();
        app.add_plugins((MinimalPlugins, AssetPlugin::default(), TextPlugin))
            .add_plugins(world_fonts);
        app.update();
        app.world_mut()
            .resource_scope(|world, mut font_cx: Mut<FontCx>| {
                let mut layout_cx = world.resource_mut::<LayoutCx>();
                let mut builder = layout_cx.ranged_builder(&mut font_cx.context, text, 1.0, true);
                builder.push_default(StyleProperty::FontFamily(FontFamily::named("Inter")));
                builder.push_default(StyleProperty::FontSize(16.0));
                let mut layout = builder.build(text);
                layout.break_all_lines(None);
                let mut faces = Vec::new();
                for line in layout.lines() {
                    for item in line.items() {
                        if let PositionedLayoutItem::GlyphRun(run) = item {
                            let bytes = run.run().font().data.len();
                            faces.extend(run.glyphs().map(|g| (bytes, g.id)));
                        }
                    }
                }
                faces
            })
    }

    #[test]
    fn an_emoji_in_world_text_comes_from_the_emoji_face_and_letters_from_inter() {
        let faces = faces_of("Hi 📱");
        let (emoji, inter) = (emoji_face().len(), FONT_REGULAR.len());
        assert!(emoji > 100_000, "egui still carries Noto Emoji");
        assert_eq!(faces.len(), 4, "{faces:?}");
        assert!(
            faces[..3].iter().all(|(bytes, _)| *bytes == inter),
            "{faces:?}"
        );
        // A real glyph (not .notdef, id 0) of Noto Emoji: before, Inter's box.
        assert_eq!(faces[3].0, emoji, "{faces:?}");
        assert_ne!(faces[3].1, 0);
    }
}
