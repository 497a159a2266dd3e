//! Deterministic test trees (files, modes, symlinks, unicode names, incompressible data) and a
//! recursive comparison that explains every difference it finds.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// xorshift64 (Marsaglia): cheap, seeded, and good enough to defeat compression and dedup.
#[derive(Debug, Clone)]
pub(crate) struct XorShift64(u64);

impl XorShift64 {
    /// A generator for `seed`; seed 0 (a fixed point of xorshift) is replaced by a constant.
    pub(crate) fn new(seed: u64) -> XorShift64 {
        XorShift64(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub(crate) fn fill(&mut self, buffer: &mut [u8]) {
        for chunk in buffer.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// `len` pseudo-random bytes from `seed`; the same arguments always give the same bytes.
pub(crate) fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    XorShift64::new(seed).fill(&mut bytes);
    bytes
}

/// Writes `bytes` to `path` (creating parent dirs) and sets `mode` regardless of the umask.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent dirs");
    }
    fs::write(path, bytes).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn make_dir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap_or_else(|error| panic!("mkdir {}: {error}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod dir");
}

/// Fills `dir` (which must exist) with the same tree every time, about 2.1 MiB:
///
/// ```text
/// small.txt                 0644  text
/// empty                     0644  zero bytes
/// random.bin                0644  2 MiB + 12345 pseudo-random bytes (seed 1)
/// private.key               0600  pseudo-random (seed 2)
/// run.sh                    0755  a script
/// name with spaces.txt      0644
/// link-to-small  -> small.txt
/// dangling-link  -> does/not/exist
/// nested/                   0755
/// nested/zeros.bin          0644  64 KiB of zeros
/// nested/deeper/            0700
/// nested/deeper/data.txt    0640
/// nested/deeper/up-link -> ../../small.txt
/// ünïcödé/                  0755
/// ünïcödé/Grüße 日本語 ✓.txt 0644
/// ```
pub(crate) fn make_tree(dir: &Path) {
    assert!(
        dir.is_dir(),
        "make_tree needs an existing dir: {}",
        dir.display()
    );
    write_file(
        &dir.join("small.txt"),
        b"hello from borg-gate's tests\n",
        0o644,
    );
    write_file(&dir.join("empty"), b"", 0o644);
    write_file(
        &dir.join("random.bin"),
        &pseudo_random_bytes(1, 2 * 1024 * 1024 + 12345),
        0o644,
    );
    write_file(
        &dir.join("private.key"),
        &pseudo_random_bytes(2, 4096),
        0o600,
    );
    write_file(&dir.join("run.sh"), b"#!/bin/sh\necho hello\n", 0o755);
    write_file(&dir.join("name with spaces.txt"), b"spaces\n", 0o644);
    symlink("small.txt", dir.join("link-to-small")).expect("symlink");
    symlink("does/not/exist", dir.join("dangling-link")).expect("symlink");
    make_dir(&dir.join("nested"), 0o755);
    write_file(&dir.join("nested/zeros.bin"), &[0u8; 64 * 1024], 0o644);
    make_dir(&dir.join("nested/deeper"), 0o700);
    write_file(
        &dir.join("nested/deeper/data.txt"),
        b"line 1\nline 2\n",
        0o640,
    );
    symlink("../../small.txt", dir.join("nested/deeper/up-link")).expect("symlink");
    make_dir(&dir.join("ünïcödé"), 0o755);
    write_file(
        &dir.join("ünïcödé/Grüße 日本語 ✓.txt"),
        "unicode content: ✓\n".as_bytes(),
        0o644,
    );
}

/// One entry of a tree, as far as the comparison cares.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Dir { mode: u32 },
    File { mode: u32, bytes: Vec<u8> },
    Symlink { target: PathBuf },
    Other { file_type: String, mode: u32 },
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Dir { mode } => write!(f, "dir {mode:04o}"),
            Entry::File { mode, bytes } => write!(f, "file {mode:04o} {} bytes", bytes.len()),
            Entry::Symlink { target } => write!(f, "symlink -> {}", target.display()),
            Entry::Other { file_type, mode } => write!(f, "{file_type} {mode:04o}"),
        }
    }
}

/// Every entry under `root` (not `root` itself), keyed by path relative to `root`, without
/// following symlinks.
pub(crate) fn list_tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut entries = BTreeMap::new();
    walk(root, Path::new(""), &mut entries);
    entries
}

fn walk(root: &Path, relative: &Path, entries: &mut BTreeMap<PathBuf, Entry>) {
    let dir = root.join(relative);
    let listing =
        fs::read_dir(&dir).unwrap_or_else(|error| panic!("read dir {}: {error}", dir.display()));
    for item in listing {
        let item = item.expect("read dir entry");
        let relative = relative.join(item.file_name());
        let path = root.join(&relative);
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let mode = meta.permissions().mode() & 0o7777;
        let file_type = meta.file_type();
        let entry = if file_type.is_symlink() {
            Entry::Symlink {
                target: fs::read_link(&path).expect("readlink"),
            }
        } else if file_type.is_dir() {
            walk(root, &relative, entries);
            Entry::Dir { mode }
        } else if file_type.is_file() {
            Entry::File {
                mode,
                bytes: fs::read(&path).expect("read file"),
            }
        } else {
            Entry::Other {
                file_type: format!("{file_type:?}"),
                mode,
            }
        };
        entries.insert(relative, entry);
    }
}

/// The differences between the trees at `a` and `b`, one readable line each; empty when equal.
pub(crate) fn tree_differences(a: &Path, b: &Path) -> Vec<String> {
    let left = list_tree(a);
    let right = list_tree(b);
    let mut differences = Vec::new();
    for (path, entry) in &left {
        match right.get(path) {
            None => differences.push(format!("only in a: {} ({entry:?})", path.display())),
            Some(other) => {
                if let Some(difference) = describe_difference(entry, other) {
                    differences.push(format!("{}: {difference}", path.display()));
                }
            }
        }
    }
    for (path, entry) in &right {
        if !left.contains_key(path) {
            differences.push(format!("only in b: {} ({entry:?})", path.display()));
        }
    }
    differences
}

fn describe_difference(a: &Entry, b: &Entry) -> Option<String> {
    match (a, b) {
        (
            Entry::File {
                mode: mode_a,
                bytes: bytes_a,
            },
            Entry::File {
                mode: mode_b,
                bytes: bytes_b,
            },
        ) => {
            let mut problems = Vec::new();
            if mode_a != mode_b {
                problems.push(format!("mode {mode_a:04o} vs {mode_b:04o}"));
            }
            if bytes_a != bytes_b {
                let first = bytes_a
                    .iter()
                    .zip(bytes_b)
                    .position(|(x, y)| x != y)
                    .unwrap_or(bytes_a.len().min(bytes_b.len()));
                problems.push(format!(
                    "content differs ({} vs {} bytes, first difference at offset {first})",
                    bytes_a.len(),
                    bytes_b.len()
                ));
            }
            (!problems.is_empty()).then(|| problems.join(", "))
        }
        _ if a == b => None,
        _ => Some(format!("{a:?} vs {b:?}")),
    }
}

/// Panics, listing every difference, unless the trees at `a` and `b` have the same names, file
/// bytes, symlink targets and modes.
#[track_caller]
pub(crate) fn assert_trees_equal(a: &Path, b: &Path) {
    let differences = tree_differences(a, b);
    assert!(
        differences.is_empty(),
        "trees differ\n  a = {}\n  b = {}\n{}",
        a.display(),
        b.display(),
        differences
            .iter()
            .map(|line| format!("  {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
