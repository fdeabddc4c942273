use super::*;

const ROOM: &str = "AAAAAAAAAAAAAAAAAAAAAA";
const NOW: u64 = 1_800_000_000_000;
const SDP_A: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=fingerprint:sha-256 aa:bb:cc\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
a=fingerprint:SHA-256 AA:BB:CC\r\n";

fn device(byte: u8) -> DeviceKey {
    DeviceKey::from_seed([byte; SEED_BYTES])
}

#[test]
fn a_device_key_survives_its_seed_and_room_keys_differ_per_room() {
    let ada = device(1);
    assert_eq!(DeviceKey::from_seed(ada.seed()).public(), ada.public());
    let here = ada.room_key(ROOM).public();
    assert_eq!(here, ada.room_key(ROOM).public(), "stable per room");
    assert_ne!(here, ada.room_key("BBBBBBBBBBBBBBBBBBBBBB").public());
    assert_ne!(
        here,
        ada.public(),
        "the server never sees the long-term key"
    );
    assert_ne!(here, device(2).room_key(ROOM).public());
    assert!(
        !format!("{ada:?}").contains(&hex(&ada.seed())),
        "Debug keeps the secret"
    );
}

#[test]
fn public_keys_round_trip_through_hex_and_refuse_junk() {
    let key = device(3).public();
    assert_eq!(PublicKey::from_hex(&key.to_hex()), Ok(key));
    assert_eq!(PublicKey::from_hex("zz"), Err(TrustError::BadKey));
    assert_eq!(
        PublicKey::from_hex(&"g".repeat(64)),
        Err(TrustError::BadKey)
    );
    assert_eq!(
        PublicKey::from_hex(&"é".repeat(32)),
        Err(TrustError::BadKey)
    );
}

#[test]
fn fingerprints_are_short_grouped_and_distinct() {
    let a = device(1).public().fingerprint();
    assert_eq!(a.len(), 19);
    assert_eq!(a.matches('-').count(), 3);
    assert_ne!(a, device(2).public().fingerprint());
    assert_eq!(device(1).public().uuid(), device(1).public().uuid());
    assert_ne!(device(1).public().uuid(), device(2).public().uuid());
}

#[test]
fn a_join_proof_verifies_for_its_room_and_time_only() {
    let key = device(1).room_key(ROOM);
    let proof = key.sign_join(ROOM, NOW);
    assert_eq!(proof.verify(ROOM, NOW), Ok(()));
    assert_eq!(proof.verify(ROOM, NOW + JOIN_PROOF_SKEW_MS), Ok(()));
    assert_eq!(
        proof.verify(ROOM, NOW + JOIN_PROOF_SKEW_MS + 1),
        Err(TrustError::Stale)
    );
    assert_eq!(
        proof.verify(ROOM, NOW - JOIN_PROOF_SKEW_MS - 1),
        Err(TrustError::Stale)
    );
    assert_eq!(
        proof.verify("BBBBBBBBBBBBBBBBBBBBBB", NOW),
        Err(TrustError::Forged),
        "a proof for one room opens no other"
    );
    let moved = JoinProof {
        ts_ms: NOW + 1,
        ..proof.clone()
    };
    assert_eq!(
        moved.verify(ROOM, NOW),
        Err(TrustError::Forged),
        "the time is signed"
    );
    let borrowed = JoinProof {
        key: device(2).room_key(ROOM).public(),
        ..proof
    };
    assert_eq!(
        borrowed.verify(ROOM, NOW),
        Err(TrustError::Forged),
        "the key is bound"
    );
}

#[test]
fn a_join_proof_round_trips_through_the_query_and_refuses_half_proofs() {
    let proof = device(1).room_key(ROOM).sign_join(ROOM, NOW);
    let query = proof.query();
    let pairs: Vec<(String, String)> = query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert_eq!(JoinProof::from_query(pairs.clone()), Ok(Some(proof)));
    let plain = [("identity", "7d3e0c6e-2d2a-4f8e-9f0a-1a2b3c4d5e6f")];
    assert_eq!(
        JoinProof::from_query(plain),
        Ok(None),
        "stock matchbox clients"
    );
    let without_sig: Vec<_> = pairs.iter().filter(|(k, _)| k != "sig").cloned().collect();
    assert!(matches!(
        JoinProof::from_query(without_sig),
        Err(TrustError::Malformed(_))
    ));
    assert!(matches!(
        JoinProof::from_query([("ts", "1"), ("sig", "00")]),
        Err(TrustError::Malformed(_))
    ));
    let mut doubled = pairs.clone();
    doubled.push(pairs[0].clone());
    assert!(matches!(
        JoinProof::from_query(doubled),
        Err(TrustError::Malformed(_))
    ));
    let mut bad_time = pairs.clone();
    bad_time[1].1 = "soon".into();
    assert!(matches!(
        JoinProof::from_query(bad_time),
        Err(TrustError::Malformed(_))
    ));
    let mut bad_sig = pairs;
    bad_sig[2].1 = "00".into();
    assert_eq!(
        JoinProof::from_query(bad_sig),
        Err(TrustError::BadSignature)
    );
}

struct Peer {
    key: DeviceKey,
    nonce: [u8; NONCE_BYTES],
    dtls: &'static str,
}

fn transcript<'a>(me: &'a Peer, remote_dtls: &'a str, peer_commitment: [u8; 32]) -> Transcript<'a> {
    Transcript {
        room: ROOM,
        own_dtls: me.dtls,
        peer_dtls: remote_dtls,
        own_nonce: me.nonce,
        peer_commitment,
    }
}

fn ada() -> Peer {
    Peer {
        key: device(1),
        nonce: [1; NONCE_BYTES],
        dtls: "sha-256 AA:AA",
    }
}

fn bob() -> Peer {
    Peer {
        key: device(2),
        nonce: [2; NONCE_BYTES],
        dtls: "sha-256 BB:BB",
    }
}

#[test]
fn a_direct_hello_verifies_on_the_other_side() {
    let (ada, bob) = (ada(), bob());
    let ada_view = transcript(&ada, bob.dtls, commit(&bob.nonce));
    let signature = ada.key.sign_hello(&ada_view);
    // Bob rebuilds what Ada must have signed from his own view.
    let bob_view = transcript(&bob, ada.dtls, commit(&ada.nonce));
    let expected = bob_view.as_seen_by_peer(ada.nonce, &bob.nonce);
    assert_eq!(expected, ada_view);
    assert_eq!(ada.key.public().verify_hello(&expected, &signature), Ok(()));
    assert_eq!(check_commitment(&ada.nonce, &commit(&ada.nonce)), Ok(()));
    assert_eq!(
        check_commitment(&[9; NONCE_BYTES], &commit(&ada.nonce)),
        Err(TrustError::BrokenCommitment)
    );
}

#[test]
fn a_relay_in_the_middle_breaks_the_hello_and_the_code() {
    let (ada, bob) = (ada(), bob());
    // Mallory gives each side a connection to herself, with her own certificates.
    let (to_ada, to_bob) = ("sha-256 M1:M1", "sha-256 M2:M2");
    let ada_view = transcript(&ada, to_ada, commit(&bob.nonce));
    let signature = ada.key.sign_hello(&ada_view);
    // She passes Ada's signed hello on to Bob unchanged.
    let bob_view = transcript(&bob, to_bob, commit(&ada.nonce));
    let expected = bob_view.as_seen_by_peer(ada.nonce, &bob.nonce);
    assert_eq!(
        ada.key.public().verify_hello(&expected, &signature),
        Err(TrustError::Forged)
    );
    // Nor does another key verify, nor a hello for another room.
    let direct = transcript(&ada, bob.dtls, commit(&bob.nonce));
    let good = ada.key.sign_hello(&direct);
    assert_eq!(
        bob.key.public().verify_hello(&direct, &good),
        Err(TrustError::Forged)
    );
    let elsewhere = Transcript {
        room: "BBBBBBBBBBBBBBBBBBBBBB",
        ..direct.clone()
    };
    assert_eq!(
        ada.key.public().verify_hello(&elsewhere, &good),
        Err(TrustError::Forged)
    );

    let (a, b) = (ada.key.public(), bob.key.public());
    let honest_ada = safety_code(
        Side {
            key: &a,
            dtls: ada.dtls,
            nonce: &ada.nonce,
        },
        Side {
            key: &b,
            dtls: bob.dtls,
            nonce: &bob.nonce,
        },
    );
    let honest_bob = safety_code(
        Side {
            key: &b,
            dtls: bob.dtls,
            nonce: &bob.nonce,
        },
        Side {
            key: &a,
            dtls: ada.dtls,
            nonce: &ada.nonce,
        },
    );
    assert_eq!(honest_ada, honest_bob, "the same code on both sides");
    assert_eq!(honest_ada.len(), 7);
    assert!(honest_ada.chars().all(|c| c.is_ascii_digit() || c == ' '));
    let m = device(9).public();
    let ada_sees = safety_code(
        Side {
            key: &a,
            dtls: ada.dtls,
            nonce: &ada.nonce,
        },
        Side {
            key: &m,
            dtls: to_ada,
            nonce: &[7; NONCE_BYTES],
        },
    );
    let bob_sees = safety_code(
        Side {
            key: &b,
            dtls: bob.dtls,
            nonce: &bob.nonce,
        },
        Side {
            key: &m,
            dtls: to_bob,
            nonce: &[8; NONCE_BYTES],
        },
    );
    assert_ne!(ada_sees, bob_sees);
}

#[test]
fn signatures_survive_the_wire_codec() {
    let signature = device(1).sign_hello(&transcript(&ada(), "x", [0; 32]));
    let bytes = postcard::to_allocvec(&signature).unwrap();
    assert_eq!(bytes.len(), 65);
    assert_eq!(postcard::from_bytes::<Sig>(&bytes).unwrap(), signature);
    assert!(postcard::from_bytes::<Sig>(&bytes[..40]).is_err());
    let json = serde_json::to_string(&signature).unwrap();
    assert_eq!(serde_json::from_str::<Sig>(&json).unwrap(), signature);
}

#[test]
fn the_sdp_fingerprint_is_found_normalised_and_must_be_single() {
    assert_eq!(dtls_fingerprint(SDP_A), Ok("sha-256 AA:BB:CC".to_owned()));
    assert_eq!(dtls_fingerprint("v=0\r\n"), Err(TrustError::NoFingerprint));
    let two = format!("{SDP_A}a=fingerprint:sha-256 DD:EE\r\n");
    assert_eq!(dtls_fingerprint(&two), Err(TrustError::NoFingerprint));
    let junk = "a=fingerprint:sha-256\r\n";
    assert_eq!(dtls_fingerprint(junk), Err(TrustError::NoFingerprint));
    let long = format!("a=fingerprint:sha-256 {}\r\n", "A".repeat(300));
    assert_eq!(dtls_fingerprint(&long), Err(TrustError::NoFingerprint));
}

#[test]
fn public_keys_are_hex_in_json_and_bytes_on_the_wire() {
    let key = device(4).public();
    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(json, format!("\"{}\"", key.to_hex()));
    assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
    let map: std::collections::BTreeMap<PublicKey, u64> = [(key, 1)].into();
    let text = serde_json::to_string(&map).unwrap();
    assert_eq!(
        serde_json::from_str::<std::collections::BTreeMap<PublicKey, u64>>(&text).unwrap(),
        map
    );
    let bytes = postcard::to_allocvec(&key).unwrap();
    assert_eq!(bytes.len(), 32);
    assert_eq!(postcard::from_bytes::<PublicKey>(&bytes).unwrap(), key);
}
