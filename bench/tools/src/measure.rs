//! A process meter for the benchmark driver: runs a program with the meter's own stdin,
//! stdout and stderr, waits for it, and writes its wall time, CPU time and peak RSS as JSON.
//!
//! Usage: `measure REPORT PROGRAM [ARGS...]`; exits with the program's exit status.
//!
//! Why not measure from Python directly: glibc's posix_spawn (and Python's subprocess) start
//! the child with CLONE_VM, and Linux carries the peak RSS of the address space being
//! replaced at exec into the child's `ru_maxrss`, so every child of a 60 MiB Python driver
//! would report at least 60 MiB. This meter is small, so the floor it leaves is its own
//! couple of MiB, and RUSAGE_CHILDREN covers exactly the one program it ran.

use std::process::{Command, ExitCode};
use std::time::Instant;

use nix::sys::resource::{UsageWho, getrusage};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(report), Some(program)) = (args.next(), args.next()) else {
        eprintln!("usage: measure REPORT PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    let started = Instant::now();
    let status = match Command::new(&program).args(args).status() {
        Ok(status) => status,
        Err(error) => {
            eprintln!("measure: cannot run {}: {error}", program.to_string_lossy());
            return ExitCode::from(127);
        }
    };
    let wall = started.elapsed().as_secs_f64();
    let usage = match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(usage) => usage,
        Err(error) => {
            eprintln!("measure: getrusage: {error}");
            return ExitCode::from(125);
        }
    };
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    let code = status.code().unwrap_or(-1);
    let json = format!(
        "{{\"wall\": {wall:.9}, \"user\": {:.6}, \"sys\": {:.6}, \"maxrss_kib\": {}, \"status\": {code}}}\n",
        seconds(usage.user_time()),
        seconds(usage.system_time()),
        usage.max_rss()
    );
    if let Err(error) = std::fs::write(&report, json) {
        eprintln!(
            "measure: cannot write {}: {error}",
            report.to_string_lossy()
        );
        return ExitCode::from(125);
    }
    // A program killed by a signal reports 128 + signal, as a shell would.
    let exit = match status.code() {
        Some(code) => code,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }
    };
    ExitCode::from(u8::try_from(exit & 0xff).unwrap_or(1))
}
