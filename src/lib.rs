//! borg-gate: a forced-command gatekeeper for BorgBackup servers, and a drop-in `borg serve` engine.
//!
//! Start reading at [`pipeline`]: it runs the gate from policy to exec in the order the
//! specification gives. The pure decision logic lives in [`gate`] and [`policy`]; the
//! repository server lives in [`engine`].

pub mod admin;
pub mod audit;
pub mod check_policy;
pub mod cli;
pub(crate) mod common;
pub mod engine;
pub(crate) mod exec;
pub mod gate;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod sys;
#[cfg(test)]
pub(crate) mod test_support;
