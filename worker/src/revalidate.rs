//! Conditional requests for what the Worker serves itself (the development build's gzipped
//! wasm): whether the browser's copy is the current one, so the answer can be a bodiless 304.
//!
//! Why: the service worker keeps the app by asking for each file again right after the page
//! fetched it. Without a validator that second request downloads the whole wasm again (16 MB
//! for the development build); with one, the browser's HTTP cache answers and the body never
//! crosses the network twice.

/// Whether an `If-None-Match` header names `etag` (RFC 9110 §13.1.2: weak comparison, a list
/// of entity tags, or `*`). A malformed header matches nothing, so the full body is sent.
pub fn none_match_hits(if_none_match: &str, etag: &str) -> bool {
    let Some(wanted) = opaque(etag.trim()) else {
        return false;
    };
    if if_none_match.trim() == "*" {
        return true;
    }
    if_none_match
        .split(',')
        .filter_map(|tag| opaque(tag.trim()))
        .any(|tag| tag == wanted)
}

/// The quoted part of an entity tag, without its weakness prefix: `W/"x"` and `"x"` are the
/// same tag under weak comparison.
fn opaque(tag: &str) -> Option<&str> {
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    let inner = tag.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('"')).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::none_match_hits;

    #[test]
    fn the_same_tag_hits_strong_or_weak() {
        assert!(none_match_hits("\"abc\"", "\"abc\""));
        assert!(none_match_hits("W/\"abc\"", "\"abc\""));
        assert!(none_match_hits("\"abc\"", "W/\"abc\""));
        assert!(none_match_hits("\"x\", W/\"abc\"", "\"abc\""));
        assert!(none_match_hits("*", "\"abc\""));
    }

    #[test]
    fn another_tag_or_a_malformed_header_misses() {
        assert!(!none_match_hits("\"abd\"", "\"abc\""));
        assert!(!none_match_hits("abc", "\"abc\""));
        assert!(!none_match_hits("", "\"abc\""));
        assert!(!none_match_hits("\"a\"bc\"", "\"a\"bc\""));
        // No current tag: nothing can match, not even `*` (the body is sent).
        assert!(!none_match_hits("*", ""));
    }
}
