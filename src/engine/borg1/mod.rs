//! The built-in borg 1 engine: `borg-gate serve`, a drop-in replacement for BorgBackup 1.x's
//! `borg serve`, which speaks borg's msgpack RPC on stdin and stdout and reads and writes
//! borg's repository format byte for byte.
//!
//! [`serve_main`] reads like the specification: command line, the client's command
//! (`SSH_ORIGINAL_COMMAND`), umask, logging, then the session on the shared transport of
//! `engine/session/`.
//!
//! | module | owns |
//! |---|---|
//! | `args` | the command line and borg's forced-command rule (pure) |
//! | `server` | the serve loop and the dispatch of each RPC call, counted for the record |
//! | `report` | how the session's ending and refusals read in its record (pure) |
//! | `permissions` | which call needs which access, and what a read-only key gets (pure) |
//! | `msgpack` | the msgpack codec the wire and the repository files share |
//! | `rpc` | framing, requests, replies, borg's exception classes |
//! | `repository` | the repository format: pure codecs, and the I/O that sequences them |
//! | `lock` | locking compatible with borg's |
//! | `key_quota` | one quota across every repository of a key, and its ledger |
//! | `remote_log` | borg's remote logging protocol: JSON log and progress records |

pub mod args;
pub(crate) mod key_quota;
pub mod lock;
pub mod msgpack;
pub(crate) mod permissions;
pub(crate) mod remote_log;
pub(crate) mod report;
pub mod repository;
pub mod rpc;
pub mod server;

use std::ffi::OsString;
use std::io::Write;

use args::{apply_client_command, parse_serve_args};
use rpc::{ReplyWriter, RequestReader, SysInfo};
use server::{Ending, Server};

use crate::audit::session_end::End;
use crate::engine::log::{LogConfig, RemoteLogger};
use crate::engine::paths::PathContext;
use crate::engine::reporting::{NOT_STARTED, Unaudited};
use crate::engine::session;
use crate::engine::tally::Tally;
use crate::policy::Protocol;

/// Exit status for bad command lines and unusable environments.
const EXIT_ERROR: u8 = 2;

/// `borg-gate serve`: serves one session and returns the process exit status.
pub fn serve_main(args: &[OsString]) -> u8 {
    match serve(args) {
        Ok(status) => status,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "borg-gate: serve: {message}");
            session::linger_for_client();
            EXIT_ERROR
        }
    }
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
    // The session begins: however it ends from here on, it is recorded once.
    let (reporter, unaudited) = std::mem::take(&mut *config.reporting).begin();
    let unstarted = Tally::new(config.append_only, config.permissions.name());
    if let Some(unaudited) = unaudited {
        let end = End::Error(Unaudited::CLASS.to_owned());
        reporter.report(&unstarted, Protocol::Borg1, &end);
        return Err(unaudited.to_string());
    }
    let (ending, server) = match run_session(config) {
        Ok(served) => served,
        Err(message) => {
            let end = End::Error(NOT_STARTED.to_owned());
            reporter.report(&unstarted, Protocol::Borg1, &end);
            return Err(message);
        }
    };
    let end = report::end_of(&ending, server.tally().client_end());
    reporter.report(server.tally(), Protocol::Borg1, &end);
    Ok(match ending {
        Ending::ClientClosed => 0,
        Ending::Stopped(stop) => {
            stop.report();
            stop.exit_code()
        }
        Ending::BadInput {
            message, exit_code, ..
        } => {
            let _ = writeln!(std::io::stderr(), "{message}");
            u8::try_from(exit_code).unwrap_or(EXIT_ERROR)
        }
    })
}

/// The session on stdin and stdout, from the client's command to its end (the repository
/// closed); the server keeps what the session did.
fn run_session(mut config: args::ServeConfig) -> Result<(Ending, Server), String> {
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
    let stdin = session::raw_stdin().map_err(|e| format!("cannot use stdin: {e}"))?;
    let stdout = session::raw_stdout().map_err(|e| format!("cannot use stdout: {e}"))?;
    let watch = stdin
        .try_clone()
        .map_err(|e| format!("cannot use stdin: {e}"))?;
    session::enlarge_pipe(&stdin);
    session::enlarge_pipe(&stdout);
    let show = rpc::errors::show_sysinfo(std::env::var("BORG_SHOW_SYSINFO").ok().as_deref());
    let sysinfo =
        SysInfo::of_this_process(concat!("borg-gate ", env!("CARGO_PKG_VERSION"))).render(show);
    let mut server = Server::new(config, log, watch, PathContext::of_this_process());
    let (input, output) = server
        .client_pipes(stdin, stdout)
        .map_err(|e| format!("cannot use stdin and stdout: {e}"))?;
    let mut reader = RequestReader::new(input);
    let mut writer = ReplyWriter::with_sysinfo(output, sysinfo);
    let ending = server.run(&mut reader, &mut writer);
    Ok((ending, server))
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
on stdin/stdout and reads and writes borg's repository format. borg 2's engine is
`borg-gate serve --rest` (see `borg-gate serve --rest --help`). The gate also passes
where the end of the session is reported (--session-id, --policy-name, --audit-file,
--audit-syslog, --audit-on-failure, --metrics-textfile). See borg-gate(1).
";
