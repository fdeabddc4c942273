//! The lab's internet servers: coturn (STUN, and TURN when asked) and `wrangler dev`, both on
//! [`SERVERS`](super::SERVERS) in the internet namespace, handing out ICE servers as the shipped
//! Worker does.

use std::net::IpAddr;

use anyhow::Result;

use super::{Lab, SERVERS};
use crate::turn::Coturn;
use crate::{Wrangler, WranglerOptions};

/// The TURN REST secret coturn and the Worker share in the lab.
pub const TURN_SECRET: &str = "the lab's TURN secret";

/// The running servers; dropping them stops both.
pub struct Servers {
    /// STUN and TURN on port 3478.
    pub coturn: Coturn,
    /// Signaling and the web build.
    pub wrangler: Wrangler,
}

impl Servers {
    /// Starts both in `lab`'s internet. The Worker hands out coturn as a STUN server, and as a
    /// relay too when `relay` (without one, symmetric NATs cannot meet).
    pub fn start(lab: &Lab, relay: bool) -> Result<Self> {
        let netns = lab.internet.netns();
        let coturn = Coturn::start_in(Some(&netns), IpAddr::V4(SERVERS), 3478, TURN_SECRET, true)?;
        let mut vars = vec![("STUN_URLS".to_owned(), format!("stun:{SERVERS}:3478"))];
        if relay {
            vars.push(("TURN_URLS".into(), format!("turn:{SERVERS}:3478")));
            vars.push(("TURN_SECRET".into(), TURN_SECRET.into()));
        }
        let wrangler = Wrangler::start(WranglerOptions {
            vars,
            netns: Some((netns, SERVERS)),
            ..Default::default()
        })?;
        Ok(Self { coturn, wrangler })
    }

    /// The Worker's address in the lab's internet.
    pub fn address(&self) -> Result<std::net::SocketAddr> {
        super::browser::server_of(&self.wrangler.base)
    }
}
