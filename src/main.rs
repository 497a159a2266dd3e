//! The `borg-gate` binary: parse the command line, run, map errors to exit codes.

use std::process::ExitCode;

use borg_gate::cli::{Cli, Command};
use borg_gate::pipeline::{self, GateExit};
use clap::Parser;

/// Exit status of a refused command (and of `explain` for one).
const EXIT_REFUSED: u8 = 1;
/// Exit status when borg-gate itself cannot work: bad policy, audit failure, exec failure.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    borg_gate::sys::ensure_standard_descriptors();
    let cli = Cli::parse();
    match (cli.policy, cli.command) {
        (Some(policy), None) => gate(&policy),
        (None, Some(Command::Serve { args })) => {
            ExitCode::from(borg_gate::engine::serve_main(&args))
        }
        (
            None,
            Some(Command::Explain {
                policy,
                command,
                json,
            }),
        ) => explain(&policy, &command, json),
        (None, Some(Command::CheckPolicy { files })) => check_policy(&files),
        _ => {
            eprintln!(
                "borg-gate: give --policy FILE (what authorized_keys runs) or a subcommand; see borg-gate --help"
            );
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn gate(policy: &std::path::Path) -> ExitCode {
    match pipeline::run_gate(policy) {
        Ok(GateExit::Probe) => ExitCode::SUCCESS,
        Ok(GateExit::Refused(refusal)) => {
            tell_client(&format!("borg-gate: refused: {refusal}"), EXIT_REFUSED)
        }
        Err(error) => tell_client(&format!("borg-gate: {error}"), EXIT_ERROR),
    }
}

/// Writes the one-line reason, then lingers briefly before closing stdout: a borg client
/// that sees stdout close in the same instant as the stderr line drops the line and only
/// says "Connection closed by remote host".
fn tell_client(line: &str, status: u8) -> ExitCode {
    eprintln!("{line}");
    borg_gate::engine::linger_for_client();
    ExitCode::from(status)
}

fn explain(policy: &std::path::Path, command: &str, json: bool) -> ExitCode {
    match pipeline::explain(policy, command) {
        Ok(explanation) => {
            if json {
                print!("{}", explanation.record.to_line());
            } else {
                print!("{explanation}");
            }
            match explanation.judgement.decision {
                borg_gate::gate::Decision::Reject(_) => ExitCode::from(EXIT_REFUSED),
                _ => ExitCode::SUCCESS,
            }
        }
        Err(error) => {
            eprintln!("borg-gate: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn check_policy(files: &[std::path::PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        let report = borg_gate::check_policy::check_file(file);
        for error in &report.errors {
            eprintln!("borg-gate: {error}");
        }
        for warning in &report.warnings {
            eprintln!("borg-gate: warning: {warning}");
        }
        match &report.policy {
            Some(policy) if report.errors.is_empty() => {
                println!("{}: ok (policy {:?})", file.display(), policy.name)
            }
            _ => failed = true,
        }
    }
    if failed {
        ExitCode::from(EXIT_REFUSED)
    } else {
        ExitCode::SUCCESS
    }
}
