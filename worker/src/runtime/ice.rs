//! The runtime half of `GET /api/rooms/{room}/ice`: reads the deployment's settings, and calls
//! Cloudflare's credential API when that is the TURN service. Everything it decides comes from
//! [`crate::ice`].

use worker::{Env, Fetch, Headers, Method, Request, RequestInit};

use super::respond::{self, Failure};
use crate::ice::{IceSettings, Turn, cloudflare_request, parse_cloudflare};

/// A setting from `[vars]` or a secret (TURN secrets belong in secrets; a development run may
/// pass them as vars).
fn setting(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .or_else(|_| env.secret(name))
        .ok()
        .map(|v| v.to_string())
}

fn broken(what: String) -> Failure {
    Failure::Runtime(worker::Error::RustError(what))
}

/// The ICE servers for a client of an existing room at `now_s` (Unix seconds). A broken
/// configuration or a failed Cloudflare call is a server failure (`500`, logged with the reason);
/// the client then connects without them and says so.
pub async fn answer(env: &Env, now_s: u64) -> Result<worker::Response, Failure> {
    let settings = IceSettings::from_vars(|name| setting(env, name))
        .map_err(|e| broken(format!("ICE settings: {e}")))?;
    if let Some(config) = settings.local_answer(now_s) {
        return Ok(respond::json(200, &config)?);
    }
    let Some(Turn::Cloudflare { key_id, token }) = &settings.turn else {
        return Err(broken("ICE settings: no answer without TURN".into()));
    };
    let (url, body) = cloudflare_request(key_id, settings.ttl_s);
    let headers = Headers::new();
    headers.set("authorization", &format!("Bearer {token}"))?;
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let mut response = Fetch::Request(Request::new_with_init(&url, &init)?)
        .send()
        .await?;
    let status = response.status_code();
    let bytes = response.bytes().await?;
    let servers = parse_cloudflare(status, &bytes).map_err(|e| broken(e.to_string()))?;
    Ok(respond::json(200, &settings.with_cloudflare(servers))?)
}
