//! husk's host side: the OCI runtime's library.
//!
//! Organised by lifecycle verb: [`container`] (the library, one module per verb),
//! [`cli`] and [`commands`] (the command line over it), [`state`] (the store under `--root`), [`bundle`] (config.json),
//! [`config`] (`/etc/husk/config.toml` and per-container VM settings),
//! [`logging`] (runc-style log lines), [`error`], [`hooks`] (OCI hooks, on the host), [`sandbox`] (the process that owns
//! a container's microVM) and [`agent`] (the client of the in-guest agent).

pub mod agent;
pub mod bundle;
pub mod cli;
pub mod commands;
pub mod config;
pub mod container;
pub mod error;
pub mod hooks;
pub mod logging;
pub mod network;
pub mod sandbox;
pub mod state;
