//! flux-inputs: a fleet inventory in one SQLite file, served to Flux Operator's
//! `ResourceSetInputProvider` (`type: ExternalService`) and edited through a CRUD API.
//!
//! Rooms, top down (each uses only those below it):
//!
//! - `main`, `cli` (the commands), `server` (start-up, background work, shutdown);
//! - `app` (the routes and middleware every request passes) over `api` (the HTTP API,
//!   poem-openapi) and `console` (the web pages) side by side, both using `auth` (who a
//!   request is) and `controller` (the rollout controller);
//! - `net` (TLS, connection limits), `config` (defaults < file < environment);
//! - `store` (SQLite: one writer, reads off the async workers, the write pipeline, caches);
//! - `domain` (the model, validation, the merge and encoding of feeds, convergence, rollout
//!   decisions: no I/O); `clock`, `error`, `telemetry` at the ground.

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
