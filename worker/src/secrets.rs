//! Room ids, owner keys and the hashes the room keeps instead of them.
//!
//! Randomness comes from `getrandom` (the runtime's `crypto.getRandomValues` on Workers). Only
//! hashes are persisted: a leaked Durable Object database reveals neither owner keys nor addresses.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use duet_shared::api::{OWNER_KEY_BYTES, ROOM_ID_BYTES};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Randomness was unavailable. On Workers this does not happen in practice; it is still an error,
/// never a silently weak id.
#[derive(Debug, thiserror::Error)]
#[error("no secure randomness available: {0}")]
pub struct NoRandomness(String);

fn random<const N: usize>() -> Result<[u8; N], NoRandomness> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| NoRandomness(e.to_string()))?;
    Ok(bytes)
}

/// A new room id: 128 random bits, base64url (22 characters).
pub fn new_room_id() -> Result<String, NoRandomness> {
    Ok(URL_SAFE_NO_PAD.encode(random::<ROOM_ID_BYTES>()?))
}

/// A new owner key: 256 random bits, base64url.
pub fn new_owner_key() -> Result<String, NoRandomness> {
    Ok(URL_SAFE_NO_PAD.encode(random::<OWNER_KEY_BYTES>()?))
}

/// A new salt for this room's IP hashes.
pub fn new_salt() -> Result<String, NoRandomness> {
    Ok(URL_SAFE_NO_PAD.encode(random::<16>()?))
}

/// A new matchbox peer id (random UUID v4).
pub fn new_peer_uuid() -> Result<Uuid, NoRandomness> {
    Ok(uuid::Builder::from_random_bytes(random::<16>()?).into_uuid())
}

/// Hex SHA-256 of an owner key: what the room stores and compares against.
pub fn hash_owner_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Whether `presented` is the owner key whose hash is `stored_hash`. Compares in constant time so
/// response timing leaks nothing about the hash.
pub fn owner_key_matches(stored_hash: &str, presented: &str) -> bool {
    let computed = hash_owner_key(presented);
    let (a, b) = (computed.as_bytes(), stored_hash.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Salted hash of an IP address, so a ban can cover a network without storing the address.
pub fn hash_ip(salt: &str, ip: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(ip.trim().as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use duet_shared::api::{ROOM_ID_LEN, is_valid_room_id};

    #[test]
    fn room_ids_are_valid_and_distinct() {
        let a = new_room_id().unwrap();
        let b = new_room_id().unwrap();
        assert_eq!(a.len(), ROOM_ID_LEN);
        assert!(is_valid_room_id(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn owner_key_check() {
        let key = new_owner_key().unwrap();
        let stored = hash_owner_key(&key);
        assert!(!stored.contains(&key));
        assert!(owner_key_matches(&stored, &key));
        assert!(!owner_key_matches(&stored, "wrong"));
        assert!(!owner_key_matches(&stored, ""));
    }

    #[test]
    fn ip_hash_depends_on_salt() {
        assert_eq!(hash_ip("s", "127.0.0.1"), hash_ip("s", "127.0.0.1"));
        assert_ne!(hash_ip("s", "127.0.0.1"), hash_ip("t", "127.0.0.1"));
        assert_ne!(hash_ip("s", "127.0.0.1"), hash_ip("s", "127.0.0.2"));
    }

    #[test]
    fn peer_ids_are_v4() {
        assert_eq!(new_peer_uuid().unwrap().get_version_num(), 4);
    }
}
