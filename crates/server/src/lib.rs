//! # flotilla-server
//!
//! The server around the Raft core: etcd's v3 gRPC API over an MVCC key-value store.

#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod codec;
pub mod concurrency;
pub mod config;
pub mod driver;
pub mod gateway;
pub mod h2c;
pub mod metrics;
pub mod mvcc;
pub mod pb;
pub mod server;
pub mod transport;
pub mod watch;
pub mod wire;

/// The generated gRPC services (servers and clients) of `etcdserverpb`, and etcd's Lock
/// (`v3lockpb`) and Election (`v3electionpb`) services.
#[allow(missing_docs, clippy::all)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.KV.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.Cluster.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.Maintenance.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.Watch.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.Lease.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.Auth.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.Lock.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.Election.rs"));
}
