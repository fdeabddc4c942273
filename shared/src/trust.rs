//! Who is who, provably: a device's keys, the proof a client gives the signaling server, the
//! proof two peers give each other, and the safety code two people compare.
//!
//! A device has one long-term Ed25519 key ([`DeviceKey`]): its public half is the identity a
//! person's peers remember. The signaling server never sees it. For each room the device derives
//! a [`RoomKey`] from it, so the server can recognise the same device coming back to the same
//! room (to replace its own seat, to ban it) without learning anything that links rooms together.
//!
//! Between peers, each side proves its long-term key over *this* connection: it signs a
//! [`Transcript`] naming the room, both DTLS certificate fingerprints as it sees them in the
//! local and remote SDP, its own nonce and the peer's nonce commitment. Someone relaying between
//! the two (a hostile signaling server giving each side a connection to itself) holds other
//! certificates, so the fingerprints one side signs are not the ones the other side sees.
//!
//! Nonces are committed to before they are revealed ([`commit`]): each side sends the hash of
//! its nonce first and its nonce only once it holds the peer's commitment. The safety code
//! covers both nonces, so whoever sits in the middle has fixed its own nonces before it learns
//! the ones that decide each side's code, and cannot search for two equal codes.
//!
//! Pure functions over bytes: the caller brings the randomness (seeds, nonces) and the time.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes of secret a key is made from.
pub const SEED_BYTES: usize = 32;
/// Bytes in a connection nonce.
pub const NONCE_BYTES: usize = 16;
/// How far a join proof's time may be from the server's, either way. Device clocks drift and
/// some are set by hand; a replayed proof is refused anyway when the seat it names is held by a
/// proof at least as new (see [`JoinProof`]).
pub const JOIN_PROOF_SKEW_MS: u64 = 10 * 60 * 1000;
/// Digits in the safety code two people compare.
pub const SAFETY_CODE_DIGITS: usize = 6;
/// The longest DTLS fingerprint line value accepted (`sha-512` with colons is 199 characters).
pub const MAX_DTLS_FINGERPRINT_CHARS: usize = 256;

const ROOM_KEY_TAG: &[u8] = b"duet room key v1\0";
const JOIN_TAG: &[u8] = b"duet join v1\0";
const HELLO_TAG: &[u8] = b"duet hello v1\0";
const NONCE_TAG: &[u8] = b"duet nonce v1\0";
const SAFETY_TAG: &[u8] = b"duet safety code v1\0";
const FINGERPRINT_TAG: &[u8] = b"duet key fingerprint v1\0";

/// Why a key, proof or description was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// Not 32 bytes of hex, or not a point on the curve.
    #[error("not a public key")]
    BadKey,
    /// Not 64 bytes of hex.
    #[error("not a signature")]
    BadSignature,
    /// The signature does not match the key and the message.
    #[error("the signature does not match")]
    Forged,
    /// The proof's time is further than [`JOIN_PROOF_SKEW_MS`] from now.
    #[error("the proof's time is too far from the server's clock")]
    Stale,
    /// A field of a join proof is missing or malformed.
    #[error("the join proof is incomplete or malformed: {0}")]
    Malformed(&'static str),
    /// The nonce does not hash to the commitment the peer sent before.
    #[error("the nonce does not match its commitment")]
    BrokenCommitment,
    /// The SDP names no DTLS fingerprint, or more than one.
    #[error("the session description has no single DTLS fingerprint")]
    NoFingerprint,
}

/// An Ed25519 public key: a device's identity, or its key for one room.
///
/// Serialized as hex in text formats (JSON storage, where it is also a map key) and as 32 raw
/// bytes in binary ones (the peer protocol).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            Self::from_hex(&text).map_err(serde::de::Error::custom)
        } else {
            let bytes = <[u8; 32]>::deserialize(d)?;
            VerifyingKey::from_bytes(&bytes).map_err(serde::de::Error::custom)?;
            Ok(Self(bytes))
        }
    }
}

impl PublicKey {
    /// Lower-case hex, as it travels in URLs and storage.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses [`to_hex`](Self::to_hex) output; the bytes must be a valid curve point.
    pub fn from_hex(text: &str) -> Result<Self, TrustError> {
        let bytes: [u8; 32] = unhex(text).ok_or(TrustError::BadKey)?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| TrustError::BadKey)?;
        Ok(Self(bytes))
    }

    /// A short form for people to read and compare: 16 characters of Crockford base32 (80 bits
    /// of a hash of the key) in groups of four, e.g. `7K3M-Q9XD-2HRW-5TNB`.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update(FINGERPRINT_TAG)
            .chain_update(self.0)
            .finalize();
        let text = base32(&digest[..10]);
        text.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// A stable UUID for places that want one (the signaling server's seat records): derived
    /// from the key, so it says nothing the key does not.
    pub fn uuid(&self) -> uuid::Uuid {
        let digest = Sha256::digest(self.0);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    fn verifying(&self) -> Result<VerifyingKey, TrustError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| TrustError::BadKey)
    }

    fn verify(&self, message: &[u8], signature: &Sig) -> Result<(), TrustError> {
        let signature = Signature::from_bytes(&signature.0);
        self.verifying()?
            .verify_strict(message, &signature)
            .map_err(|_| TrustError::Forged)
    }

    /// Checks the peer's signed hello. `transcript` is from the *signer's* point of view (see
    /// [`Transcript::as_seen_by_peer`]).
    pub fn verify_hello(
        &self,
        transcript: &Transcript<'_>,
        signature: &Sig,
    ) -> Result<(), TrustError> {
        self.verify(&transcript.message(self), signature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sig(pub [u8; 64]);

impl Sig {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses [`to_hex`](Self::to_hex) output.
    pub fn from_hex(text: &str) -> Result<Self, TrustError> {
        unhex(text).map(Self).ok_or(TrustError::BadSignature)
    }
}

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig({}…)", &self.to_hex()[..8])
    }
}

impl Serialize for Sig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes64;
        impl<'de> serde::de::Visitor<'de> for Bytes64 {
            type Value = Sig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Sig, E> {
                <[u8; 64]>::try_from(v)
                    .map(Sig)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Sig, A::Error> {
                let mut out = [0u8; 64];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<u8>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(65, &self));
                }
                Ok(Sig(out))
            }
        }
        d.deserialize_bytes(Bytes64)
    }
}

/// This device's long-term key. Secret: it never leaves the device, and its `Debug` says nothing.
#[derive(Clone)]
pub struct DeviceKey(SigningKey);

impl DeviceKey {
    /// The key made from `seed` (32 random bytes the caller drew, or the stored seed).
    pub fn from_seed(seed: [u8; SEED_BYTES]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// The seed to store.
    pub fn seed(&self) -> [u8; SEED_BYTES] {
        self.0.to_bytes()
    }

    /// The identity peers remember.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// This device's key for `room`: stable for the room, unrelated to any other room's.
    pub fn room_key(&self, room: &str) -> RoomKey {
        let digest = Sha256::new()
            .chain_update(ROOM_KEY_TAG)
            .chain_update(self.0.to_bytes())
            .chain_update(room.as_bytes())
            .finalize();
        RoomKey(SigningKey::from_bytes(&digest.into()))
    }

    /// Signs this side's hello for the connection `transcript` describes (from this side's
    /// point of view).
    pub fn sign_hello(&self, transcript: &Transcript<'_>) -> Sig {
        Sig(self.0.sign(&transcript.message(&self.public())).to_bytes())
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey({})", self.public().fingerprint())
    }
}

/// A device's key for one room: what the signaling server knows it by.
#[derive(Clone)]
pub struct RoomKey(SigningKey);

impl RoomKey {
    /// The public half the server sees.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// A proof that the holder of this key asks to join `room` at `now_ms`.
    pub fn sign_join(&self, room: &str, now_ms: u64) -> JoinProof {
        let signature = Sig(self.0.sign(&join_message(room, now_ms)).to_bytes());
        JoinProof {
            key: self.public(),
            ts_ms: now_ms,
            signature,
        }
    }
}

impl fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomKey({})", self.public().fingerprint())
    }
}

fn join_message(room: &str, ts_ms: u64) -> Vec<u8> {
    let mut message = Vec::with_capacity(JOIN_TAG.len() + 16 + room.len());
    message.extend_from_slice(JOIN_TAG);
    push_field(&mut message, room.as_bytes());
    message.extend_from_slice(&ts_ms.to_be_bytes());
    message
}

/// A client's signed request to join a room, carried in the signaling URL's query
/// (`key`, `ts`, `sig`).
///
/// It proves the holder of `key` asked at `ts_ms`. The server takes it only within
/// [`JOIN_PROOF_SKEW_MS`] of its own clock, and lets it replace a seat held by the same key only
/// when it is newer than the proof that seat was taken with: a proof someone copied (from a log,
/// a proxy, a shared screen) never displaces the person it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinProof {
    /// The device's key for this room.
    pub key: PublicKey,
    /// The client's clock when it signed, ms since the Unix epoch.
    pub ts_ms: u64,
    /// Signature over the room id and `ts_ms`.
    pub signature: Sig,
}

impl JoinProof {
    /// The query parameters that carry the proof, without a leading `?` or `&`.
    pub fn query(&self) -> String {
        format!(
            "key={}&ts={}&sig={}",
            self.key.to_hex(),
            self.ts_ms,
            self.signature.to_hex()
        )
    }

    /// Reads a proof from a URL's query pairs: `Ok(None)` when there is no `key` (a plain
    /// matchbox client), an error when a proof is there but incomplete or malformed.
    pub fn from_query<K, V>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Option<Self>, TrustError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let (mut key, mut ts, mut sig) = (None, None, None);
        for (k, v) in pairs {
            let slot = match k.as_ref() {
                "key" => &mut key,
                "ts" => &mut ts,
                "sig" => &mut sig,
                _ => continue,
            };
            if slot.is_some() {
                return Err(TrustError::Malformed("a field appears twice"));
            }
            *slot = Some(v.as_ref().to_owned());
        }
        let Some(key) = key else {
            return match (ts, sig) {
                (None, None) => Ok(None),
                _ => Err(TrustError::Malformed("no key")),
            };
        };
        let key = PublicKey::from_hex(&key)?;
        let ts_ms = ts
            .ok_or(TrustError::Malformed("no time"))?
            .parse::<u64>()
            .map_err(|_| TrustError::Malformed("the time is not a number"))?;
        let signature = Sig::from_hex(&sig.ok_or(TrustError::Malformed("no signature"))?)?;
        Ok(Some(Self {
            key,
            ts_ms,
            signature,
        }))
    }

    /// Checks the signature over `room` and the time against `now_ms`.
    pub fn verify(&self, room: &str, now_ms: u64) -> Result<(), TrustError> {
        if self.ts_ms.abs_diff(now_ms) > JOIN_PROOF_SKEW_MS {
            return Err(TrustError::Stale);
        }
        self.key
            .verify(&join_message(room, self.ts_ms), &self.signature)
    }
}

/// The hash of a nonce, sent before the nonce itself.
pub fn commit(nonce: &[u8; NONCE_BYTES]) -> [u8; 32] {
    Sha256::new()
        .chain_update(NONCE_TAG)
        .chain_update(nonce)
        .finalize()
        .into()
}

/// Checks that the peer's revealed `nonce` is the one it committed to.
pub fn check_commitment(
    nonce: &[u8; NONCE_BYTES],
    commitment: &[u8; 32],
) -> Result<(), TrustError> {
    if commit(nonce) == *commitment {
        Ok(())
    } else {
        Err(TrustError::BrokenCommitment)
    }
}

/// What one side's hello signature covers, from that side's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript<'a> {
    /// The room id.
    pub room: &'a str,
    /// The signer's DTLS certificate fingerprint (from its local description).
    pub own_dtls: &'a str,
    /// The other side's, as the signer sees it (from its remote description).
    pub peer_dtls: &'a str,
    /// The signer's nonce.
    pub own_nonce: [u8; NONCE_BYTES],
    /// The other side's nonce commitment, as the signer received it.
    pub peer_commitment: [u8; 32],
}

impl<'a> Transcript<'a> {
    /// The transcript the peer must have signed if nobody is in the middle: this side's view
    /// with the roles swapped. `peer_nonce` is the nonce the peer revealed; `own_nonce` is
    /// this side's.
    pub fn as_seen_by_peer(
        &self,
        peer_nonce: [u8; NONCE_BYTES],
        own_nonce: &[u8; NONCE_BYTES],
    ) -> Transcript<'a> {
        Transcript {
            room: self.room,
            own_dtls: self.peer_dtls,
            peer_dtls: self.own_dtls,
            own_nonce: peer_nonce,
            peer_commitment: commit(own_nonce),
        }
    }

    fn message(&self, signer: &PublicKey) -> Vec<u8> {
        let mut message = Vec::with_capacity(256);
        message.extend_from_slice(HELLO_TAG);
        message.extend_from_slice(&signer.0);
        push_field(&mut message, self.room.as_bytes());
        push_field(&mut message, self.own_dtls.as_bytes());
        push_field(&mut message, self.peer_dtls.as_bytes());
        message.extend_from_slice(&self.own_nonce);
        message.extend_from_slice(&self.peer_commitment);
        message
    }
}

/// One side of a connection, for the safety code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side<'a> {
    /// Its long-term key.
    pub key: &'a PublicKey,
    /// Its DTLS certificate fingerprint.
    pub dtls: &'a str,
    /// Its nonce.
    pub nonce: &'a [u8; NONCE_BYTES],
}

/// The code both people see, `"123 456"`: the same on both sides exactly when both see the same
/// two keys, the same two certificates and the same two nonces. Order-independent.
pub fn safety_code(a: Side<'_>, b: Side<'_>) -> String {
    let (first, second) = if (a.key, a.dtls, a.nonce) <= (b.key, b.dtls, b.nonce) {
        (a, b)
    } else {
        (b, a)
    };
    let mut hash = Sha256::new().chain_update(SAFETY_TAG);
    for side in [first, second] {
        hash.update(side.key.0);
        let mut field = Vec::new();
        push_field(&mut field, side.dtls.as_bytes());
        hash.update(field);
        hash.update(side.nonce);
    }
    let digest = hash.finalize();
    let mut top = [0u8; 8];
    top.copy_from_slice(&digest[..8]);
    let number = u64::from_be_bytes(top) % 10u64.pow(SAFETY_CODE_DIGITS as u32);
    let digits = format!("{number:0width$}", width = SAFETY_CODE_DIGITS);
    format!("{} {}", &digits[..3], &digits[3..])
}

/// The DTLS certificate fingerprint an SDP names (`a=fingerprint:sha-256 AB:CD:…`), normalised
/// to lower-case algorithm and upper-case hex. Browsers repeat it per media section; all copies
/// must agree, since a description naming two certificates cannot be bound to one.
pub fn dtls_fingerprint(sdp: &str) -> Result<String, TrustError> {
    let mut found: Option<String> = None;
    for line in sdp.lines() {
        let Some(value) = line.trim().strip_prefix("a=fingerprint:") else {
            continue;
        };
        let mut parts = value.split_whitespace();
        let (Some(algorithm), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TrustError::NoFingerprint);
        };
        let normal = format!(
            "{} {}",
            algorithm.to_ascii_lowercase(),
            hash.to_ascii_uppercase()
        );
        if normal.len() > MAX_DTLS_FINGERPRINT_CHARS {
            return Err(TrustError::NoFingerprint);
        }
        match &found {
            Some(previous) if *previous != normal => return Err(TrustError::NoFingerprint),
            _ => found = Some(normal),
        }
    }
    found.ok_or(TrustError::NoFingerprint)
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    // Length-prefixed, so that no two different field lists give the same bytes.
    out.extend_from_slice(&(field.len() as u64).to_be_bytes());
    out.extend_from_slice(field);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests;
