//! Errors of the engine's inputs. Nothing that arrives from the network is an error: bad
//! datagrams are dropped and logged at TRACE.

use crate::types::PeerId;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("no connection to peer {0:?}")]
    UnknownPeer(PeerId),
    #[error("bad candidate: {0}")]
    BadCandidate(String),
    #[error("bad grant: {0}")]
    BadGrant(&'static str),
}
