//! Durable small-file replacement: write a temporary file, fsync, rename, fsync the directory.
