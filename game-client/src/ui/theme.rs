//! Palette, fonts and window chrome, so every part of the client looks like one product.

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
}

pub(super) fn plugin(app: &mut App) {
    let mut fonts = app.world_mut().resource_mut::<Assets<Font>>();
    let regular = fonts.add(Font::from_bytes(FONT_REGULAR.to_vec()));
    let bold = fonts.add(Font::from_bytes(FONT_BOLD.to_vec()));
    app.insert_resource(Fonts { regular, bold })
        .insert_resource(ClearColor(color(palette::NIGHT)))
        .add_systems(EguiPrimaryContextPass, style_egui)
        .add_systems(
            Last,
            (|host: Res<crate::ports::Host>| host.shell.app_ready())
                .run_if(resource_added::<Styled>),
        );
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
