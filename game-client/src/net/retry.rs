//! One more attempt after a handshake whose path worked but did not open in time.
//!
//! On a slow, lossy path (150 ms round trip, 1 % loss) DTLS and SCTP's set-up can lose enough
//! packets to miss the 30 s a handshake has, and a fresh handshake usually opens. Signaling
//! never introduces two peers a second time by itself, so the only way to one is to join the
//! room anew, which the server takes as this device replacing its own seat. Both sides do it:
//! the seat replacement and matchbox cancelling a handshake whose peer left signaling make two
//! rejoins at once end in one new handshake. At most once until a connection opens, so a path
//! that never opens, or a stranger who stalls every handshake, costs one rejoin and not a loop.

use bevy::prelude::*;
use matchbox_socket::HandshakeFailure;

/// Whether this room's one automatic retry is spent.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpeningRetry {
    spent: bool,
}

impl OpeningRetry {
    /// Whether to join the room again after this failure; spends the retry if so. Only a
    /// handshake that found a path is worth repeating: no path (`TimedOut`) is the networks',
    /// no answer (`Unanswered`) the peer app's, and a bad description the peer's own doing.
    pub fn after_failure(&mut self, why: HandshakeFailure) -> bool {
        if why != HandshakeFailure::NotOpened || self.spent {
            return false;
        }
        self.spent = true;
        true
    }

    /// A connection opened (or another room was joined): a later failure may be retried again.
    pub fn renew(&mut self) {
        self.spent = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_found_path_is_retried_and_only_once_until_a_connection_opens() {
        let mut retry = OpeningRetry::default();
        for other in [
            HandshakeFailure::TimedOut,
            HandshakeFailure::Unanswered,
            HandshakeFailure::BadDescription,
            HandshakeFailure::Local,
            HandshakeFailure::SignalingLost,
            HandshakeFailure::TooMany,
        ] {
            assert!(!retry.after_failure(other), "{other:?}");
        }
        assert!(retry.after_failure(HandshakeFailure::NotOpened));
        // The retry failed the same way, and so does every one after it: no loop.
        for _ in 0..3 {
            assert!(!retry.after_failure(HandshakeFailure::NotOpened));
        }
        retry.renew();
        assert!(retry.after_failure(HandshakeFailure::NotOpened));
    }
}
