//! Multi-node scenarios: real attrib nodes on loopback (real libp2p, real sled in temp dirs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod attack;
mod gossip;
mod interop;
mod restart;
mod sync;
