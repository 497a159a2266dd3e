//! borg 1.x repository format v1: pure codecs for every on-disk structure, and the I/O that sequences them.
//!
//! Codecs: [`segment`], [`hashindex`], [`hints`], [`integrity`], [`config`], [`units`].
//! I/O: [`dir`] (handles that never follow symlinks), [`durable`] (atomic small files), [`io`]
//! (segment files), and the [`repo::Repository`] that [`transaction`], [`compact`] and
//! [`check`] extend; [`locking`] decides when it locks.

pub(crate) mod check;
pub(crate) mod compact;
pub mod config;
pub(crate) mod dir;
pub(crate) mod durable;
pub mod error;
pub mod hashindex;
pub mod hints;
pub mod integrity;
pub(crate) mod io;
pub(crate) mod locking;
pub mod repo;
pub mod segment;
#[cfg(test)]
mod tests;
pub(crate) mod transaction;
pub(crate) mod units;
