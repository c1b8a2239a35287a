//! PostgreSQL: the store for many nodes (issue 19, under way). For now, the local cluster that
//! its tests and benchmark start.

mod cluster;

pub use cluster::{ClusterError, LocalCluster, ROLE};
