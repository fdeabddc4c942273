//! Call controls in the top bar.

use super::*;

/// Call controls in the top bar: call or video call when the peer is here, the incoming-call
/// prompt, and during a call mute, camera and hang up. Only where the platform has call media.
pub(super) fn call_bar(
    ui: &mut egui::Ui,
    state: &mut PanelState,
    call: &CallState,
    (supported, video): (bool, bool),
    peer: Option<&str>,
    actions: &mut MessageWriter<CallAction>,
) {
    state.call_buttons.clear();
    if !supported {
        return;
    }
    let mut button = |ui: &mut egui::Ui, key: &'static str, label: &str| {
        let response = ui.button(label);
        state.call_buttons.push((key, response.rect));
        response.clicked()
    };
    let (muted, camera) = (call.call.muted(), call.call.camera());
    match call.call.phase() {
        CallPhase::Idle => {
            if peer.is_some() {
                if button(ui, "call", "📞 Call") {
                    actions.write(CallAction::Start { video: false });
                }
                if video && button(ui, "video_call", "Video call") {
                    actions.write(CallAction::Start { video: true });
                }
            }
        }
        CallPhase::Calling { .. } => {
            ui.label(
                egui::RichText::new(format!("Calling {}…", peer.unwrap_or("your peer")))
                    .color(ecolor(palette::ACCENT)),
            );
            if button(ui, "hangup", "Cancel") {
                actions.write(CallAction::HangUp);
            }
        }
        CallPhase::Ringing { video, .. } => {
            let what = if video { "a video call" } else { "a call" };
            ui.label(
                egui::RichText::new(format!(
                    "{} is calling: {what}",
                    peer.unwrap_or("Your peer")
                ))
                .color(ecolor(palette::ACCENT)),
            );
            if button(ui, "accept", "Accept") {
                actions.write(CallAction::Accept { video: false });
            }
            if video && button(ui, "accept_video", "Accept with video") {
                actions.write(CallAction::Accept { video: true });
            }
            if button(ui, "decline", "Decline") {
                actions.write(CallAction::Decline);
            }
        }
        CallPhase::Connecting { .. } | CallPhase::Active { .. } => {
            let connecting = matches!(call.call.phase(), CallPhase::Connecting { .. });
            ui.label(
                egui::RichText::new(if connecting {
                    "Connecting the call…"
                } else {
                    "In a call"
                })
                .color(ecolor(palette::GOOD)),
            );
            if button(ui, "mute", if muted { "Unmute" } else { "Mute" }) {
                actions.write(CallAction::SetMedia {
                    muted: !muted,
                    camera,
                });
            }
            if video
                && button(
                    ui,
                    "camera",
                    if camera { "Camera off" } else { "Camera on" },
                )
            {
                actions.write(CallAction::SetMedia {
                    muted,
                    camera: !camera,
                });
            }
            if button(ui, "hangup", "Hang up") {
                actions.write(CallAction::HangUp);
            }
        }
    }
}
