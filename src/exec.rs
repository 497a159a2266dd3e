//! The engine's argv and environment, built from empty, and the final execve.
