//! The built-in engines: drop-in replacements for BorgBackup 1.x's `borg serve` (msgpack RPC,
//! this module and its siblings) and for borg 2's `borg serve --rest` (HTTP, `borg2/`).

pub mod args;
pub mod borg2;
pub mod clock;
pub mod key_quota;
pub mod lock;
pub mod log;
pub mod paths;
pub mod reporting;
pub mod repository;
pub mod rpc;
pub mod server;
pub mod tally;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use args::{apply_client_command, parse_serve_args};
use log::{LogConfig, RemoteLogger};
use paths::PathContext;
use rpc::{ReplyWriter, RequestReader, SysInfo};
use server::{Ending, Server};

/// Exit status for bad command lines and unusable environments.
const EXIT_ERROR: u8 = 2;

/// `borg-gate serve`: runs the engine the command line asks for (borg 2's REST server with
/// `--rest`, else borg 1's RPC server) and returns the process exit status.
pub fn serve_main(args: &[OsString]) -> u8 {
    if borg2::wants_rest(args) {
        return borg2::serve_main(args);
    }
    match serve(args) {
        Ok(status) => status,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "borg-gate: serve: {message}");
            linger_for_client();
            EXIT_ERROR
        }
    }
}

/// How long a refused session keeps stdout open after its last stderr line.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// borg clients read stdout before stderr when both are ready, so an error line followed at
/// once by end-of-stream is lost; a short pause lets the line arrive on its own.
pub fn linger_for_client() {
    let _ = std::io::stderr().flush();
    std::thread::sleep(LINGER);
}

fn serve(args: &[OsString]) -> Result<u8, String> {
    let args = args
        .iter()
        .map(|arg| {
            arg.to_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("argument {arg:?} is not UTF-8"))
        })
        .collect::<Result<Vec<String>, String>>()?;
    let mut config = parse_serve_args(&args).map_err(|e| e.to_string())?;
    if config.help {
        print!("{}", USAGE);
        return Ok(0);
    }
    if let Some(command) = std::env::var_os("SSH_ORIGINAL_COMMAND") {
        use std::os::unix::ffi::OsStrExt;
        apply_client_command(&mut config, command.as_bytes()).map_err(|e| e.to_string())?;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(config.umask));
    let log = RemoteLogger::stderr(&LogConfig {
        level: config.log_level,
        debug_topics: config.debug_topics.clone(),
    })
    .install()
    .map_err(|e| format!("cannot install the logger: {e}"))?;
    let stdin = rpc::raw_stdin().map_err(|e| format!("cannot use stdin: {e}"))?;
    let stdout = rpc::raw_stdout().map_err(|e| format!("cannot use stdout: {e}"))?;
    let watch = stdin
        .try_clone()
        .map_err(|e| format!("cannot use stdin: {e}"))?;
    enlarge_pipe(&stdin);
    enlarge_pipe(&stdout);
    let show = rpc::errors::show_sysinfo(std::env::var("BORG_SHOW_SYSINFO").ok().as_deref());
    let sysinfo =
        SysInfo::of_this_process(concat!("borg-gate ", env!("CARGO_PKG_VERSION"))).render(show);
    let mut server = Server::new(config, log, watch, path_context());
    let (input, output) = server
        .client_pipes(stdin, stdout)
        .map_err(|e| format!("cannot use stdin and stdout: {e}"))?;
    let mut reader = RequestReader::new(input);
    let mut writer = ReplyWriter::with_sysinfo(output, sysinfo);
    Ok(match server.run(&mut reader, &mut writer) {
        Ending::ClientClosed | Ending::ClientGone(_) => 0,
        Ending::IdleTimeout(timeout) => {
            ::log::warn!(target: server::LOG, "no request for {} s; closing the connection", timeout.as_secs());
            0
        }
        Ending::RequestTimeout(limit) => {
            ::log::warn!(target: server::LOG, "a request was still incomplete {} s after it began; closing the connection", limit.as_secs());
            0
        }
        Ending::SessionLimit(limit) => {
            ::log::warn!(target: server::LOG, "the session reached the server's limit of {} s; closing the connection", limit.as_secs());
            0
        }
        Ending::Signal(signal) => 128 + signal as u8,
        Ending::BadInput { message, exit_code } => {
            let _ = writeln!(std::io::stderr(), "{message}");
            u8::try_from(exit_code).unwrap_or(EXIT_ERROR)
        }
    })
}

/// A 1 MiB pipe instead of the default 64 KiB: puts and gets of megabyte chunks then move in
/// a few system calls instead of dozens. Best effort (sockets and old kernels say no).
pub(crate) fn enlarge_pipe(file: &std::fs::File) {
    const PIPE_SIZE: i32 = 1 << 20;
    let _ = nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
}

/// How `~`, `/~/` and relative repository paths resolve, from this process's account.
pub(crate) fn path_context() -> PathContext<'static> {
    let uid = nix::unistd::geteuid();
    let account = nix::unistd::User::from_uid(uid).ok().flatten();
    let root_home = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(0))
        .ok()
        .flatten()
        .map(|u| u.dir);
    let env = |name: &str| std::env::var_os(name);
    let base_dir = paths::base_dir(
        &env,
        account.as_ref().map(|a| a.dir.clone()),
        root_home,
        uid.is_root(),
    );
    PathContext {
        base_dir,
        user: account.map(|a| a.name).unwrap_or_default(),
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        home_of: &home_of,
    }
}

fn home_of(name: &str) -> Option<PathBuf> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|user| user.dir)
}

/// `borg-gate serve --help`.
const USAGE: &str =
    "usage: borg-gate serve [--restrict-to-path PATH] [--restrict-to-repository PATH]
                       [--append-only] [--storage-quota QUOTA] [--umask M]
                       [--debug | --info | --warning | --error | --critical]
                       [--debug-topic TOPIC] [--lock-wait SECONDS]
                       [--permissions all|read-only] [--idle-timeout DURATION]
                       [--request-timeout DURATION] [--session-limit DURATION]
                       [--max-lock-wait SECONDS] [--allow-lock-bypass]

A drop-in replacement for BorgBackup 1.x's `borg serve`: speaks borg's RPC protocol
on stdin/stdout and reads and writes borg's repository format.
See borg-gate(1).
";
