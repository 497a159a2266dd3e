//! Shared by the fuzz targets: a private tmpfs work directory, the fixture repository, and an
//! engine `Server` wired to in-memory streams.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use borg_gate::engine::borg1::args::parse_serve_args;
use borg_gate::engine::log::{LogConfig, RemoteLogger};
use borg_gate::engine::paths::PathContext;
use borg_gate::engine::borg1::rpc::{ReplyWriter, RequestReader};
use borg_gate::engine::borg1::server::{Ending, Server};

/// A directory on tmpfs when there is one (fsync is free there), private to this process.
pub fn work_dir() -> &'static Path {
    fixed_host_id();
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        tempfile::Builder::new()
            .prefix("borg-gate-fuzz-")
            .tempdir_in(base)
            .expect("create the fuzz work dir")
    })
    .path()
}

/// The real borg repository in `fuzz/fixtures/repo`.
pub fn fixture_repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repo")
}

/// Replaces `dest` with a fresh copy of the fixture repository.
pub fn fresh_repo(dest: &Path) {
    let _ = fs::remove_dir_all(dest);
    copy_dir(&fixture_repo(), dest);
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

/// Lock identities name this host by `BORG_HOST_ID` when set; otherwise every `open` asks
/// `getent` for the host's FQDN, a process per input.
fn fixed_host_id() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        if std::env::var_os("BORG_HOST_ID").is_none() {
            // SAFETY: runs once, before the target starts any thread of its own.
            unsafe { std::env::set_var("BORG_HOST_ID", "fuzz@localhost") };
        }
    });
}

fn no_home(_: &str) -> Option<PathBuf> {
    None
}

/// Runs `borg-gate serve --restrict-to-path <root> <extra>` over `input`, with `<root>` as the
/// working directory, and returns how it ended and what it wrote.
pub fn serve_bytes(root: &Path, extra_args: &[&str], input: &[u8]) -> (Ending, Vec<u8>) {
    let mut args = vec![
        "--restrict-to-path".to_owned(),
        root.to_str().expect("UTF-8 work dir").to_owned(),
    ];
    args.extend(extra_args.iter().map(|a| (*a).to_owned()));
    let config = parse_serve_args(&args).expect("fixed arguments parse");
    let logger = RemoteLogger::new(Box::new(std::io::sink()), &LogConfig::default());
    let log = logger.handle();
    // poll(2) on /dev/null always reports readable, so the loop never waits.
    let stdin = fs::File::open("/dev/null").expect("open /dev/null");
    let context = PathContext {
        base_dir: root.to_path_buf(),
        user: "fuzz".to_owned(),
        cwd: root.to_path_buf(),
        home_of: &no_home,
    };
    let mut server = Server::new(config, log, stdin, context);
    let mut reader = RequestReader::new(input);
    let mut writer = ReplyWriter::with_sysinfo(Vec::new(), String::new());
    let ending = server.run(&mut reader, &mut writer);
    let _ = writer.flush();
    let out = writer.into_inner().unwrap_or_default();
    (ending, out)
}
