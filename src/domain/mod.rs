//! The inventory model and the rules that turn it into Flux inputs. No I/O here.

pub mod blast;
pub mod convergence;
pub mod diff;
pub mod encode;
pub mod feed;
pub mod merge;
pub mod model;
pub mod names;
pub mod overlay;
pub mod report;
pub mod rollout;
pub mod validate;
pub mod values;
pub mod window;
