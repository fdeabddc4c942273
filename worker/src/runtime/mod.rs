//! The Workers runtime adapter: the HTTP entry point and the `Room` Durable Object (exported to
//! the runtime by `#[durable_object]`, so nothing here re-exports it).

mod durable;
mod entry;
mod ice;
mod respond;
