//! The ICE servers a room's clients connect through: STUN URLs, and short-lived TURN credentials
//! from either a TURN server that takes the TURN REST scheme (coturn's `use-auth-secret`) or
//! Cloudflare's TURN service.
//!
//! Everything here is pure: the settings are read from a lookup function, the time is passed in,
//! and the one network call (Cloudflare's credential API) is only described here (request in,
//! answer parsed) and carried out by the runtime. So it is unit-tested natively, and the part
//! that cannot be tested offline is a single `fetch`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use duet_shared::api::{IceConfig, IceServer, MAX_ICE_TTL_S};
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// STUN servers when `STUN_URLS` is not set: a free public one. Set `STUN_URLS = ""` for none.
pub const DEFAULT_STUN_URLS: &str = "stun:stun.cloudflare.com:3478";

/// Credential life when `ICE_TTL_SECS` is not set.
pub const DEFAULT_TTL_S: u32 = MAX_ICE_TTL_S;

/// Shortest credential life accepted: a client must have time to connect and reconnect.
pub const MIN_TTL_S: u32 = 60;

/// Most URLs taken from one setting: a configuration is short, and every URL is work for each
/// client's ICE agent.
pub const MAX_URLS: usize = 8;

/// Most bytes of Cloudflare's answer read.
pub const MAX_CLOUDFLARE_ANSWER: usize = 16 * 1024;

/// Where Cloudflare's TURN service mints credentials (`{key_id}` filled in).
const CLOUDFLARE_API: &str = "https://rtc.live.cloudflare.com/v1/turn/keys";

/// A configuration the Worker cannot serve. The deployment is broken, not the request: the
/// runtime answers `500` with this sentence, so the operator reads it in the client's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IceSettingsError {
    /// A URL of the wrong scheme for its setting.
    #[error("{setting} holds {url:?}, which is not a {expected} URL")]
    BadUrl {
        /// `STUN_URLS` or `TURN_URLS`.
        setting: &'static str,
        /// The offending entry.
        url: String,
        /// `stun:` or `turn:`/`turns:`.
        expected: &'static str,
    },
    /// More URLs than [`MAX_URLS`].
    #[error("{0} lists more than {MAX_URLS} URLs")]
    TooManyUrls(&'static str),
    /// One half of a pair of settings without the other.
    #[error("{given} is set but {missing} is not: set both, or neither")]
    Incomplete {
        /// The setting that is there.
        given: &'static str,
        /// The one that is missing.
        missing: &'static str,
    },
    /// Both TURN schemes at once.
    #[error("both TURN_URLS and TURN_KEY_ID are set: choose one TURN service")]
    TwoTurnServices,
    /// `ICE_TTL_SECS` is not a number of seconds.
    #[error("ICE_TTL_SECS is {0:?}, not a number of seconds")]
    BadTtl(String),
}

/// Which TURN service hands out relays, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// A TURN server sharing `secret` with the Worker (TURN REST credentials).
    Rest {
        /// `turn:` / `turns:` URLs.
        urls: Vec<String>,
        /// The shared secret (coturn's `static-auth-secret`).
        secret: String,
    },
    /// Cloudflare's TURN service, through its credential API.
    Cloudflare {
        /// The TURN key's id.
        key_id: String,
        /// The key's API token (a bearer token; never sent to clients).
        token: String,
    },
}

/// What the deployment configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceSettings {
    /// STUN URLs handed to every client.
    pub stun: Vec<String>,
    /// The TURN service, if any.
    pub turn: Option<Turn>,
    /// How long credentials live, in seconds.
    pub ttl_s: u32,
}

fn urls(
    setting: &'static str,
    value: &str,
    schemes: &[&str],
    expected: &'static str,
) -> Result<Vec<String>, IceSettingsError> {
    let urls: Vec<String> = value
        .split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.len() > MAX_URLS {
        return Err(IceSettingsError::TooManyUrls(setting));
    }
    if let Some(bad) = urls
        .iter()
        .find(|u| !schemes.iter().any(|s| u.starts_with(s)) || u.len() > 256)
    {
        return Err(IceSettingsError::BadUrl {
            setting,
            url: bad.clone(),
            expected,
        });
    }
    Ok(urls)
}

impl IceSettings {
    /// Reads `STUN_URLS`, `TURN_URLS` + `TURN_SECRET`, `TURN_KEY_ID` + `TURN_KEY_API_TOKEN` and
    /// `ICE_TTL_SECS` through `var` (unset settings are `None`; empty TURN settings count as
    /// unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, IceSettingsError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let stun = urls(
            "STUN_URLS",
            &var("STUN_URLS").unwrap_or_else(|| DEFAULT_STUN_URLS.to_owned()),
            &["stun:", "stuns:"],
            "stun:",
        )?;
        let rest = match (set("TURN_URLS"), set("TURN_SECRET")) {
            (Some(list), Some(secret)) => Some(Turn::Rest {
                urls: urls("TURN_URLS", &list, &["turn:", "turns:"], "turn:")?,
                secret,
            }),
            (Some(_), None) => {
                return Err(IceSettingsError::Incomplete {
                    given: "TURN_URLS",
                    missing: "TURN_SECRET",
                });
            }
            (None, Some(_)) => {
                return Err(IceSettingsError::Incomplete {
                    given: "TURN_SECRET",
                    missing: "TURN_URLS",
                });
            }
            (None, None) => None,
        };
        let cloudflare = match (set("TURN_KEY_ID"), set("TURN_KEY_API_TOKEN")) {
            (Some(key_id), Some(token)) => Some(Turn::Cloudflare { key_id, token }),
            (Some(_), None) => {
                return Err(IceSettingsError::Incomplete {
                    given: "TURN_KEY_ID",
                    missing: "TURN_KEY_API_TOKEN",
                });
            }
            (None, Some(_)) => {
                return Err(IceSettingsError::Incomplete {
                    given: "TURN_KEY_API_TOKEN",
                    missing: "TURN_KEY_ID",
                });
            }
            (None, None) => None,
        };
        let turn = match (rest, cloudflare) {
            (Some(_), Some(_)) => return Err(IceSettingsError::TwoTurnServices),
            (rest, cloudflare) => rest.or(cloudflare),
        };
        let ttl_s = match set("ICE_TTL_SECS") {
            None => DEFAULT_TTL_S,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map_err(|_| IceSettingsError::BadTtl(v.clone()))?
                .clamp(MIN_TTL_S, MAX_ICE_TTL_S),
        };
        Ok(Self { stun, turn, ttl_s })
    }

    /// The answer when no call to another service is needed (no TURN, or TURN REST), at
    /// `now_s` (Unix seconds).
    pub fn local_answer(&self, now_s: u64) -> Option<IceConfig> {
        let mut servers = self.stun_entry();
        match &self.turn {
            Some(Turn::Cloudflare { .. }) => return None,
            Some(Turn::Rest { urls, secret }) => {
                servers.push(turn_rest_credentials(urls, secret, now_s, self.ttl_s));
            }
            None => {}
        }
        Some(IceConfig {
            ice_servers: servers,
            ttl_s: self.ttl_s,
        })
    }

    fn stun_entry(&self) -> Vec<IceServer> {
        if self.stun.is_empty() {
            Vec::new()
        } else {
            vec![IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            }]
        }
    }

    /// The answer once Cloudflare's credential API answered `servers`: this deployment's STUN
    /// URLs, then Cloudflare's servers.
    pub fn with_cloudflare(&self, servers: Vec<IceServer>) -> IceConfig {
        let mut all = self.stun_entry();
        all.extend(servers);
        IceConfig {
            ice_servers: all,
            ttl_s: self.ttl_s,
        }
    }
}

/// TURN REST credentials (draft-uberti-behave-turn-rest, as coturn's `use-auth-secret` takes
/// them): user name `"{expiry}:duet"`, password `base64(HMAC-SHA1(secret, user name))`. The
/// TURN server checks the MAC and the expiry; it needs no call to the Worker. The user name
/// names no room and no person: relays learn nothing about who is talking.
pub fn turn_rest_credentials(urls: &[String], secret: &str, now_s: u64, ttl_s: u32) -> IceServer {
    let username = format!("{}:duet", now_s + u64::from(ttl_s));
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    IceServer {
        urls: urls.to_vec(),
        username: Some(username),
        credential: Some(STANDARD.encode(mac.finalize().into_bytes())),
    }
}

/// The request to Cloudflare's credential API: URL and JSON body (the runtime adds
/// `Authorization: Bearer {token}` and `Content-Type: application/json`).
pub fn cloudflare_request(key_id: &str, ttl_s: u32) -> (String, String) {
    // The key id goes into a path: anything but the hex/alphanumeric ids Cloudflare issues is
    // dropped rather than allowed to change the path.
    let key_id: String = key_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (
        format!("{CLOUDFLARE_API}/{key_id}/credentials/generate-ice-servers"),
        format!("{{\"ttl\":{ttl_s}}}"),
    )
}

/// Why Cloudflare's answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudflareError {
    /// A status other than success.
    #[error("Cloudflare's TURN API answered {0}")]
    Status(u16),
    /// Not the JSON it documents, or larger than [`MAX_CLOUDFLARE_ANSWER`].
    #[error("Cloudflare's TURN API answered something unexpected: {0}")]
    Unexpected(String),
}

/// What Cloudflare's credential API answered with `status` and `body`: its ICE servers. Both
/// shapes it has used are taken: `{"iceServers": [ ... ]}` (`generate-ice-servers`) and
/// `{"iceServers": { ... }}` (the older `generate`); `urls` may be one string or a list. Only
/// STUN/TURN URLs are passed on.
pub fn parse_cloudflare(status: u16, body: &[u8]) -> Result<Vec<IceServer>, CloudflareError> {
    if !(200..300).contains(&status) {
        return Err(CloudflareError::Status(status));
    }
    if body.len() > MAX_CLOUDFLARE_ANSWER {
        return Err(CloudflareError::Unexpected(format!(
            "{} bytes, more than {MAX_CLOUDFLARE_ANSWER}",
            body.len()
        )));
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    #[derive(serde::Deserialize)]
    struct Server {
        urls: OneOrMany<String>,
        username: Option<String>,
        credential: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        ice_servers: OneOrMany<Server>,
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| CloudflareError::Unexpected(e.to_string()))?;
    let servers = match answer.ice_servers {
        OneOrMany::One(server) => vec![server],
        OneOrMany::Many(servers) => servers,
    };
    let servers: Vec<IceServer> = servers
        .into_iter()
        .filter_map(|server| {
            let urls: Vec<String> = match server.urls {
                OneOrMany::One(url) => vec![url],
                OneOrMany::Many(urls) => urls,
            }
            .into_iter()
            .filter(|u| {
                ["stun:", "stuns:", "turn:", "turns:"]
                    .iter()
                    .any(|s| u.starts_with(s))
            })
            .take(MAX_URLS)
            .collect();
            (!urls.is_empty()).then_some(IceServer {
                urls,
                username: server.username,
                credential: server.credential,
            })
        })
        .collect();
    if servers.is_empty() {
        return Err(CloudflareError::Unexpected("no ICE server in it".into()));
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<IceSettings, IceSettingsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        IceSettings::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn stun_alone_by_default_and_none_when_emptied() {
        let default = settings(&[]).unwrap();
        assert_eq!(default.stun, vec![DEFAULT_STUN_URLS.to_owned()]);
        assert_eq!(default.turn, None);
        let answer = default.local_answer(1_000).unwrap();
        assert_eq!(answer.ice_servers.len(), 1);
        assert!(!answer.ice_servers[0].is_turn());
        assert_eq!(answer.ttl_s, DEFAULT_TTL_S);
        let none = settings(&[("STUN_URLS", "")]).unwrap();
        assert!(none.local_answer(1_000).unwrap().ice_servers.is_empty());
    }

    #[test]
    fn turn_rest_credentials_are_what_coturn_checks() {
        let s = settings(&[
            ("STUN_URLS", "stun:10.0.0.1:3478"),
            (
                "TURN_URLS",
                "turn:10.0.0.1:3478?transport=udp, turn:10.0.0.1:3478?transport=tcp",
            ),
            ("TURN_SECRET", "north"),
            ("ICE_TTL_SECS", "600"),
        ])
        .unwrap();
        let answer = s.local_answer(1_700_000_000).unwrap();
        assert_eq!(answer.ttl_s, 600);
        let turn = &answer.ice_servers[1];
        assert!(turn.is_turn());
        assert_eq!(turn.urls.len(), 2);
        assert_eq!(turn.username.as_deref(), Some("1700000600:duet"));
        // The same MAC computed independently: `printf %s 1700000600:duet | openssl dgst
        // -sha1 -hmac north -binary | base64`.
        assert_eq!(
            turn.credential.as_deref(),
            Some("JuiMze6/X8Q+3JJa6/t89uVCiEI=")
        );
        // Another secret, another password; another time, another user name.
        let other = turn_rest_credentials(&turn.urls, "south", 1_700_000_000, 600);
        assert_ne!(other.credential, turn.credential);
        let later = turn_rest_credentials(&turn.urls, "north", 1_700_000_001, 600);
        assert_ne!(later.username, turn.username);
    }

    #[test]
    fn credentials_live_an_hour_at_most_and_a_minute_at_least() {
        assert_eq!(
            settings(&[("ICE_TTL_SECS", "86400")]).unwrap().ttl_s,
            MAX_ICE_TTL_S
        );
        assert_eq!(settings(&[("ICE_TTL_SECS", "5")]).unwrap().ttl_s, MIN_TTL_S);
        assert_eq!(
            settings(&[("ICE_TTL_SECS", "soon")]),
            Err(IceSettingsError::BadTtl("soon".into()))
        );
    }

    #[test]
    fn broken_configurations_are_named() {
        assert_eq!(
            settings(&[("TURN_URLS", "turn:h:3478")]),
            Err(IceSettingsError::Incomplete {
                given: "TURN_URLS",
                missing: "TURN_SECRET"
            })
        );
        assert_eq!(
            settings(&[("TURN_KEY_API_TOKEN", "t")]),
            Err(IceSettingsError::Incomplete {
                given: "TURN_KEY_API_TOKEN",
                missing: "TURN_KEY_ID"
            })
        );
        assert_eq!(
            settings(&[
                ("TURN_URLS", "turn:h"),
                ("TURN_SECRET", "s"),
                ("TURN_KEY_ID", "k"),
                ("TURN_KEY_API_TOKEN", "t"),
            ]),
            Err(IceSettingsError::TwoTurnServices)
        );
        assert!(matches!(
            settings(&[("STUN_URLS", "turn:h:3478")]),
            Err(IceSettingsError::BadUrl { .. })
        ));
        assert!(matches!(
            settings(&[("TURN_URLS", "https://h"), ("TURN_SECRET", "s")]),
            Err(IceSettingsError::BadUrl { .. })
        ));
        let many = ["stun:h"; MAX_URLS + 1].join(",");
        assert_eq!(
            settings(&[("STUN_URLS", &many)]),
            Err(IceSettingsError::TooManyUrls("STUN_URLS"))
        );
        // Empty TURN settings are no TURN (how a secret is "removed" in a vars file).
        assert_eq!(
            settings(&[("TURN_URLS", ""), ("TURN_SECRET", " ")])
                .unwrap()
                .turn,
            None
        );
    }

    #[test]
    fn cloudflare_is_asked_for_the_ttl_and_its_answer_is_taken_in_both_shapes() {
        let s = settings(&[("TURN_KEY_ID", "abc123"), ("TURN_KEY_API_TOKEN", "secret")]).unwrap();
        assert_eq!(s.local_answer(0), None, "Cloudflare has to be asked");
        let (url, body) = cloudflare_request("abc123/../x?y", s.ttl_s);
        assert_eq!(
            url,
            "https://rtc.live.cloudflare.com/v1/turn/keys/abc123xy/credentials/generate-ice-servers"
        );
        assert_eq!(body, r#"{"ttl":3600}"#);
        let list = br#"{"iceServers":[{"urls":["stun:stun.cloudflare.com:3478"]},
            {"urls":["turn:turn.cloudflare.com:3478?transport=udp","https://not-ice"],
             "username":"u","credential":"c"}]}"#;
        let servers = parse_cloudflare(201, list).unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(
            servers[1].urls,
            vec!["turn:turn.cloudflare.com:3478?transport=udp"]
        );
        assert_eq!(servers[1].credential.as_deref(), Some("c"));
        let answer = s.with_cloudflare(servers);
        assert_eq!(answer.ice_servers.len(), 3, "our STUN, then theirs");
        let single = br#"{"iceServers":{"urls":"turn:turn.cloudflare.com:3478","username":"u","credential":"c"}}"#;
        assert_eq!(parse_cloudflare(200, single).unwrap().len(), 1);
        assert_eq!(
            parse_cloudflare(401, b"{}"),
            Err(CloudflareError::Status(401))
        );
        assert!(matches!(
            parse_cloudflare(201, b"<html>"),
            Err(CloudflareError::Unexpected(_))
        ));
        assert!(matches!(
            parse_cloudflare(201, br#"{"iceServers":[]}"#),
            Err(CloudflareError::Unexpected(_))
        ));
        let huge = vec![b' '; MAX_CLOUDFLARE_ANSWER + 1];
        assert!(matches!(
            parse_cloudflare(201, &huge),
            Err(CloudflareError::Unexpected(_))
        ));
    }
}
