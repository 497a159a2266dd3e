//! Property tests of the gate: whatever a client sends, the engine's arguments contain the
//! policy's forced settings exactly, and nothing denied that came from the client.

mod gate_invariants;

use borg_gate::gate::{Decision, judge};
use borg_gate::policy::{Policy, parse_policy};
use gate_invariants::{FORCED, POLICY, accepted_args_violation, refusal_violation};
use proptest::prelude::*;

fn policy() -> Policy {
    parse_policy(POLICY, "prop").unwrap()
}

/// Words a hostile client would try, plus arbitrary text.
fn client_word() -> impl Strategy<Value = String> {
    let option = prop::sample::select(vec![
        "--restrict-to-path",
        "--restrict-to-p",
        "--restrict-to-repository",
        "--append-only",
        "--append",
        "--storage-quota",
        "--storage",
        "--umask",
        "--um",
        "--lock-wait",
        "--lock",
        "--debug-topic",
        "--debug",
        "--info",
        "-v",
        "--verbose",
        "--warning",
        "--error",
        "--critical",
        "--progress",
        "-p",
        "--remote-path",
        "--rsh",
        "--permissions",
        "--idle-timeout",
        "--max-lock-wait",
        "--request-timeout",
        "--session-limit",
        "--allow-lock-bypass",
        "--",
        "-",
        "-vp",
        "-V",
        "--help",
        "--x",
    ]);
    let value = prop::sample::select(vec![
        "/",
        "/srv",
        "0",
        "000",
        "-1",
        "600",
        "601",
        "99999999999",
        "1T",
        "repository",
        "borg.debug.repository",
        "../../x",
        "read-only",
        "all",
        "",
        "a b",
        ";",
        "$(id)",
    ]);
    prop_oneof![
        3 => option.clone().prop_map(str::to_owned),
        3 => (option, value.clone()).prop_map(|(o, v)| format!("{o}={v}")),
        2 => value.prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

fn command_from(words: &[String]) -> String {
    let mut all = vec!["borg".to_owned(), "serve".to_owned()];
    all.extend(words.iter().cloned());
    shlex::try_join(all.iter().map(String::as_str)).unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn engine_argv_holds_exactly_the_forced_settings(words in prop::collection::vec(client_word(), 0..8)) {
        let policy = policy();
        let command = command_from(&words);
        let judgement = judge(&policy, Some(command.as_bytes()));
        if let Decision::Accept(args) = judgement.decision {
            let violation = accepted_args_violation(&command, &args.0);
            prop_assert!(violation.is_none(), "{}", violation.unwrap_or_default());
        }
    }

    #[test]
    fn any_bytes_get_a_decision_and_a_one_line_reason(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let judgement = judge(&policy(), Some(&bytes));
        if let Decision::Reject(refusal) = &judgement.decision {
            let violation = refusal_violation(&refusal.to_string());
            prop_assert!(violation.is_none(), "{}", violation.unwrap_or_default());
        }
    }

    #[test]
    fn any_text_after_borg_serve_never_escapes_the_forced_settings(tail in ".{0,80}") {
        let command = format!("borg serve {tail}");
        if let Decision::Accept(args) = judge(&policy(), Some(command.as_bytes())).decision {
            prop_assert_eq!(&args.0[..FORCED.len()], &FORCED[..]);
            prop_assert_eq!(args.0.iter().filter(|a| a.starts_with("--restrict")).count(), 3);
        }
    }
}
