//! Which STUN and TURN servers the next connection uses: the ones `config.ron` names, or else
//! the ones the room's server hands out (`GET /api/rooms/{room}/ice`, asked before the socket
//! opens). TURN credentials from the server are short-lived, so they are asked again for a new
//! socket once half their life has passed.

use bevy::prelude::*;
use duet_shared::api::IceConfig;

use crate::config::IceServer;

/// Longest wait for the server's answer: past it the connection is tried without its servers
/// (it may still work on one network) rather than not at all. The same server carries the
/// signaling, so a slow answer is a slow server or a busy device, and the connection would wait
/// for it anyway; going on without STUN fails across any NAT. At 5 s, a software-rendered page
/// on two busy cores (its own history took 3 s to load) gave up on an answer that was coming,
/// and could not meet its peer (the network lab's browser tests, under parallel load).
pub const ICE_FETCH_TIMEOUT_MS: u64 = 15_000;

/// Where the servers in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceSource {
    /// `config.ron` named them: the server is not asked.
    Configured,
    /// The room's server handed them out.
    Server,
    /// The server could not be asked, or answered nothing usable (why, in words): the
    /// connection goes without STUN and TURN.
    Unavailable(String),
}

/// The ICE servers of the current connection (calls use them too).
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub struct IceServers {
    /// What WebRTC gets.
    pub servers: Vec<IceServer>,
    /// Where they came from.
    pub source: IceSource,
    /// When they should be asked again (ms since the epoch); `None`: never.
    pub refresh_at_ms: Option<u64>,
}

impl IceServers {
    /// Whether a TURN relay is among them.
    pub fn has_relay(&self) -> bool {
        self.servers.iter().any(IceServer::is_turn)
    }

    /// Whether they are still good for a new connection at `now_ms`.
    fn fresh(&self, now_ms: u64) -> bool {
        match self.source {
            IceSource::Configured => true,
            IceSource::Server => self.refresh_at_ms.is_none_or(|at| now_ms < at),
            // A new connection asks again: the server may be back.
            IceSource::Unavailable(_) => false,
        }
    }

    fn from_server(config: IceConfig, now_ms: u64) -> Self {
        Self {
            servers: config.ice_servers,
            source: IceSource::Server,
            refresh_at_ms: Some(now_ms + u64::from(config.ttl_s) * 1000 / 2),
        }
    }

    fn unavailable(why: String) -> Self {
        Self {
            servers: Vec::new(),
            source: IceSource::Unavailable(why),
            refresh_at_ms: None,
        }
    }
}

/// The server's answer under way.
#[derive(Resource)]
pub(crate) struct IceFetch {
    rx: std::sync::Mutex<std::sync::mpsc::Receiver<Result<IceConfig, String>>>,
    started_ms: u64,
}

/// `http(s)://host/api/rooms/{room}/ice` for a signaling URL `ws(s)://host/signal/{room}`.
pub(crate) fn ice_url(signal_url: &str) -> String {
    signal_url
        .replacen("ws", "http", 1)
        .replacen("/signal/", "/api/rooms/", 1)
        + "/ice"
}

/// What an HTTP outcome says; pure, so it is unit-tested without a server.
pub(crate) fn interpret(result: ehttp::Result<ehttp::Response>) -> Result<IceConfig, String> {
    let response = result.map_err(|e| format!("the server could not be reached ({e})"))?;
    if !response.ok {
        let message = serde_json::from_slice::<duet_shared::api::ApiError>(&response.bytes)
            .map(|e| e.message)
            .unwrap_or_else(|_| format!("the server answered {}", response.status));
        return Err(message);
    }
    serde_json::from_slice::<IceConfig>(&response.bytes)
        .map_err(|e| format!("the server's answer was not understood ({e})"))
}

/// The servers for a socket about to open: `Some` once known (the `IceServers` resource is
/// updated as a side effect), `None` while the server is being asked (asked here the first
/// time).
pub(crate) fn ready(
    commands: &mut Commands,
    configured: &[IceServer],
    signal_url: &str,
    current: Option<&IceServers>,
    fetch: Option<&IceFetch>,
    now_ms: u64,
) -> Option<IceServers> {
    if !configured.is_empty() {
        let servers = IceServers {
            servers: configured.to_vec(),
            source: IceSource::Configured,
            refresh_at_ms: None,
        };
        if current != Some(&servers) {
            commands.insert_resource(servers.clone());
        }
        return Some(servers);
    }
    if let Some(current) = current
        && current.fresh(now_ms)
        && fetch.is_none()
    {
        return Some(current.clone());
    }
    let Some(fetch) = fetch else {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut request = ehttp::Request::get(ice_url(signal_url));
        request.headers.insert("Accept-Encoding", "identity");
        ehttp::fetch(request, move |result| {
            let _ = tx.send(interpret(result));
        });
        commands.insert_resource(IceFetch {
            rx: std::sync::Mutex::new(rx),
            started_ms: now_ms,
        });
        return None;
    };
    let answer = match fetch.rx.lock().ok()?.try_recv() {
        Ok(answer) => answer,
        Err(std::sync::mpsc::TryRecvError::Empty)
            if now_ms < fetch.started_ms + ICE_FETCH_TIMEOUT_MS =>
        {
            return None;
        }
        Err(std::sync::mpsc::TryRecvError::Empty) => Err(format!(
            "the server did not answer in {} s",
            ICE_FETCH_TIMEOUT_MS / 1000
        )),
        Err(std::sync::mpsc::TryRecvError::Disconnected) => {
            Err("the request to the server was dropped".to_owned())
        }
    };
    commands.remove_resource::<IceFetch>();
    let servers = match answer {
        Ok(config) => IceServers::from_server(config, now_ms),
        Err(why) => {
            warn!("no ICE servers from the server: {why}");
            IceServers::unavailable(why)
        }
    };
    commands.insert_resource(servers.clone());
    Some(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::util::http_answer as response;

    #[test]
    fn the_ice_url_is_beside_the_signaling_url() {
        assert_eq!(
            ice_url("wss://duet.example/signal/abc"),
            "https://duet.example/api/rooms/abc/ice"
        );
        assert_eq!(
            ice_url("ws://127.0.0.1:8787/signal/abc"),
            "http://127.0.0.1:8787/api/rooms/abc/ice"
        );
    }

    #[test]
    fn answers_become_servers_and_failures_become_words() {
        let config = interpret(response(
            200,
            r#"{"ice_servers":[{"urls":["stun:s:3478"]},
                {"urls":["turn:t:3478"],"username":"1:duet","credential":"c"}],"ttl_s":600}"#,
        ))
        .unwrap();
        let servers = IceServers::from_server(config, 1_000);
        assert!(servers.has_relay());
        assert_eq!(servers.refresh_at_ms, Some(1_000 + 300_000));
        assert!(servers.fresh(300_999));
        assert!(!servers.fresh(301_000), "asked again at half its life");
        let refused = interpret(response(
            404,
            r#"{"error":"unknown_room","message":"This room does not exist."}"#,
        ));
        assert_eq!(refused, Err("This room does not exist.".to_owned()));
        assert!(
            interpret(response(200, "<html>"))
                .unwrap_err()
                .contains("not understood")
        );
        assert!(
            interpret(Err("refused".into()))
                .unwrap_err()
                .contains("could not be reached")
        );
        assert!(!IceServers::unavailable("x".into()).fresh(0));
    }
}
