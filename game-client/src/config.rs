//! The client's configuration: which Duet server to talk to and which STUN/TURN servers to use.
//!
//! Read from `assets/config.ron` (RON) so a deployment changes a file, not the code; command-line
//! flags override it. Missing or broken files are reported in words and fall back to defaults
//! that work with `cargo xtask dev`.

use bevy::prelude::*;
use serde::{Deserialize, Serialize};

/// One STUN or TURN server (TURN needs the credentials): the same entry the room's server
/// hands out, so a configured list and a fetched one are one type.
pub use duet_shared::api::IceServer;

/// The whole configuration.
#[derive(Resource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// Base URL of the Duet worker, e.g. `http://127.0.0.1:8787`.
    pub server: String,
    /// ICE servers for every connection.
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
    /// Files the peer offers up to this size are taken without asking; larger ones wait for
    /// the person's yes.
    #[serde(default = "default_ask_above")]
    pub ask_above_bytes: u64,
}

fn default_ask_above() -> u64 {
    duet_shared::admission::DEFAULT_ASK_ABOVE_BYTES
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            server: "http://127.0.0.1:8787".into(),
            ice_servers: Vec::new(),
            ask_above_bytes: default_ask_above(),
        }
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid RON for [`ClientConfig`].
    #[error("{path} is not a valid Duet configuration: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// The server URL is not http(s).
    #[error("the server must be an http:// or https:// URL, not {0:?}")]
    BadServer(String),
}

impl ClientConfig {
    /// Parses RON text; `path` only names the source in errors.
    pub fn from_ron(text: &str, path: &str) -> Result<Self, ConfigError> {
        let config: Self = ron::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validated()
    }

    /// Trims a trailing slash and checks the scheme.
    pub fn validated(mut self) -> Result<Self, ConfigError> {
        self.server = self.server.trim_end_matches('/').to_owned();
        if !(self.server.starts_with("http://") || self.server.starts_with("https://")) {
            return Err(ConfigError::BadServer(self.server));
        }
        Ok(self)
    }

    /// The shareable link of a room on this server.
    pub fn room_link(&self, room: &str) -> String {
        format!("{}/r/{room}", self.server)
    }
}

/// Whether the page's test hooks (`?automation`, `?fault_drop_grant=N`) may work on a page
/// served from `hostname`: only on a loopback address, where `wrangler dev` serves tests. On any
/// other host they are ignored, so a shared link to a deployed Duet cannot switch on fault
/// injection (stalled transfers) or the console event log in someone else's tab.
pub fn test_hooks_allowed(hostname: &str) -> bool {
    let host = hostname.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host (and port) part of an `http(s)://` or `ws(s)://` URL, lower-cased, for comparing
/// servers; `None` if `url` has no scheme.
pub fn authority(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(rest[..end].to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_hooks_only_on_loopback_and_authorities_compare_servers() {
        for host in [
            "127.0.0.1",
            "localhost",
            "[::1]",
            "::1",
            "127.0.0.2",
            "LOCALHOST",
        ] {
            assert!(test_hooks_allowed(host), "{host}");
        }
        for host in [
            "duet.example",
            "localhost.example",
            "10.0.0.1",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!test_hooks_allowed(host), "{host}");
        }
        assert_eq!(
            authority("https://Duet.Example:8443/r/abc?x").as_deref(),
            Some("duet.example:8443")
        );
        assert_eq!(
            authority("ws://127.0.0.1:8787").as_deref(),
            Some("127.0.0.1:8787")
        );
        assert_eq!(authority("no scheme"), None);
    }

    #[test]
    fn the_shipped_config_parses_and_errors_are_sentences() {
        let shipped = include_str!("../../assets/config.ron");
        let config = ClientConfig::from_ron(shipped, "assets/config.ron").unwrap();
        assert_eq!(config.server, "http://127.0.0.1:8787");
        let turn = r#"(server: "https://duet.example/", ice_servers: [
            (urls: ["turn:t.example:3478"], username: Some("u"), credential: Some("p")),
        ])"#;
        let config = ClientConfig::from_ron(turn, "x").unwrap();
        assert_eq!(config.server, "https://duet.example");
        assert_eq!(config.ice_servers[0].credential.as_deref(), Some("p"));
        assert_eq!(config.room_link("abc"), "https://duet.example/r/abc");
        let err = ClientConfig::from_ron("(server: 3)", "bad.ron").unwrap_err();
        assert!(
            err.to_string().starts_with("bad.ron is not a valid"),
            "{err}"
        );
        let err = ClientConfig::from_ron(r#"(server: "ftp://x")"#, "x").unwrap_err();
        assert!(matches!(err, ConfigError::BadServer(_)));
    }
}
