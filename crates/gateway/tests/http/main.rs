//! The gateway over real HTTP: `upline_gateway::run` on 127.0.0.1:0, a SqliteInbox in a
//! temporary directory, requests signed as each platform signs them.

mod answers;
mod config;
mod direct;
mod logs;
mod magento;
mod ops;
mod shopify;
mod support;
mod woocommerce;
