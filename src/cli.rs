//! Command-line definitions: gate mode, `serve`, `explain`, `check-policy`.
