//! HTTP tests over a real SQLite file in a temporary directory. One test binary (faster to
//! link); one module per concern.

mod auth;
mod binary;
mod browser;
mod cache;
mod cli;
mod concurrency;
mod connections;
mod console;
mod crash;
mod crud;
mod errors;
mod examples;
mod flux;
mod helpers;
mod history;
mod image;
mod integrity;
mod litestream;
mod observability;
mod openapi;
mod polls;
mod process;
mod properties;
mod render;
mod replica;
mod reports;
mod rollout_crash;
mod rollout_model;
mod rollouts;
mod safety;
mod scale;
mod systemd;
mod tls;
mod tokens;
mod walkthrough;
