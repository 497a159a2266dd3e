//! sshd_config as sshd reads it (keywords, `=`, quoting, comments, `Match` blocks), and the
//! rules `borg-gate doctor` applies to it: keepalives as borg's documentation advises, and
//! no client-controlled environment reaching the gate.
//!
//! Pure: the caller reads the files and follows `Include` (see [`super::doctor`]).

use std::path::{Path, PathBuf};

use super::{Finding, Place};

/// borg's documentation (`borg serve`, "keepalive"): ClientAliveInterval 10,
/// ClientAliveCountMax 30, and clients wait `--lock-wait 600`.
pub const BORG_CLIENT_ALIVE_INTERVAL: u64 = 10;
pub const BORG_CLIENT_ALIVE_COUNT_MAX: u64 = 30;
pub const BORG_SUGGESTED_LOCK_WAIT: u64 = 600;

/// sshd's defaults.
const DEFAULT_CLIENT_ALIVE_INTERVAL: u64 = 0;
const DEFAULT_CLIENT_ALIVE_COUNT_MAX: u64 = 3;

/// One line of one file, as sshd splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLine {
    Directive(Directive),
    /// A line sshd refuses (`sshd -t` fails on it).
    Invalid {
        file: PathBuf,
        line: usize,
        problem: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// As written; compare with [`Directive::is`].
    pub keyword: String,
    pub args: Vec<String>,
    /// Inside a `Match` block: it applies to some connections only.
    pub in_match: bool,
}

impl Directive {
    pub fn is(&self, keyword: &str) -> bool {
        self.keyword.eq_ignore_ascii_case(keyword)
    }

    fn place(&self) -> Place {
        Place::line(&self.file, self.line)
    }
}

/// Parses one file. `in_match` is true for a file included from inside a `Match` block; a
/// `Match` in the file lasts to its end.
pub fn parse_text(file: &Path, text: &str, mut in_match: bool) -> Vec<ConfigLine> {
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        match split_line(raw) {
            Ok(None) => {}
            Ok(Some((keyword, args))) => {
                if keyword.eq_ignore_ascii_case("match") {
                    in_match = true;
                }
                lines.push(ConfigLine::Directive(Directive {
                    file: file.to_path_buf(),
                    line,
                    keyword,
                    args,
                    in_match,
                }));
            }
            Err(problem) => lines.push(ConfigLine::Invalid {
                file: file.to_path_buf(),
                line,
                problem,
            }),
        }
    }
    lines
}

/// A keyword and its arguments; `None` for blank lines and comments.
pub fn split_line(raw: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let text = raw
        .trim_end_matches([' ', '\t', '\r', '\n', '\x0c'])
        .trim_start_matches([' ', '\t']);
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let end = text.find([' ', '\t', '=']).unwrap_or(text.len());
    let (keyword, rest) = text.split_at(end);
    let rest = rest.trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    let args = split_arguments(rest).ok_or_else(|| format!("{keyword}: invalid quotes"))?;
    if args.is_empty() {
        return Err(format!("no argument after keyword {keyword:?}"));
    }
    Ok(Some((keyword.to_owned(), args)))
}

/// sshd's argument splitting: spaces and tabs separate, single and double quotes group,
/// a backslash escapes a quote, a backslash, or (outside quotes) a space; an unquoted `#`
/// at the start of a word ends the line. `None` for an unclosed quote.
pub fn split_arguments(text: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = text.chars().collect();
    let mut args = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        if chars[index] == ' ' || chars[index] == '\t' {
            index += 1;
            continue;
        }
        if chars[index] == '#' {
            break;
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while index < chars.len() {
            let c = chars[index];
            match (c, quote) {
                ('\\', _) => {
                    let next = chars.get(index + 1).copied();
                    let escapable = matches!(next, Some('\'' | '"' | '\\'))
                        || (quote.is_none() && next == Some(' '));
                    if escapable {
                        index += 1;
                        arg.push(chars[index]);
                    } else {
                        arg.push(c);
                    }
                }
                (' ' | '\t', None) => break,
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(open)) if c == open => quote = None,
                (c, _) => arg.push(c),
            }
            index += 1;
        }
        if quote.is_some() {
            return None;
        }
        args.push(arg);
    }
    Some(args)
}

/// sshd's TIME FORMATS: `90`, `90s`, `5m`, `1h30m`, with s, m, h, d and w in either case.
pub fn parse_time(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(digit.into())?,
            );
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    match number {
        Some(seconds) => total.checked_add(seconds),
        None => Some(total),
    }
}

/// Whether the glob `pattern` (`*` and `?`) matches some name that starts with `prefix`:
/// the question for `AcceptEnv` and `PermitUserEnvironment` patterns.
pub fn pattern_admits_prefix(pattern: &str, prefix: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    // The set of pattern positions reachable after consuming the prefix so far.
    let mut states = vec![false; pattern.len() + 1];
    states[0] = true;
    close_over_stars(&pattern, &mut states);
    for c in prefix.chars() {
        let mut next = vec![false; pattern.len() + 1];
        for (position, _) in states.iter().enumerate().filter(|(_, on)| **on) {
            match pattern.get(position) {
                Some('*') => next[position] = true,
                Some('?') => next[position + 1] = true,
                Some(&p) if p == c => next[position + 1] = true,
                _ => {}
            }
        }
        close_over_stars(&pattern, &mut next);
        states = next;
    }
    // Whatever remains of the pattern can always be completed by some suffix.
    states.iter().any(|on| *on)
}

fn close_over_stars(pattern: &[char], states: &mut [bool]) {
    for position in 0..pattern.len() {
        if states[position] && pattern[position] == '*' {
            states[position + 1] = true;
        }
    }
}

/// The first value of a keyword outside `Match` blocks (sshd keeps the first one it reads).
fn first_global<'a>(directives: &'a [Directive], keyword: &str) -> Option<&'a Directive> {
    directives.iter().find(|d| d.is(keyword) && !d.in_match)
}

/// The first argument of `keyword` outside `Match` blocks: the value sshd uses.
pub fn first_global_value<'a>(lines: &'a [ConfigLine], keyword: &str) -> Option<&'a str> {
    lines.iter().find_map(|line| match line {
        ConfigLine::Directive(d) if d.is(keyword) && !d.in_match => {
            d.args.first().map(String::as_str)
        }
        _ => None,
    })
}

/// Every rule for the sshd configuration. `main_file` is where a missing setting is
/// reported.
pub fn lint(main_file: &Path, lines: &[ConfigLine]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut directives = Vec::new();
    for line in lines {
        match line {
            ConfigLine::Directive(directive) => directives.push(directive.clone()),
            ConfigLine::Invalid {
                file,
                line,
                problem,
            } => findings.push(Finding::error(
                Place::line(file, *line),
                format!("sshd refuses this line: {problem}"),
                "fix it and check with `sshd -t`",
            )),
        }
    }
    findings.extend(keepalive_findings(main_file, &directives));
    findings.extend(user_environment_findings(&directives));
    findings.extend(accept_env_findings(&directives));
    findings
}

fn keepalive_findings(main_file: &Path, directives: &[Directive]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let numeric = |keyword: &str, parse: fn(&str) -> Option<u64>, default: u64| match first_global(
        directives, keyword,
    ) {
        None => Ok((default, Place::file(main_file))),
        Some(d) => match d.args.first().and_then(|a| parse(a)) {
            Some(value) => Ok((value, d.place())),
            None => Err(Finding::error(
                d.place(),
                format!("{keyword} {:?} is not a valid value", d.args.join(" ")),
                "fix it and check with `sshd -t`",
            )),
        },
    };
    let parse_count = |text: &str| text.parse::<u64>().ok();
    let interval = numeric(
        "ClientAliveInterval",
        parse_time,
        DEFAULT_CLIENT_ALIVE_INTERVAL,
    );
    let count = numeric(
        "ClientAliveCountMax",
        parse_count,
        DEFAULT_CLIENT_ALIVE_COUNT_MAX,
    );
    let advice = format!(
        "set `ClientAliveInterval {BORG_CLIENT_ALIVE_INTERVAL}` and `ClientAliveCountMax {BORG_CLIENT_ALIVE_COUNT_MAX}`, as borg's documentation suggests"
    );
    match (interval, count) {
        (Err(error), _) | (_, Err(error)) => findings.push(error),
        (Ok((0, place)), _) => findings.push(Finding::warning(
            place,
            "ClientAliveInterval is 0 (off): a client that vanishes mid-backup keeps its session, and the repository lock, until TCP gives up",
            advice,
        )),
        (Ok(_), Ok((0, place))) => findings.push(Finding::warning(
            place,
            "ClientAliveCountMax 0 never ends a silent session (OpenSSH 8.2 and later)",
            advice,
        )),
        (Ok((interval, interval_place)), Ok((count, _))) => {
            let window = interval.saturating_mul(count);
            if window > BORG_SUGGESTED_LOCK_WAIT {
                findings.push(Finding::warning(
                    interval_place,
                    format!(
                        "a vanished client keeps its session for up to {window} s (ClientAliveInterval {interval} x ClientAliveCountMax {count}), longer than the --lock-wait {BORG_SUGGESTED_LOCK_WAIT} borg suggests for clients"
                    ),
                    advice,
                ));
            }
        }
    }
    for directive in directives.iter().filter(|d| d.in_match) {
        let off = directive.is("ClientAliveInterval")
            && directive.args.first().and_then(|a| parse_time(a)) == Some(0);
        if off {
            findings.push(Finding::warning(
                directive.place(),
                "a Match block turns keepalives off (ClientAliveInterval 0)",
                format!("remove it, or set `ClientAliveInterval {BORG_CLIENT_ALIVE_INTERVAL}`"),
            ));
        }
    }
    findings
}

fn user_environment_findings(directives: &[Directive]) -> Vec<Finding> {
    let Some(directive) = first_global(directives, "PermitUserEnvironment") else {
        return Vec::new();
    };
    let value = directive.args.first().map(String::as_str).unwrap_or("no");
    let lets_ld_through = if value.eq_ignore_ascii_case("yes") {
        true
    } else if value.eq_ignore_ascii_case("no") {
        false
    } else {
        value.split(',').any(|p| pattern_admits_prefix(p, "LD_"))
    };
    if !lets_ld_through {
        return Vec::new();
    }
    vec![Finding::warning(
        directive.place(),
        format!(
            "PermitUserEnvironment {value} lets ~/.ssh/environment and environment= options set LD_PRELOAD and friends for borg-gate itself, before it checks anything"
        ),
        "set `PermitUserEnvironment no`; put variables for the engine in the policy's [engine] env",
    )]
}

fn accept_env_findings(directives: &[Directive]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for directive in directives.iter().filter(|d| d.is("AcceptEnv")) {
        let admitting = |prefix: &str| -> Vec<&str> {
            directive
                .args
                .iter()
                .filter(|p| pattern_admits_prefix(p, prefix))
                .map(String::as_str)
                .collect()
        };
        let loader = admitting("LD_");
        let borg = admitting("BORG_");
        if !loader.is_empty() {
            findings.push(Finding::error(
                directive.place(),
                format!(
                    "AcceptEnv {} lets a client send LD_* variables, which the dynamic loader obeys before borg-gate runs",
                    loader.join(" ")
                ),
                "accept only what clients need, e.g. `AcceptEnv LANG LC_*`",
            ));
        }
        if !borg.is_empty() {
            findings.push(Finding::warning(
                directive.place(),
                format!(
                    "AcceptEnv {} lets a client send BORG_* variables, which a plain `borg serve` forced command obeys",
                    borg.join(" ")
                ),
                "accept only what clients need, e.g. `AcceptEnv LANG LC_*`",
            ));
        }
    }
    findings
}

/// The `Include` arguments of a parsed file, with the `Match` state they are read in.
pub fn includes(lines: &[ConfigLine]) -> Vec<(&Directive, bool)> {
    lines
        .iter()
        .filter_map(|line| match line {
            ConfigLine::Directive(d) if d.is("Include") => Some((d, d.in_match)),
            _ => None,
        })
        .collect()
}

/// The account the keys log in to, as far as doctor could learn it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub shell: PathBuf,
    /// The shell with symlinks resolved (`/bin/sh` is `/usr/bin/dash` on Debian), when it
    /// exists.
    pub resolved_shell: Option<PathBuf>,
    pub shell_is_executable: bool,
}

/// Shells that read start-up files or carry a large language before the forced command runs.
const RICH_SHELLS: &[&str] = &["bash", "zsh", "fish", "ksh", "ksh93", "mksh", "tcsh", "csh"];

/// sshd runs a forced command as `$SHELL -c COMMAND`, so the login shell matters: borg's
/// documentation advises a minimal one, and `nologin` runs nothing at all.
pub fn account_findings(place: &Place, account: &Account) -> Vec<Finding> {
    let mut findings = Vec::new();
    let name = &account.name;
    if account.uid == 0 {
        findings.push(Finding::warning(
            place.clone(),
            format!("the backup keys log in as {name} (uid 0): a mistake in a policy or a bug in an engine is a root compromise"),
            "use a dedicated account, e.g. `useradd --system --create-home --shell /bin/sh borg`",
        ));
    }
    let shell = account.shell.display();
    let base = |path: &Path| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let fix = format!("chsh -s /bin/sh {name}");
    if matches!(base(&account.shell).as_str(), "nologin" | "false") {
        findings.push(Finding::error(
            place.clone(),
            format!("the login shell of {name} is {shell}: sshd runs forced commands as `{shell} -c COMMAND`, so no backup can run"),
            fix,
        ));
    } else if !account.shell_is_executable {
        findings.push(Finding::error(
            place.clone(),
            format!("the login shell of {name}, {shell}, does not exist or is not executable, so sshd cannot run the forced command"),
            fix,
        ));
    } else {
        let effective = account.resolved_shell.as_deref().unwrap_or(&account.shell);
        if RICH_SHELLS.contains(&base(effective).as_str()) {
            findings.push(Finding::warning(
                place.clone(),
                format!(
                    "the login shell of {name} is {} ({}), which reads start-up files and runs before borg-gate for every key",
                    shell,
                    base(effective)
                ),
                format!("borg's documentation suggests a minimal shell: {fix}"),
            ));
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Option<Vec<String>> {
        split_arguments(text)
    }

    #[test]
    fn arguments_split_like_sshd() {
        assert_eq!(args("a b\tc").unwrap(), ["a", "b", "c"]);
        assert_eq!(args("\"a b\" 'c d'").unwrap(), ["a b", "c d"]);
        assert_eq!(args(r#"a\ b"#).unwrap(), ["a b"]);
        assert_eq!(args(r#""a\"b""#).unwrap(), ["a\"b"]);
        assert_eq!(args(r#"a\\b"#).unwrap(), [r"a\b"]);
        assert_eq!(args(r#"a\nb"#).unwrap(), [r"a\nb"]);
        assert_eq!(args("a #comment").unwrap(), ["a"]);
        assert_eq!(args("a b#c").unwrap(), ["a", "b#c"]);
        assert_eq!(args("\"#a\"").unwrap(), ["#a"]);
        assert_eq!(args("a'b c'd").unwrap(), ["ab cd"]);
        assert_eq!(args(""), Some(vec![]));
        assert_eq!(args("\"open"), None);
        assert_eq!(args("'open"), None);
    }

    #[test]
    fn lines_split_into_keyword_and_arguments() {
        let line = |text: &str| split_line(text).unwrap();
        assert_eq!(line(""), None);
        assert_eq!(line("   # comment"), None);
        assert_eq!(
            line("ClientAliveInterval 10"),
            Some(("ClientAliveInterval".into(), vec!["10".into()]))
        );
        assert_eq!(
            line("  clientaliveinterval=10  \x0c"),
            Some(("clientaliveinterval".into(), vec!["10".into()]))
        );
        assert_eq!(
            line("ClientAliveInterval = 10"),
            Some(("ClientAliveInterval".into(), vec!["10".into()]))
        );
        assert_eq!(
            line("AcceptEnv LANG LC_* # locale"),
            Some(("AcceptEnv".into(), vec!["LANG".into(), "LC_*".into()]))
        );
        assert_eq!(
            split_line("ClientAliveInterval"),
            Err("no argument after keyword \"ClientAliveInterval\"".into())
        );
        assert_eq!(
            split_line("Banner \"x"),
            Err("Banner: invalid quotes".into())
        );
    }

    #[test]
    fn match_blocks_last_to_the_end_of_the_file() {
        let text = "Port 22\nMatch User backup\n  ClientAliveInterval 0\n";
        let lines = parse_text(Path::new("/c"), text, false);
        let flags: Vec<bool> = lines
            .iter()
            .map(|l| match l {
                ConfigLine::Directive(d) => d.in_match,
                ConfigLine::Invalid { .. } => panic!("{l:?}"),
            })
            .collect();
        assert_eq!(flags, [false, true, true]);
        let included = parse_text(Path::new("/c"), "Port 22\n", true);
        assert!(matches!(&included[0], ConfigLine::Directive(d) if d.in_match));
    }

    #[test]
    fn time_formats_follow_sshd() {
        assert_eq!(parse_time("0"), Some(0));
        assert_eq!(parse_time("10"), Some(10));
        assert_eq!(parse_time("10s"), Some(10));
        assert_eq!(parse_time("10S"), Some(10));
        assert_eq!(parse_time("5m"), Some(300));
        assert_eq!(parse_time("1h30m"), Some(5400));
        assert_eq!(
            parse_time("1w2d3h4m5s"),
            Some(604_800 + 172_800 + 10_800 + 240 + 5)
        );
        assert_eq!(parse_time("1m30"), Some(90));
        assert_eq!(parse_time(""), None);
        assert_eq!(parse_time("m"), None);
        assert_eq!(parse_time("10x"), None);
        assert_eq!(parse_time("-1"), None);
        assert_eq!(parse_time("99999999999999999999"), None);
    }

    #[test]
    fn patterns_admitting_a_prefix() {
        for (pattern, prefix, expected) in [
            ("*", "LD_", true),
            ("L*", "LD_", true),
            ("LD_*", "LD_", true),
            ("LD_PRELOAD", "LD_", true),
            ("L?_*", "LD_", true),
            ("?", "LD_", false),
            ("LANG", "LD_", false),
            ("LC_*", "LD_", false),
            ("*_PRELOAD", "LD_", true),
            ("BORG_*", "BORG_", true),
            ("BORG", "BORG_", false),
            ("B*G_X", "BORG_", true),
            ("BO?G*", "BORG_", true),
            ("XBORG_*", "BORG_", false),
            ("", "LD_", false),
            ("**", "LD_", true),
            ("ld_*", "LD_", false),
        ] {
            assert_eq!(
                pattern_admits_prefix(pattern, prefix),
                expected,
                "{pattern} {prefix}"
            );
        }
    }

    fn lint_text(text: &str) -> Vec<String> {
        lint(Path::new("/c"), &parse_text(Path::new("/c"), text, false))
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    const GOOD: &str = "ClientAliveInterval 10\nClientAliveCountMax 30\n";

    #[test]
    fn borgs_recommended_keepalives_are_clean() {
        assert_eq!(lint_text(GOOD), Vec::<String>::new());
        assert_eq!(
            lint_text(
                "ClientAliveInterval 1m\nClientAliveCountMax 5\nAcceptEnv LANG LC_*\nPermitUserEnvironment no\n"
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn keepalives_off_by_default_are_a_warning_on_the_file() {
        assert_eq!(
            lint_text("Port 22\n"),
            [
                "warning: /c: ClientAliveInterval is 0 (off): a client that vanishes mid-backup keeps its session, and the repository lock, until TCP gives up; set `ClientAliveInterval 10` and `ClientAliveCountMax 30`, as borg's documentation suggests"
            ]
        );
    }

    #[test]
    fn the_first_global_value_counts() {
        let text = "ClientAliveInterval 10\nClientAliveInterval 0\nClientAliveCountMax 30\n";
        assert_eq!(lint_text(text), Vec::<String>::new());
        let text = "ClientAliveInterval 0\nClientAliveInterval 10\n";
        assert_eq!(lint_text(text).len(), 1);
        assert!(lint_text(text)[0].starts_with("warning: /c:1: ClientAliveInterval is 0"));
    }

    #[test]
    fn long_keepalive_windows_and_count_zero_are_warnings() {
        assert_eq!(
            lint_text("ClientAliveInterval 60\nClientAliveCountMax 30\n"),
            [
                "warning: /c:1: a vanished client keeps its session for up to 1800 s (ClientAliveInterval 60 x ClientAliveCountMax 30), longer than the --lock-wait 600 borg suggests for clients; set `ClientAliveInterval 10` and `ClientAliveCountMax 30`, as borg's documentation suggests"
            ]
        );
        let zero = lint_text("ClientAliveInterval 10\nClientAliveCountMax 0\n");
        assert_eq!(zero.len(), 1);
        assert!(zero[0].starts_with("warning: /c:2: ClientAliveCountMax 0 never ends"));
        // sshd's default count (3) with a long interval.
        assert_eq!(lint_text("ClientAliveInterval 5m\n").len(), 1);
    }

    #[test]
    fn invalid_values_are_errors() {
        assert_eq!(
            lint_text("ClientAliveInterval soon\n"),
            [
                "error: /c:1: ClientAliveInterval \"soon\" is not a valid value; fix it and check with `sshd -t`"
            ]
        );
        assert_eq!(
            lint_text("ClientAliveInterval\n"),
            [
                "error: /c:1: sshd refuses this line: no argument after keyword \"ClientAliveInterval\"; fix it and check with `sshd -t`",
                "warning: /c: ClientAliveInterval is 0 (off): a client that vanishes mid-backup keeps its session, and the repository lock, until TCP gives up; set `ClientAliveInterval 10` and `ClientAliveCountMax 30`, as borg's documentation suggests"
            ]
        );
    }

    #[test]
    fn a_match_block_turning_keepalives_off_is_a_warning() {
        let text = format!("{GOOD}Match User backup\n    ClientAliveInterval 0\n");
        assert_eq!(
            lint_text(&text),
            [
                "warning: /c:4: a Match block turns keepalives off (ClientAliveInterval 0); remove it, or set `ClientAliveInterval 10`"
            ]
        );
    }

    #[test]
    fn permit_user_environment_yes_or_ld_patterns_are_warnings() {
        for value in ["yes", "YES", "LD_*", "LANG,L*", "*"] {
            let findings = lint_text(&format!("{GOOD}PermitUserEnvironment {value}\n"));
            assert_eq!(findings.len(), 1, "{value}");
            assert!(
                findings[0].starts_with("warning: /c:3: PermitUserEnvironment"),
                "{findings:?}"
            );
        }
        for value in ["no", "LANG,TZ"] {
            assert_eq!(
                lint_text(&format!("{GOOD}PermitUserEnvironment {value}\n")),
                Vec::<String>::new(),
                "{value}"
            );
        }
    }

    #[test]
    fn accept_env_letting_ld_or_borg_through_is_reported() {
        assert_eq!(
            lint_text(&format!("{GOOD}AcceptEnv LANG LD_PRELOAD\n")),
            [
                "error: /c:3: AcceptEnv LD_PRELOAD lets a client send LD_* variables, which the dynamic loader obeys before borg-gate runs; accept only what clients need, e.g. `AcceptEnv LANG LC_*`"
            ]
        );
        assert_eq!(
            lint_text(&format!("{GOOD}AcceptEnv BORG_*\n")),
            [
                "warning: /c:3: AcceptEnv BORG_* lets a client send BORG_* variables, which a plain `borg serve` forced command obeys; accept only what clients need, e.g. `AcceptEnv LANG LC_*`"
            ]
        );
        let everything = lint_text(&format!("{GOOD}Match User b\n  AcceptEnv *\n"));
        assert_eq!(everything.len(), 2, "{everything:?}");
        assert!(everything[0].starts_with("error: /c:4:"));
        assert!(everything[1].starts_with("warning: /c:4:"));
    }

    #[test]
    fn includes_are_listed_with_their_match_state() {
        let lines = parse_text(
            Path::new("/c"),
            "Include /etc/ssh/sshd_config.d/*.conf\nMatch User x\nInclude a b\n",
            false,
        );
        let found: Vec<(Vec<String>, bool)> = includes(&lines)
            .into_iter()
            .map(|(d, m)| (d.args.clone(), m))
            .collect();
        assert_eq!(
            found,
            [
                (vec!["/etc/ssh/sshd_config.d/*.conf".to_owned()], false),
                (vec!["a".to_owned(), "b".to_owned()], true)
            ]
        );
    }

    fn account(uid: u32, shell: &str, resolved: Option<&str>, executable: bool) -> Account {
        Account {
            name: "borg".into(),
            uid,
            shell: shell.into(),
            resolved_shell: resolved.map(PathBuf::from),
            shell_is_executable: executable,
        }
    }

    fn account_text(account: &Account) -> Vec<String> {
        account_findings(&Place::file(Path::new("/etc/passwd")), account)
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    #[test]
    fn a_minimal_shell_on_an_unprivileged_account_is_clean() {
        let dash = account(1000, "/bin/sh", Some("/usr/bin/dash"), true);
        assert_eq!(account_text(&dash), Vec::<String>::new());
        let unresolved = account(1000, "/bin/dash", None, true);
        assert_eq!(account_text(&unresolved), Vec::<String>::new());
    }

    #[test]
    fn nologin_and_false_run_no_forced_command() {
        for shell in [
            "/usr/sbin/nologin",
            "/sbin/nologin",
            "/bin/false",
            "/usr/bin/false",
        ] {
            let findings = account_text(&account(1000, shell, Some(shell), true));
            assert_eq!(
                findings,
                [format!(
                    "error: /etc/passwd: the login shell of borg is {shell}: sshd runs forced commands as `{shell} -c COMMAND`, so no backup can run; chsh -s /bin/sh borg"
                )]
            );
        }
    }

    #[test]
    fn a_missing_shell_is_an_error() {
        let findings = account_text(&account(1000, "/bin/nosuch", None, false));
        assert_eq!(findings.len(), 1);
        assert!(findings[0].starts_with(
            "error: /etc/passwd: the login shell of borg, /bin/nosuch, does not exist"
        ));
    }

    #[test]
    fn rich_shells_are_warnings_even_behind_a_symlink() {
        for (shell, resolved) in [
            ("/bin/bash", "/usr/bin/bash"),
            ("/usr/bin/zsh", "/usr/bin/zsh"),
            ("/bin/sh", "/usr/bin/bash"),
        ] {
            let findings = account_text(&account(1000, shell, Some(resolved), true));
            assert_eq!(findings.len(), 1, "{shell}");
            assert!(
                findings[0].starts_with(&format!(
                    "warning: /etc/passwd: the login shell of borg is {shell} ("
                )),
                "{findings:?}"
            );
            assert!(
                findings[0].ends_with(
                    "borg's documentation suggests a minimal shell: chsh -s /bin/sh borg"
                )
            );
        }
    }

    #[test]
    fn root_as_the_backup_account_is_a_warning() {
        let findings = account_text(&account(0, "/bin/sh", Some("/usr/bin/dash"), true));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].starts_with("warning: /etc/passwd: the backup keys log in as borg (uid 0)")
        );
    }

    #[test]
    fn the_first_global_value_is_the_one_sshd_uses() {
        let lines = parse_text(
            Path::new("/c"),
            "clientaliveinterval 5m\nClientAliveInterval 10\nMatch all\nClientAliveCountMax 1\n",
            false,
        );
        assert_eq!(
            first_global_value(&lines, "ClientAliveInterval"),
            Some("5m")
        );
        assert_eq!(first_global_value(&lines, "ClientAliveCountMax"), None);
    }

    /// Every string over a small alphabet, up to `max` characters.
    fn strings(alphabet: &[char], max: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn prefix_admission_agrees_with_brute_force_over_a_small_alphabet() {
        use crate::gate::decision::glob_match;
        let patterns = strings(&['A', 'B', '*', '?'], 4);
        let prefixes = strings(&['A', 'B'], 2);
        let suffixes = strings(&['A', 'B'], 4);
        for pattern in &patterns {
            for prefix in &prefixes {
                let brute = suffixes
                    .iter()
                    .any(|suffix| glob_match(pattern, &format!("{prefix}{suffix}")));
                assert_eq!(
                    pattern_admits_prefix(pattern, prefix),
                    brute,
                    "{pattern:?} {prefix:?}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,80}") {
            let _ = split_line(&text);
            let _ = split_arguments(&text);
            let _ = parse_time(&text);
            let _ = pattern_admits_prefix(&text, "LD_");
            let _ = lint(Path::new("/c"), &parse_text(Path::new("/c"), &text, false));
        }
    }
}
