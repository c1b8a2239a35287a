//! The store against real databases.

mod postgres_cluster;
