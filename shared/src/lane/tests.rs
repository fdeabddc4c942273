use super::*;

/// Creates, offers and answers every lane `a` (the opener) asks for, as two platforms would,
/// and returns the lanes that reached both sides' connections.
fn negotiate(a: &mut Lanes, b: &mut Lanes, now: u64) -> Vec<LaneId> {
    a.tick(true, now);
    let mut created = Vec::new();
    for effect in a.take_effects() {
        if let LaneEffect::Op(LaneOp::Create {
            lane,
            offerer: true,
        }) = effect
        {
            a.local_description(lane, format!("offer {lane}"));
            created.push(lane);
        }
    }
    for effect in a.take_effects() {
        let LaneEffect::Send(signal) = effect else {
            continue;
        };
        b.on_signal(signal, now).unwrap();
    }
    let mut answered = Vec::new();
    for effect in b.take_effects() {
        if let LaneEffect::Op(LaneOp::RemoteDescription {
            lane,
            offer: true,
            sdp,
        }) = effect
        {
            assert_eq!(sdp, format!("offer {lane}"));
            b.local_description(lane, format!("answer {lane}"));
            answered.push(lane);
        }
    }
    for effect in b.take_effects() {
        let LaneEffect::Send(signal) = effect else {
            continue;
        };
        a.on_signal(signal, now).unwrap();
    }
    for effect in a.take_effects() {
        if let LaneEffect::Op(LaneOp::RemoteDescription {
            lane, offer: false, ..
        }) = effect
        {
            a.opened(lane);
            b.opened(lane);
        }
    }
    assert_eq!(created, answered);
    created
}

fn sent(effects: &[LaneEffect]) -> Vec<&LaneSignal> {
    effects
        .iter()
        .filter_map(|e| match e {
            LaneEffect::Send(signal) => Some(signal),
            _ => None,
        })
        .collect()
}

#[test]
fn a_long_path_gets_every_lane_and_the_count_holds_while_lanes_are_open() {
    assert_eq!(lanes_for(None), SHORT_PATH_LANES);
    assert_eq!(lanes_for(Some(20)), SHORT_PATH_LANES);
    assert_eq!(lanes_for(Some(LONG_PATH_RTT_MS)), MAX_LANES);
    let (mut a, mut b) = (Lanes::new(true), Lanes::new(false));
    a.set_count(lanes_for(Some(110)));
    let every: Vec<LaneId> = (0..MAX_LANES).collect();
    assert_eq!(negotiate(&mut a, &mut b, 10), every);
    // The round trip looks short now (or a hostile count): nothing changes while lanes are open.
    a.set_count(0);
    a.set_count(lanes_for(Some(5)));
    assert_eq!(a.count(), MAX_LANES);
    a.tick(true, 20);
    assert!(a.take_effects().is_empty());
}

#[test]
fn the_opener_opens_every_lane_while_a_transfer_wants_them() {
    let (mut a, mut b) = (Lanes::new(true), Lanes::new(false));
    a.tick(false, 0);
    assert!(a.take_effects().is_empty(), "nothing wants lanes yet");
    let every: Vec<LaneId> = (0..SHORT_PATH_LANES).collect();
    assert_eq!(negotiate(&mut a, &mut b, 10), every);
    assert_eq!(a.open().collect::<Vec<_>>(), every);
    assert_eq!(b.open().collect::<Vec<_>>(), every);
    // Still wanted: nothing more to open.
    a.tick(true, 20);
    assert!(a.take_effects().is_empty());
}

#[test]
fn the_other_side_never_opens_and_refuses_nothing_it_may_take() {
    let mut b = Lanes::new(false);
    b.tick(true, 0);
    assert!(b.take_effects().is_empty());
    let mut a = Lanes::new(true);
    assert_eq!(
        a.on_signal(
            LaneSignal::Offer {
                lane: 0,
                sdp: "x".into()
            },
            0
        ),
        Err(LaneRefusal::NotOpener)
    );
}

#[test]
fn an_offer_for_a_lane_in_use_closes_it() {
    let (mut a, mut b) = (Lanes::new(true), Lanes::new(false));
    negotiate(&mut a, &mut b, 0);
    let twice = LaneSignal::Offer {
        lane: 1,
        sdp: "again".into(),
    };
    assert_eq!(b.on_signal(twice, 5), Err(LaneRefusal::Twice(1)));
    let effects = b.take_effects();
    assert!(effects.contains(&LaneEffect::Op(LaneOp::Close { lane: 1 })));
    assert!(
        effects.contains(&LaneEffect::Lost(1)),
        "frames on it are lost"
    );
    assert_eq!(sent(&effects), vec![&LaneSignal::Close { lane: 1 }]);
    let others: Vec<LaneId> = (0..SHORT_PATH_LANES).filter(|&l| l != 1).collect();
    assert_eq!(b.open().collect::<Vec<_>>(), others);
}

#[test]
fn a_peer_reopening_lanes_in_a_loop_is_held_to_the_bucket() {
    let mut b = Lanes::new(false);
    let mut taken = 0;
    let mut refused = 0;
    for i in 0..50u64 {
        let lane = (i % u64::from(MAX_LANES)) as LaneId;
        let now = i;
        let _ = b.on_signal(LaneSignal::Close { lane }, now);
        match b.on_signal(
            LaneSignal::Offer {
                lane,
                sdp: "o".into(),
            },
            now,
        ) {
            Ok(()) => taken += 1,
            Err(LaneRefusal::TooFast) => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(
        taken, LANE_OPEN_BURST,
        "handshakes started in the first 50 ms"
    );
    assert_eq!(refused, 50 - LANE_OPEN_BURST);
    // One more per refill.
    let _ = b.on_signal(LaneSignal::Close { lane: 0 }, LANE_REFILL_MS + 49);
    assert_eq!(
        b.on_signal(
            LaneSignal::Offer {
                lane: 0,
                sdp: "o".into()
            },
            LANE_REFILL_MS + 49
        ),
        Ok(())
    );
}

#[test]
fn signals_out_of_limits_end_only_their_lane() {
    let (mut a, mut b) = (Lanes::new(true), Lanes::new(false));
    negotiate(&mut a, &mut b, 0);
    b.take_effects();
    assert_eq!(
        b.on_signal(LaneSignal::Close { lane: MAX_LANES }, 1),
        Err(LaneRefusal::Invalid("lane number out of range"))
    );
    assert!(
        b.take_effects().is_empty(),
        "no lane of that number to close"
    );
    let long = LaneSignal::Candidate {
        lane: 2,
        candidate: "c".repeat(MAX_CANDIDATE_BYTES + 1),
        mid: None,
        mline: Some(0),
    };
    assert!(matches!(b.on_signal(long, 1), Err(LaneRefusal::Invalid(_))));
    let others: Vec<LaneId> = (0..SHORT_PATH_LANES).filter(|&l| l != 2).collect();
    assert_eq!(b.open().collect::<Vec<_>>(), others);
}

#[test]
fn more_candidates_than_a_real_peer_sends_close_the_lane() {
    let mut b = Lanes::new(false);
    b.on_signal(
        LaneSignal::Offer {
            lane: 0,
            sdp: "o".into(),
        },
        0,
    )
    .unwrap();
    let candidate = || LaneSignal::Candidate {
        lane: 0,
        candidate: "candidate:1 1 udp 1 10.0.0.1 9 typ host".into(),
        mid: Some("0".into()),
        mline: None,
    };
    for _ in 0..MAX_REMOTE_CANDIDATES {
        b.on_signal(candidate(), 1).unwrap();
    }
    assert_eq!(
        b.on_signal(candidate(), 1),
        Err(LaneRefusal::TooManyCandidates(0))
    );
    let ops = b
        .take_effects()
        .into_iter()
        .filter(|e| matches!(e, LaneEffect::Op(LaneOp::RemoteCandidate { .. })))
        .count();
    assert_eq!(ops, MAX_REMOTE_CANDIDATES as usize);
    assert_eq!(
        b.on_signal(candidate(), 2),
        Err(LaneRefusal::Stale(0)),
        "the lane is closed"
    );
}

#[test]
fn a_lane_that_does_not_connect_in_time_closes() {
    let mut a = Lanes::new(true);
    a.tick(true, 0);
    a.take_effects();
    a.opened(1);
    assert_eq!(a.poll_timeout(), Some(LANE_CONNECT_MS));
    a.tick(true, LANE_CONNECT_MS - 1);
    assert!(a.take_effects().is_empty());
    a.tick(true, LANE_CONNECT_MS);
    let effects = a.take_effects();
    let closed: Vec<_> = sent(&effects);
    let others: Vec<_> = (0..SHORT_PATH_LANES)
        .filter(|&l| l != 1)
        .map(|lane| LaneSignal::Close { lane })
        .collect();
    assert_eq!(closed, others.iter().collect::<Vec<_>>());
    assert!(
        !effects.contains(&LaneEffect::Lost(0)),
        "nothing went over it"
    );
    assert_eq!(a.open().collect::<Vec<_>>(), vec![1]);
}

#[test]
fn lanes_close_once_no_transfer_wanted_them_for_a_while() {
    let (mut a, mut b) = (Lanes::new(true), Lanes::new(false));
    negotiate(&mut a, &mut b, 0);
    a.tick(true, 1_000);
    b.tick(true, 1_000);
    assert_eq!(a.poll_timeout(), Some(1_000 + LANE_IDLE_MS));
    a.tick(false, LANE_IDLE_MS);
    assert!(a.take_effects().is_empty());
    a.tick(false, 1_000 + LANE_IDLE_MS);
    let effects = a.take_effects();
    for lane in 0..SHORT_PATH_LANES {
        assert!(effects.contains(&LaneEffect::Lost(lane)));
        assert!(effects.contains(&LaneEffect::Send(LaneSignal::Close { lane })));
    }
    assert_eq!(a.open().count(), 0);
    assert_eq!(a.poll_timeout(), None, "nothing to wait for");
    for signal in sent(&effects) {
        b.on_signal(signal.clone(), 1_000 + LANE_IDLE_MS).unwrap();
    }
    assert_eq!(b.open().count(), 0);
    assert!(
        sent(&b.take_effects()).is_empty(),
        "a close is not answered with a close"
    );
}

#[test]
fn a_failed_lane_loses_its_frames_and_is_opened_again() {
    let (mut a, mut b) = (Lanes::new(true), Lanes::new(false));
    negotiate(&mut a, &mut b, 0);
    a.failed(2);
    let effects = a.take_effects();
    assert!(effects.contains(&LaneEffect::Lost(2)));
    assert_eq!(sent(&effects), vec![&LaneSignal::Close { lane: 2 }]);
    a.tick(true, 10);
    assert_eq!(
        a.take_effects(),
        vec![LaneEffect::Op(LaneOp::Create {
            lane: 2,
            offerer: true
        })]
    );
}

#[test]
fn a_late_answer_for_a_closed_lane_is_dropped_quietly() {
    let mut a = Lanes::new(true);
    assert_eq!(
        a.on_signal(
            LaneSignal::Answer {
                lane: 0,
                sdp: "late".into()
            },
            0
        ),
        Err(LaneRefusal::Stale(0))
    );
    assert!(a.take_effects().is_empty());
}
