//! End-to-end tests of the `twinledger` binary against real Anvil and Ganache processes and real
//! SQLite files.

mod access;
mod api_schema;
mod audit;
mod bad_input;
mod bench;
mod bundle_vectors;
mod cli;
mod concurrency;
mod crash;
mod dashboard;
mod database;
mod disk;
mod embedded_chain;
mod faults;
mod log_api;
mod metrics;
mod migrate_store;
mod mqtt;
mod nodes;
mod rpc_faults;
mod seed_api;
mod support;
mod timed_chain;
mod transactions;
