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
        (
            None,
            Some(Command::Doctor {
                authorized_keys,
                sshd_config,
                user,
                json,
            }),
        ) => doctor(authorized_keys, sshd_config, user, json),
        (
            None,
            Some(Command::Audit {
                file,
                since,
                until,
                top,
                recent,
                json,
            }),
        ) => audit(&file, since.as_deref(), until.as_deref(), top, recent, json),
        (
            None,
            Some(Command::Status {
                policies,
                max_age,
                json,
                textfile,
                quiet,
                paths,
            }),
        ) => status(borg_gate::admin::status::StatusOptions {
            paths,
            policies,
            max_age,
            output: match (json, quiet) {
                (_, true) => borg_gate::admin::status::Output::Quiet,
                (true, false) => borg_gate::admin::status::Output::Json,
                (false, false) => borg_gate::admin::status::Output::Text,
            },
            textfile,
        }),
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

/// Writes the one-line reason, then lingers a second before closing stdout: a borg client
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

fn doctor(
    authorized_keys: Option<std::path::PathBuf>,
    sshd_config: std::path::PathBuf,
    user: Option<String>,
    json: bool,
) -> ExitCode {
    use borg_gate::admin::{self, Severity, doctor};
    let authorized_keys = match authorized_keys {
        Some(path) => path,
        None => match doctor::default_authorized_keys(user.as_deref()) {
            Ok(path) => path,
            Err(error) => {
                eprintln!("borg-gate: {error}");
                return ExitCode::from(EXIT_ERROR);
            }
        },
    };
    let options = doctor::DoctorOptions {
        authorized_keys,
        sshd_config,
        user,
    };
    let findings = match doctor::run(&options) {
        Ok(findings) => findings,
        Err(error) => {
            eprintln!("borg-gate: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let count = |severity| findings.iter().filter(|f| f.severity == severity).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    if json {
        let report = serde_json::json!({
            "findings": findings,
            "errors": errors,
            "warnings": warnings,
        });
        println!("{report}");
    } else {
        for finding in &findings {
            println!("{finding}");
        }
        eprintln!(
            "borg-gate doctor: {errors} error(s), {warnings} warning(s) in {} and {}",
            options.authorized_keys.display(),
            options.sshd_config.display()
        );
    }
    match admin::worst(&findings) {
        None => ExitCode::SUCCESS,
        Some(Severity::Warning) => ExitCode::from(1),
        Some(Severity::Error) => ExitCode::from(EXIT_ERROR),
    }
}

fn audit(
    file: &std::path::Path,
    since: Option<&str>,
    until: Option<&str>,
    top: usize,
    recent: usize,
    json: bool,
) -> ExitCode {
    use borg_gate::admin::audit_report::{self, ReportOptions};
    let now = std::time::SystemTime::now();
    let bound = |text: Option<&str>| {
        text.map(|t| audit_report::parse_time_bound(t, now))
            .transpose()
    };
    let options = match (bound(since), bound(until)) {
        (Ok(since), Ok(until)) => ReportOptions {
            since,
            until,
            top,
            recent,
        },
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("borg-gate: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match audit_report::summarise_file(file, options) {
        Ok(summary) => {
            if json {
                match serde_json::to_string(&summary) {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("borg-gate: {error}");
                        return ExitCode::from(EXIT_ERROR);
                    }
                }
            } else {
                print!("{summary}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("borg-gate: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn status(options: borg_gate::admin::status::StatusOptions) -> ExitCode {
    use borg_gate::admin::status::{self, StatusError};
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    let mut warn = |message: &str| eprintln!("borg-gate: status: {message}");
    match status::run(&options, &mut out, &mut warn) {
        Ok(summary) => {
            let failures = options
                .max_age
                .map(|max_age| summary.max_age_failures(max_age))
                .unwrap_or_default();
            for failure in &failures {
                eprintln!("borg-gate: status: {failure}");
            }
            if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REFUSED)
            }
        }
        // `borg-gate status | head`: the reader has all it wanted.
        Err(StatusError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::from(EXIT_ERROR)
        }
        Err(error) => {
            drop(out);
            eprintln!("borg-gate: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
