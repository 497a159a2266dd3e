//! The only module that may use `unsafe`: thin wrappers around system calls that nix marks unsafe.
