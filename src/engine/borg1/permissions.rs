//! Which RPC calls a borg 1 key may make: what each method needs of the key ([`access`]),
//! and what a key with given permissions gets for it ([`judge`]). borg 1's `borg serve` has
//! no permissions of its own; borg-gate's are `all` and `read-only`. borg 2's model, borg's
//! own per-namespace letters, is `borg2/permissions.rs`.
//!
//! Pure. The serve loop asks at two points, and the table says which: a call on the
//! repository as a whole ([`Access::Manage`]) is refused before anything else is looked at,
//! a write to the open repository ([`Access::Write`]) once the call reaches one.

use super::rpc::Method;
use crate::policy::Permissions;

/// What an RPC call needs of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reading, or nothing at all: every key may make the call.
    Read,
    /// Changes the repository as a whole (breaks its lock, deletes it), named as the refusal
    /// names it.
    Manage(&'static str),
    /// Changes the open repository, named as the refusal names it.
    Write(&'static str),
    /// Changes the repository only when the client asks for it with the call's flag (`check`
    /// with `repair`, `open` with `create`); see [`Access::when_asked`].
    WhenAsked(&'static str),
    /// A change that a read-only key's client asks for as a matter of course: `commit` after
    /// reading, and the nonce reservation of borg 1.2's `check`. It is acknowledged without
    /// changing anything.
    Acknowledge,
}

impl Access {
    /// The access of a [`Access::WhenAsked`] call whose flag is `asked`: a write when it is.
    pub(crate) fn when_asked(self, asked: bool) -> Access {
        match self {
            Access::WhenAsked(name) if asked => Access::Write(name),
            Access::WhenAsked(_) => Access::Read,
            other => other,
        }
    }
}

/// What each method needs.
pub(crate) fn access(method: &Method) -> Access {
    match method {
        Method::Len
        | Method::Get
        | Method::List
        | Method::Scan
        | Method::LoadKey
        | Method::GetFreeNonce
        | Method::Rollback
        | Method::Negotiate
        | Method::InjectException
        | Method::Unknown(_) => Access::Read,
        Method::BreakLock => Access::Manage("break-lock"),
        Method::Destroy => Access::Manage("destroy"),
        Method::Put => Access::Write("put"),
        Method::Delete => Access::Write("delete"),
        Method::SaveKey => Access::Write("save_key"),
        Method::Check => Access::WhenAsked("check --repair"),
        Method::Open => Access::WhenAsked("init"),
        Method::Commit | Method::CommitNonceReservation => Access::Acknowledge,
    }
}

/// What a key gets for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The call runs as the client asked.
    Allowed,
    /// The call is refused; the operation's name for the refusal.
    Refused(&'static str),
    /// The call is answered as if it had run, without changing anything.
    Acknowledged,
}

/// What a key with `permissions` gets for a call that needs `access`. A key that may not do
/// everything may only read: borg 1's engine knows `all` and `read-only` (the gate maps
/// borg's other modes before they reach it), and anything else is treated as the narrower.
pub(crate) fn judge(permissions: Permissions, access: Access) -> Verdict {
    if permissions == Permissions::All {
        return Verdict::Allowed;
    }
    match access {
        Access::Read | Access::WhenAsked(_) => Verdict::Allowed,
        Access::Manage(name) | Access::Write(name) => Verdict::Refused(name),
        Access::Acknowledge => Verdict::Acknowledged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every allowlisted method, an unknown one, and what each needs.
    const TABLE: [(&str, Access); 19] = [
        ("__len__", Access::Read),
        ("check", Access::WhenAsked("check --repair")),
        ("commit", Access::Acknowledge),
        ("delete", Access::Write("delete")),
        ("destroy", Access::Manage("destroy")),
        ("get", Access::Read),
        ("list", Access::Read),
        ("scan", Access::Read),
        ("negotiate", Access::Read),
        ("open", Access::WhenAsked("init")),
        ("put", Access::Write("put")),
        ("rollback", Access::Read),
        ("save_key", Access::Write("save_key")),
        ("load_key", Access::Read),
        ("break_lock", Access::Manage("break-lock")),
        ("get_free_nonce", Access::Read),
        ("commit_nonce_reservation", Access::Acknowledge),
        ("inject_exception", Access::Read),
        ("no_such_method", Access::Read),
    ];

    #[test]
    fn every_method_needs_what_the_table_says() {
        for (name, expected) in TABLE {
            assert_eq!(
                access(&Method::from_wire(name.as_bytes())),
                expected,
                "{name}"
            );
        }
        // The table covers every allowlisted method.
        for method in Method::ALLOWED {
            assert!(
                TABLE
                    .iter()
                    .any(|(name, _)| Method::from_wire(name.as_bytes()) == method),
                "{method:?}"
            );
        }
    }

    #[test]
    fn a_key_with_every_permission_may_make_every_call() {
        for (name, needed) in TABLE {
            for asked in [false, true] {
                assert_eq!(
                    judge(Permissions::All, needed.when_asked(asked)),
                    Verdict::Allowed,
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn a_read_only_key_may_read_is_refused_each_change_by_name_and_has_its_commits_acknowledged() {
        for (name, needed) in TABLE {
            let expected = match name {
                "destroy" => Verdict::Refused("destroy"),
                "break_lock" => Verdict::Refused("break-lock"),
                "put" => Verdict::Refused("put"),
                "delete" => Verdict::Refused("delete"),
                "save_key" => Verdict::Refused("save_key"),
                "commit" | "commit_nonce_reservation" => Verdict::Acknowledged,
                _ => Verdict::Allowed,
            };
            assert_eq!(judge(Permissions::ReadOnly, needed), expected, "{name}");
        }
    }

    #[test]
    fn check_and_open_write_only_when_the_client_asks() {
        let check = access(&Method::Check);
        let open = access(&Method::Open);
        assert_eq!(
            judge(Permissions::ReadOnly, check.when_asked(true)),
            Verdict::Refused("check --repair")
        );
        assert_eq!(
            judge(Permissions::ReadOnly, check.when_asked(false)),
            Verdict::Allowed
        );
        assert_eq!(
            judge(Permissions::ReadOnly, open.when_asked(true)),
            Verdict::Refused("init")
        );
        assert_eq!(
            judge(Permissions::ReadOnly, open.when_asked(false)),
            Verdict::Allowed
        );
        // Only such calls turn into writes.
        for (name, needed) in TABLE {
            if !matches!(needed, Access::WhenAsked(_)) {
                assert_eq!(needed.when_asked(true), needed, "{name}");
                assert_eq!(needed.when_asked(false), needed, "{name}");
            }
        }
    }
}
