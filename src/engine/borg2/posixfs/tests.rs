use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};

use super::*;

fn store() -> (tempfile::TempDir, PosixFs) {
    let dir = tempfile::tempdir().unwrap();
    let fs = PosixFs::new(dir.path().join("repo"), true);
    assert_eq!(fs.create().unwrap(), CreateOutcome::Created);
    (dir, fs)
}

fn write(root: &Root, parts: &[&str], data: &[u8]) {
    let mut pending = root.begin_write(parts).unwrap();
    pending.file().write_all(data).unwrap();
    pending.commit().unwrap();
}

fn read(root: &Root, parts: &[&str]) -> Vec<u8> {
    let (mut file, size) = root.open_object(parts).unwrap();
    let mut data = Vec::new();
    file.read_to_end(&mut data).unwrap();
    assert_eq!(data.len() as u64, size);
    data
}

#[test]
fn objects_are_written_atomically_with_missing_directories_created() {
    let (_dir, fs) = store();
    let root = fs.open().unwrap();
    write(&root, &["packs", "ab", "ab00"], b"pack");
    assert_eq!(read(&root, &["packs", "ab", "ab00"]), b"pack");
    write(&root, &["packs", "ab", "ab00"], b"replaced");
    assert_eq!(read(&root, &["packs", "ab", "ab00"]), b"replaced");
    // Only the object: no temp file left behind.
    let names: Vec<_> = fs::read_dir(fs.root_path().join("packs/ab"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ab00"]);
}

#[test]
fn an_abandoned_write_leaves_nothing() {
    let (_dir, fs) = store();
    let root = fs.open().unwrap();
    let mut pending = root.begin_write(&["config", "config"]).unwrap();
    pending.file().write_all(b"half").unwrap();
    let temp_files: Vec<_> = fs::read_dir(fs.root_path().join("config"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(temp_files.len(), 1);
    let temp = &temp_files[0];
    assert!(
        temp.starts_with("tmp") && temp.ends_with(".tmp") && temp.len() == 15,
        "{temp}"
    );
    assert!(temp[3..11].bytes().all(|b| TEMP_CHARACTERS.contains(&b)));
    drop(pending);
    assert_eq!(
        fs::read_dir(fs.root_path().join("config")).unwrap().count(),
        0
    );
    assert!(root.stat(&["config", "config"]).unwrap().is_none());
}

#[test]
fn modes_follow_borgstore() {
    let (_dir, fs) = store();
    let root = fs.open().unwrap();
    let previous = nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    write(&root, &["keys", "k"], b"key");
    nix::sys::stat::umask(previous);
    let mode = |path: &str| {
        fs::metadata(fs.root_path().join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("keys/k"), 0o600);
    assert_eq!(mode("keys"), 0o755);
}

#[test]
fn listings_are_sorted_and_leave_out_what_borgstore_leaves_out() {
    let (_dir, fs) = store();
    let root = fs.open().unwrap();
    for name in ["b", "a", "c.del"] {
        write(&root, &["ns", name], name.as_bytes());
    }
    root.mkdir(&["ns", "sub"]).unwrap();
    let path = fs.root_path().join("ns");
    fs::write(path.join("tmpabcdefgh.tmp"), b"x").unwrap();
    fs::write(path.join("quota.hid"), b"1").unwrap();
    fs::write(path.join("UPPER"), b"1").unwrap();
    symlink("/etc/passwd", path.join("link")).unwrap();
    let listing = root.list(&["ns"]).unwrap();
    let names: Vec<_> = listing.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c.del", "sub"]);
    assert_eq!(listing[0].stat.size, 1);
    assert!(!listing[0].stat.directory);
    assert!(listing[3].stat.directory);
    assert!(listing[0].stat.mtime > 1.0e9);
}

#[test]
fn symbolic_links_inside_the_store_are_never_followed() {
    let (dir, fs) = store();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    symlink(&outside, fs.root_path().join("packs")).unwrap();
    symlink(outside.join("secret"), fs.root_path().join("config")).unwrap();
    let root = fs.open().unwrap();
    assert!(matches!(
        root.open_object(&["packs", "secret"]),
        Err(FsError::Symlink)
    ));
    assert!(matches!(
        root.open_object(&["config"]),
        Err(FsError::Symlink)
    ));
    assert!(matches!(root.stat(&["config"]), Err(FsError::Symlink)));
    assert!(matches!(root.list(&["packs"]), Err(FsError::Symlink)));
    assert!(matches!(
        root.begin_write(&["packs", "new"]),
        Err(FsError::Symlink)
    ));
    assert!(matches!(
        root.delete(&["packs", "secret"]),
        Err(FsError::Symlink)
    ));
    assert!(matches!(
        root.rename(&["packs", "secret"], &["stolen"]),
        Err(FsError::Symlink)
    ));
    assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
}

#[test]
fn a_symlinked_root_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("real")).unwrap();
    symlink(dir.path().join("real"), dir.path().join("alias")).unwrap();
    let fs = PosixFs::new(dir.path().join("alias"), false);
    assert!(matches!(fs.open(), Err(FsError::NoRoot)));
}

#[test]
fn moves_replace_and_create_the_destination_directory() {
    let (_dir, fs) = store();
    let root = fs.open().unwrap();
    write(&root, &["archives", "11"], b"a");
    root.rename(&["archives", "11"], &["archives", "11.del"])
        .unwrap();
    assert!(root.stat(&["archives", "11"]).unwrap().is_none());
    assert_eq!(read(&root, &["archives", "11.del"]), b"a");
    root.rename(&["archives", "11.del"], &["elsewhere", "x"])
        .unwrap();
    assert_eq!(read(&root, &["elsewhere", "x"]), b"a");
    assert!(matches!(
        root.rename(&["archives", "missing"], &["archives", "y"]),
        Err(FsError::NotFound)
    ));
}

#[test]
fn create_refuses_a_store_that_is_not_empty_and_destroy_removes_everything() {
    let (_dir, fs) = store();
    assert_eq!(fs.create().unwrap(), CreateOutcome::Created);
    {
        let root = fs.open().unwrap();
        write(&root, &["packs", "ab", "ab00"], b"x");
    }
    assert_eq!(fs.create().unwrap(), CreateOutcome::NotEmpty);
    fs.destroy().unwrap();
    assert!(!fs.root_path().exists());
    assert!(matches!(fs.open(), Err(FsError::NoRoot)));
}

#[test]
fn deletes_and_rmdirs_report_what_is_missing_or_wrong() {
    let (_dir, fs) = store();
    let root = fs.open().unwrap();
    write(&root, &["ns", "x"], b"x");
    assert!(matches!(root.delete(&["ns", "y"]), Err(FsError::NotFound)));
    assert!(matches!(
        root.delete(&["ns"]),
        Err(FsError::WrongType | FsError::Io(_))
    ));
    assert!(root.rmdir(&["ns"]).is_err());
    root.delete(&["ns", "x"]).unwrap();
    root.rmdir(&["ns"]).unwrap();
    assert!(matches!(root.rmdir(&["ns"]), Err(FsError::NotFound)));
}

#[test]
fn hidden_files_are_replaced_atomically_and_counted_by_the_scan() {
    let (_dir, fs) = store();
    let root = fs.open().unwrap();
    write(&root, &["packs", "ab", "ab00"], &[0; 100]);
    write(&root, &["config", "config"], &[0; 20]);
    root.write_hidden("quota.hid", b"120").unwrap();
    let (content, _) = root.read_hidden("quota.hid", 100).unwrap().unwrap();
    assert_eq!(content, b"120");
    assert_eq!(root.usage_scan("quota.hid").unwrap(), 120);
    root.remove_hidden("quota.hid").unwrap();
    assert!(root.read_hidden("quota.hid", 100).unwrap().is_none());
}
