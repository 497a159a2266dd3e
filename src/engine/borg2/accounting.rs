//! How a borg 2 request reads in the session's record (pure): the call name a refusal is
//! counted under (`store packs`, `delete archives`), and which objects count as the
//! repository's data. Lock objects are rewritten every few minutes by every client, and
//! `cache/` and `index/` are rewritten by borg as a matter of course; counting them as
//! stored, read or deleted data would drown what the client did with its backups.

#![forbid(unsafe_code)]

use super::route::Operation;

/// The namespaces borg 2 keeps in a repository, as the record names them.
const NAMESPACES: [&str; 7] = [
    "archives", "cache", "config", "index", "keys", "locks", "packs",
];

/// The namespace of `name`: its first component when borg 2 knows it, `other` for any
/// other, `root` for the store itself. Never a client's string, so the record and the
/// metrics stay bounded.
pub fn namespace(name: &str) -> &'static str {
    let first = name.split('/').next().unwrap_or_default();
    if first.is_empty() {
        return "root";
    }
    NAMESPACES
        .iter()
        .find(|known| **known == first)
        .copied()
        .unwrap_or("other")
}

/// The call an operation is, for a refusal's `call`: the REST operation and the namespace
/// it touches.
pub fn call_of(operation: &Operation) -> (&'static str, &'static str) {
    match operation {
        Operation::Create => ("create", "root"),
        Operation::Destroy => ("destroy", "root"),
        Operation::Mkdir(name) => ("mkdir", namespace(name)),
        Operation::Rmdir(name) => ("rmdir", namespace(name)),
        Operation::Info(name) => ("info", namespace(name)),
        Operation::List(name) => ("list", namespace(name)),
        Operation::Load { name, .. } => ("load", namespace(name)),
        Operation::Store { name, .. } => ("store", namespace(name)),
        Operation::Delete(name) => ("delete", namespace(name)),
        Operation::Move { current, .. } => ("move", namespace(current)),
        Operation::Hash { name, .. } => ("hash", namespace(name)),
        Operation::Gather => ("gather", "packs"),
        Operation::Defrag { namespace: ns, .. } => {
            ("defrag", ns.as_deref().map_or("root", namespace))
        }
        Operation::Quota => ("quota", "root"),
    }
}

/// Whether storing or reading `name` counts as the repository's data (`objects_put`,
/// `objects_read`): everything but lock objects.
pub fn is_data(name: &str) -> bool {
    namespace(name) != "locks"
}

/// Whether deleting `name` counts in `objects_deleted`: everything but locks, the cache and
/// the index, which borg rewrites as a matter of course.
pub fn counts_as_deleted(name: &str) -> bool {
    !matches!(namespace(name), "locks" | "cache" | "index")
}

/// Whether a move is borgstore's soft delete (`NAME` to `NAME.del`) of an object that
/// counts in `objects_deleted`.
pub fn is_soft_delete(current: &str, new: &str) -> bool {
    new.strip_suffix(".del") == Some(current) && counts_as_deleted(current)
}

/// Whether storing `name` stores an archive: borg 2's end of a backup.
pub fn is_archive(name: &str) -> bool {
    namespace(name) == "archives" && !name.ends_with(".del")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_s_namespace_is_one_of_borg_s_or_other() {
        assert_eq!(namespace("packs/00/ab12"), "packs");
        assert_eq!(namespace("archives/ab12"), "archives");
        assert_eq!(namespace("locks"), "locks");
        assert_eq!(namespace(""), "root");
        assert_eq!(namespace("evil\n{\"x\":1}/y"), "other");
    }

    #[test]
    fn refusals_name_the_operation_and_its_namespace() {
        let store = Operation::Store {
            name: "packs/00/ab".into(),
            sha256: None,
        };
        assert_eq!(call_of(&store), ("store", "packs"));
        assert_eq!(
            call_of(&Operation::Delete("archives/ab".into())),
            ("delete", "archives")
        );
        let soft = Operation::Move {
            current: "archives/ab".into(),
            new: "archives/ab.del".into(),
        };
        assert_eq!(call_of(&soft), ("move", "archives"));
        assert_eq!(call_of(&Operation::Destroy), ("destroy", "root"));
    }

    #[test]
    fn locks_cache_and_index_are_not_the_client_s_data() {
        assert!(is_data("packs/00/ab"));
        assert!(is_data("archives/ab"));
        assert!(!is_data("locks/ab"));
        assert!(counts_as_deleted("archives/ab"));
        assert!(counts_as_deleted("packs/00/ab"));
        for name in ["locks/ab", "cache/chunks", "index/ab"] {
            assert!(!counts_as_deleted(name), "{name}");
        }
    }

    #[test]
    fn only_a_move_to_name_dot_del_is_a_soft_delete() {
        assert!(is_soft_delete("archives/ab", "archives/ab.del"));
        assert!(!is_soft_delete("archives/ab.del", "archives/ab"));
        assert!(!is_soft_delete("archives/ab", "archives/cd.del"));
        assert!(!is_soft_delete("cache/x", "cache/x.del"));
        assert!(is_archive("archives/ab"));
        assert!(!is_archive("archives/ab.del"));
        assert!(!is_archive("packs/ab"));
    }
}
