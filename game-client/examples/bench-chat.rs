//! `cargo xtask bench chat`: does a long chat history stay fast? Measures, for a history of
//! 10,000 messages and in the same run for one of 200 (the reference: one page of chat, what a
//! frame shows at first): one frame of the chat panel (egui layout and tessellation), and
//! sending one message (the frame that stores it, history save included); plus loading the long
//! history at start. Medians of 100 each. Writes `target/bench/chat.json` and prints it.

use std::time::Instant;

use bevy::prelude::*;
use bevy_egui::egui;
use bevy_pkv::PkvStore;
use duet_client::chat::history::{ChatArchive, PkvHistory};
use duet_client::chat::{ChatEntry, ChatLog, ChatPlugin, Delivery, SendChat};
use duet_client::identity::IdentityPlugin;
use duet_client::net::{ControlReceived, NetEvent, RoomLink, SendControl};
use duet_tests::median;

const LONG: usize = 10_000;
const SHORT: usize = 200;
const SAMPLES: usize = 100;

fn history(len: usize) -> ChatLog {
    ChatLog {
        entries: (0..len)
            .map(|i| ChatEntry {
                id: uuid::Uuid::from_u128(i as u128 + 1),
                author: "Bob".into(),
                author_key: None,
                mine: i % 3 == 0,
                sent_ms: 1_700_000_000_000 + i as u64,
                text: format!("message number {i}: a line of chat long enough to wrap once"),
                delivery: if i % 3 == 0 {
                    Delivery::Delivered
                } else {
                    Delivery::Received
                },
            })
            .collect(),
    }
}

/// Median milliseconds of one frame of the chat panel over `log`.
fn frame_ms(log: &ChatLog) -> f64 {
    let ctx = egui::Context::default();
    let mut shown = 0;
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(duet_client::ui::PANEL_WIDTH, 700.0),
        )),
        ..Default::default()
    };
    let mut samples = Vec::new();
    for i in 0..SAMPLES + 5 {
        let started = Instant::now();
        let mut output = ctx.run_ui(input(), |ui| {
            egui::ScrollArea::vertical()
                .stick_to_bottom(true)
                .show(ui, |ui| {
                    duet_client::ui::chat_lines(ui, &log.entries, &mut shown)
                });
        });
        let meshes = ctx.tessellate(output.shapes, output.pixels_per_point);
        std::hint::black_box(meshes);
        output.textures_delta.clear();
        if i >= 5 {
            samples.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    median(samples)
}

fn app(dir: &std::path::Path) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(PkvStore::new_in_dir(dir))
        .insert_resource(ChatArchive(Box::new(PkvHistory::new(
            PkvStore::new_in_dir_with_filename(dir, "chat.redb"),
        ))))
        .insert_resource(RoomLink::parse("http://h/r/abcdefghijklmnopqrstuv").unwrap())
        .add_message::<NetEvent>()
        .add_message::<ControlReceived>()
        .add_message::<SendControl>()
        .add_plugins((IdentityPlugin, ChatPlugin));
    app
}

/// Median milliseconds of the frame that sends (and stores) one message, with `log` as the
/// history; and how long the first frame (loading that history) took on a second start.
fn send_ms(log: &ChatLog) -> (f64, f64) {
    let dir = std::env::temp_dir().join(format!(
        "duet-bench-chat-{}-{}",
        std::process::id(),
        log.entries.len()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    {
        // Seed the history in the format before blocks, beside the identity: the first start
        // moves it to the chat store, in blocks.
        let mut store = PkvStore::new_in_dir(&dir);
        store.set("chat/abcdefghijklmnopqrstuv", log).unwrap();
        drop(store);
        let mut first = app(&dir);
        first.update();
        assert_eq!(
            first.world().resource::<ChatLog>().entries.len(),
            log.entries.len()
        );
    }
    let mut app = app(&dir);
    let started = Instant::now();
    app.update();
    let load = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(
        app.world().resource::<ChatLog>().entries.len(),
        log.entries.len()
    );
    let mut samples = Vec::new();
    for i in 0..SAMPLES {
        app.world_mut()
            .write_message(SendChat(format!("new message {i}")));
        let started = Instant::now();
        app.update();
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    assert_eq!(
        app.world().resource::<ChatLog>().entries.len(),
        log.entries.len() + SAMPLES
    );
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
    (median(samples), load)
}

fn main() {
    let (long, short) = (history(LONG), history(SHORT));
    let (frame_long, frame_short) = (frame_ms(&long), frame_ms(&short));
    let ((send_long, load_long), (send_short, _)) = (send_ms(&long), send_ms(&short));
    let result = serde_json::json!({
        "messages": LONG,
        "reference_messages": SHORT,
        "frame_ms": {"long": frame_long, "short": frame_short},
        "frame_ratio": frame_long / frame_short,
        "send_ms": {"long": send_long, "short": send_short},
        "send_ratio": send_long / send_short,
        "load_ms": load_long,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/chat.json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    println!("{result}");
}
