//! borg-gate: a forced-command gatekeeper for BorgBackup servers, and a drop-in `borg serve` engine.
//!
//! Start reading at [`pipeline`]: it runs the gate from policy to exec in the order the
//! specification gives. The pure decision logic lives in [`gate`] and [`policy`]; the
//! repository server lives in [`engine`].
#![deny(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod check_policy;
pub mod cli;
pub mod common;
pub mod engine;
pub mod exec;
pub mod gate;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod sys;
#[cfg(test)]
pub(crate) mod test_support;
