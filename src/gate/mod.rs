//! The pure gatekeeper: splitting SSH_ORIGINAL_COMMAND, the borg 1 option table, the borg 2
//! request form, and the decision.
//!
//! Nothing in here touches the file system, the environment or other processes, so every
//! rule can be tested exhaustively (see `tests/decision_table.rs`).
#![forbid(unsafe_code)]

pub(crate) mod command;
pub(crate) mod decision;
pub(crate) mod options;
pub(crate) mod rest;

pub use decision::{
    Action, ClientSettings, Decision, Judgement, OptionVerdict, Refusal, Repository, ServeArgs,
    judge,
};
