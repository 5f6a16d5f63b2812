//! The gRPC API end to end: the real server over a socket, generated tonic clients, the
//! embedded SQLite store in a tempdir.

mod discovery;
mod errors;
mod flows;
mod harness;
mod read_side;
