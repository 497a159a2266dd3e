//! The gate pipeline: policy, command, decision, audit, exec, in the order the specification gives.
