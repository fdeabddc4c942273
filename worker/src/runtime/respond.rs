//! Building responses: JSON bodies, error bodies with sentences a person can act on, CORS.

use duet_shared::api::{ApiError, ErrorCode};
use serde::Serialize;
use worker::{EncodeBody, Headers, Response, ResponseBody, Result};

/// A failure that ends a request. Refusals carry a code and a human sentence; runtime failures
/// are reported as `internal` with the runtime's words.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// An expected refusal (unknown room, full, banned, bad input...).
    #[error("{1}")]
    Refused(ErrorCode, String),
    /// The runtime failed underneath us (storage, bindings).
    #[error("internal error: {0}")]
    Runtime(#[from] worker::Error),
}

impl Failure {
    /// Shorthand for a refusal.
    pub fn refuse(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure::Refused(code, message.into())
    }

    /// The response this failure becomes.
    pub fn into_response(self) -> Result<Response> {
        match self {
            Failure::Refused(code, message) => error(code, message),
            Failure::Runtime(e) => {
                worker::console_error!("runtime failure: {e}");
                // The runtime's words stay in the log: they describe our internals.
                error(
                    ErrorCode::Internal,
                    "The server failed to handle this request. Try again in a moment.",
                )
            }
        }
    }
}

/// The app page's Content-Security-Policy: its own scripts and wasm only, no inline script, no
/// framing, network only to this server (the API and the signaling WebSocket), its own manifest
/// and service worker (`web/sw.js`, which keeps the app for the next visit). The same text is
/// in `web/_headers` for the static files; a test checks they agree.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
    media-src 'self' blob: mediastream:; font-src 'self'; connect-src 'self'; \
    manifest-src 'self'; worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'none'";

/// The app's page (for room links) with the security headers of `web/_headers`.
pub fn page(html: Vec<u8>) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "text/html; charset=utf-8")?;
    headers.set("content-security-policy", PAGE_CSP)?;
    headers.set("x-content-type-options", "nosniff")?;
    headers.set("x-frame-options", "DENY")?;
    headers.set("referrer-policy", "no-referrer")?;
    headers.set("cross-origin-opener-policy", "same-origin")?;
    headers.set("cache-control", "no-cache")?;
    Ok(Response::from_bytes(html)?.with_headers(headers))
}

/// A gzipped wasm module, sent as it is stored (the runtime must not compress it again).
/// `etag` (when the stored file has one) lets the next request for it be answered with a 304.
pub fn gzipped_wasm(body: ResponseBody, etag: &str) -> Result<Response> {
    let headers = Headers::new();
    if !etag.is_empty() {
        headers.set("etag", etag)?;
    }
    headers.set("content-type", "application/wasm")?;
    headers.set("content-encoding", "gzip")?;
    headers.set("x-content-type-options", "nosniff")?;
    headers.set("cache-control", "no-cache")?;
    Ok(Response::from_body(body)?
        .with_headers(headers)
        .with_encode_body(EncodeBody::Manual))
}

/// The browser's copy is current: no body.
pub fn not_modified(etag: &str) -> Result<Response> {
    let headers = Headers::new();
    headers.set("etag", etag)?;
    headers.set("cache-control", "no-cache")?;
    Ok(Response::empty()?.with_status(304).with_headers(headers))
}

/// Headers every API response carries: JSON, and open CORS so other tools can call the API.
fn api_headers() -> Result<Headers> {
    let headers = Headers::new();
    headers.set("x-content-type-options", "nosniff")?;
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("access-control-allow-origin", "*")?;
    headers.set("cache-control", "no-store")?;
    Ok(headers)
}

/// A JSON response with `status`.
pub fn json<T: Serialize>(status: u16, body: &T) -> Result<Response> {
    let text = serde_json::to_string(body).map_err(|e| worker::Error::RustError(e.to_string()))?;
    Ok(Response::ok(text)?
        .with_status(status)
        .with_headers(api_headers()?))
}

/// An error response: `{"error": code, "message": sentence}` with the code's status.
pub fn error(code: ErrorCode, message: impl Into<String>) -> Result<Response> {
    json(
        code.status(),
        &ApiError {
            error: code,
            message: message.into(),
        },
    )
}

/// `204 No Content` with the API headers.
pub fn no_content() -> Result<Response> {
    Ok(Response::empty()?
        .with_status(204)
        .with_headers(api_headers()?))
}

/// Answer to a CORS preflight.
pub fn preflight() -> Result<Response> {
    let headers = api_headers()?;
    headers.set("access-control-allow-methods", "GET, POST, DELETE, OPTIONS")?;
    headers.set(
        "access-control-allow-headers",
        "authorization, content-type",
    )?;
    headers.set("access-control-max-age", "86400")?;
    Ok(Response::empty()?.with_status(204).with_headers(headers))
}
