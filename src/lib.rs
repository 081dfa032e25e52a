//! flux-inputs: a fleet inventory in one SQLite file, served to Flux Operator's
//! `ResourceSetInputProvider` (`type: ExternalService`) and edited through a CRUD API.
//!
//! Layers, outside in: `api` (HTTP, poem-openapi) → `store` (SQLite, blocking work off the
//! async workers) → `domain` (the model, validation and the pure merge). `config` loads
//! settings; `server` wires them together for the binary and for tests.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod controller;
pub mod domain;
pub mod error;
pub mod net;
pub mod server;
pub mod store;
pub mod systemd;
pub mod telemetry;
