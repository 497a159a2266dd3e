//! borg 1.x repository format v1: pure codecs for every on-disk structure, and the I/O that sequences them.
//!
//! Codecs: [`segment`], [`hashindex`], [`hints`], [`integrity`], [`config`], [`units`].
//! I/O: [`dir`] (handles that never follow symlinks), [`durable`] (atomic small files), [`io`]
//! (segment files), and the [`repo::Repository`] that [`transaction`], [`compact`] and
//! [`check`] extend; [`locking`] decides when it locks.

pub mod check;
pub mod compact;
pub mod config;
pub mod dir;
pub mod durable;
pub mod error;
pub mod hashindex;
pub mod hints;
pub mod integrity;
pub mod io;
pub mod locking;
pub mod repo;
pub mod segment;
#[cfg(test)]
mod tests;
pub mod transaction;
pub mod units;
