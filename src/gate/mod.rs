//! The pure gatekeeper: splitting SSH_ORIGINAL_COMMAND, the borg option table, and the decision.
