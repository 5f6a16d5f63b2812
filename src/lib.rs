//! The `upline` binary's library: configuration, composition of the services, and the
//! command-line tools. The binary (`main.rs`) only parses arguments and calls in here, so tests
//! start the same server in-process.

pub mod admin;
pub mod bench;
pub mod config;
pub mod demo;
pub mod explain;
pub mod inputs;
pub mod server;
