//! Per-key TOML policies: model, validation and loading.
