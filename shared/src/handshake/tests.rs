use super::*;
use crate::peer::Control;

const ROOM: &str = "AAAAAAAAAAAAAAAAAAAAAA";

fn sdp(fingerprint: &str) -> String {
    format!("v=0\r\na=fingerprint:sha-256 {fingerprint}\r\nm=application 9 UDP/DTLS/SCTP\r\n")
}

struct End {
    key: DeviceKey,
    name: &'static str,
    handshake: Handshake,
    greet: [u8; 32],
}

fn end(seed: u8, name: &'static str, local: &str, remote: &str) -> End {
    let key = DeviceKey::from_seed([seed; 32]);
    let (handshake, greet) = Handshake::start(
        ROOM,
        &sdp(local),
        &sdp(remote),
        [seed; NONCE_BYTES],
        key.public(),
    )
    .unwrap();
    let Control::Greet { commitment } = greet else {
        panic!("a greet");
    };
    End {
        key,
        name,
        handshake,
        greet: commitment,
    }
}

fn proof_of(control: Control) -> (PublicKey, String, [u8; NONCE_BYTES], Sig) {
    let Control::Proof {
        key,
        name,
        nonce,
        signature,
    } = control
    else {
        panic!("a proof");
    };
    (key, name, nonce, signature)
}

/// Runs both hellos: `a` and `b` exchange greets, then proofs, through whatever connected them.
fn meet(
    a: &mut End,
    b: &mut End,
) -> (
    Result<Verified, HandshakeError>,
    Result<Verified, HandshakeError>,
) {
    let a_proof = a.handshake.on_greet(b.greet, &a.key, a.name).unwrap();
    let b_proof = b.handshake.on_greet(a.greet, &b.key, b.name).unwrap();
    let (k, n, nonce, s) = proof_of(b_proof);
    let at_a = a.handshake.on_proof(k, n, nonce, &s);
    let (k, n, nonce, s) = proof_of(a_proof);
    let at_b = b.handshake.on_proof(k, n, nonce, &s);
    (at_a, at_b)
}

#[test]
fn two_ends_of_one_connection_verify_each_other_and_agree_on_the_code() {
    let mut ada = end(1, "Ada", "AA", "BB");
    let mut bob = end(2, "Bob", "BB", "AA");
    let (at_ada, at_bob) = meet(&mut ada, &mut bob);
    let (bob_seen, ada_seen) = (at_ada.unwrap(), at_bob.unwrap());
    assert_eq!(bob_seen.key, bob.key.public());
    assert_eq!(bob_seen.name, "Bob");
    assert_eq!(ada_seen.key, ada.key.public());
    assert_eq!(bob_seen.safety_code, ada_seen.safety_code);
    assert_eq!(ada.handshake.verified(), Some(&bob_seen));
}

#[test]
fn a_relay_in_the_middle_is_detected_on_both_sides() {
    // Mallory holds certificate M1 towards Ada and M2 towards Bob, and passes every message on.
    let mut ada = end(1, "Ada", "AA", "M1");
    let mut bob = end(2, "Bob", "BB", "M2");
    let (at_ada, at_bob) = meet(&mut ada, &mut bob);
    assert_eq!(at_ada, Err(HandshakeError::Intercepted));
    assert_eq!(at_bob, Err(HandshakeError::Intercepted));
    assert_eq!(ada.handshake.verified(), None);
}

#[test]
fn a_relay_that_speaks_for_itself_shows_different_codes() {
    // Mallory runs her own hello with each side under her own key: both verify her, but the
    // codes the two people read out differ.
    let mut ada = end(1, "Ada", "AA", "M1");
    let mut m_ada = end(9, "Bob", "M1", "AA");
    let mut bob = end(2, "Bob", "BB", "M2");
    let mut m_bob = end(9, "Ada", "M2", "BB");
    let (at_ada, _) = meet(&mut ada, &mut m_ada);
    let (at_bob, _) = meet(&mut bob, &mut m_bob);
    let (at_ada, at_bob) = (at_ada.unwrap(), at_bob.unwrap());
    assert_ne!(
        at_ada.key,
        bob.key.public(),
        "Ada sees a key that is not Bob's"
    );
    assert_ne!(at_ada.safety_code, at_bob.safety_code);
}

#[test]
fn a_peer_claiming_another_key_is_refused() {
    let mut ada = end(1, "Ada", "AA", "BB");
    let mut mallory = end(3, "Bob", "BB", "AA");
    let _ = ada
        .handshake
        .on_greet(mallory.greet, &ada.key, "Ada")
        .unwrap();
    let proof = mallory
        .handshake
        .on_greet(ada.greet, &mallory.key, "Bob")
        .unwrap();
    let (_, name, nonce, signature) = proof_of(proof);
    let bob = DeviceKey::from_seed([2; 32]).public();
    assert_eq!(
        ada.handshake.on_proof(bob, name, nonce, &signature),
        Err(HandshakeError::Intercepted)
    );
}

#[test]
fn order_nonces_and_names_are_enforced() {
    let mut ada = end(1, "Ada", "AA", "BB");
    let mut bob = end(2, "Bob", "BB", "AA");
    let bob_key = bob.key.public();
    assert_eq!(
        ada.handshake
            .on_proof(bob_key, "Bob".into(), [2; NONCE_BYTES], &Sig([0; 64])),
        Err(HandshakeError::OutOfOrder),
        "a proof before the greet"
    );
    let _ = ada.handshake.on_greet(bob.greet, &ada.key, "Ada").unwrap();
    assert_eq!(
        ada.handshake.on_greet(bob.greet, &ada.key, "Ada"),
        Err(HandshakeError::OutOfOrder),
        "a second greet"
    );
    let (k, n, _, s) = proof_of(bob.handshake.on_greet(ada.greet, &bob.key, "Bob").unwrap());
    assert_eq!(
        ada.handshake.on_proof(k, n.clone(), [7; NONCE_BYTES], &s),
        Err(HandshakeError::BrokenCommitment)
    );
    assert_eq!(
        ada.handshake
            .on_proof(k, "x".repeat(200), [2; NONCE_BYTES], &s),
        Err(HandshakeError::BadName)
    );
    assert!(
        ada.handshake
            .on_proof(k, n.clone(), [2; NONCE_BYTES], &s)
            .is_ok()
    );
    let other = DeviceKey::from_seed([5; 32]).public();
    assert_eq!(
        ada.handshake.on_proof(other, n, [2; NONCE_BYTES], &s),
        Err(HandshakeError::OutOfOrder),
        "no change of key within a session"
    );
}

#[test]
fn a_description_without_one_fingerprint_cannot_be_bound() {
    let key = DeviceKey::from_seed([1; 32]).public();
    assert_eq!(
        Handshake::start(ROOM, "v=0\r\n", &sdp("BB"), [1; NONCE_BYTES], key).err(),
        Some(HandshakeError::NoFingerprint)
    );
}

#[test]
fn greet_and_proof_survive_the_wire_codec() {
    let mut ada = end(1, "Ada", "AA", "BB");
    let bob = end(2, "Bob", "BB", "AA");
    let proof = ada.handshake.on_greet(bob.greet, &ada.key, "Ada").unwrap();
    let greet = Control::Greet {
        commitment: ada.greet,
    };
    for message in [greet, proof] {
        let bytes = message.encode().unwrap();
        assert_eq!(Control::decode(&bytes).unwrap(), message);
    }
}
