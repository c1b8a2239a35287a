//! The store against real databases.

mod backends;
mod conformance;
mod postgres;
mod postgres_cluster;
