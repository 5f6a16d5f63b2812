//! The pure domain of upline: no I/O, no async, no clock, no randomness. Everything it decides is
//! a function of its inputs, which is what makes an auditor's replay possible.

pub mod catalog;
pub mod company;
pub mod engine;
pub mod events;
pub mod ids;
pub mod money;
pub mod net;
pub mod network;
pub mod order;
pub mod plan;
pub mod snapshot;
