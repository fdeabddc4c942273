//! `duet-client`: Duet's client binary. On the desktop, without flags it opens the window (lobby,
//! then the room) and `--headless` runs the same client without a window for tests, benchmarks
//! and scripts; in the browser it is the page's app. Both start in `app`.

fn main() -> bevy::app::AppExit {
    duet_client::app::main()
}
