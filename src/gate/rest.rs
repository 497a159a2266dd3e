//! borg 2's request: `<program> serve --rest --backend FILE:<path>`, exactly as borg 2's client
//! sends it (borg 2 `repository.py`, `rest_serve_command`), and nothing else.
//!
//! borg 2 clients send no options at all: no log level, no lock wait, no umask. So where the
//! borg 1 form is filtered option by option, this form is matched word for word, and every
//! other word is refused: a `--config FILE` for borg's own parser, a second `--backend` (the
//! last one would win), an attached `--backend=...`, anything before `serve`. A backend that
//! is not `FILE:` names a server to connect to (`sftp://`, `s3:`, `rest://`) and is refused
//! first, whatever else the command says, so that the audit record names it.
//!
//! Pure. The path is returned as written; the pipeline resolves it.

use std::fmt;

use super::command::quoted;

/// The exact form, as refusals quote it.
pub(crate) const FORM: &str = "`borg serve --rest --backend FILE:<path>`";

/// Why a borg 2 request is not the one form. Each is one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestError {
    /// A backend other than `FILE:<path>`.
    NotFile(String),
    MissingRest,
    MissingBackend,
    BackendTwice,
    /// `FILE:` with no path after it.
    EmptyPath,
    /// A word where the form has another one, or none.
    Unexpected(String),
}

impl fmt::Display for RestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestError::NotFile(backend) => write!(
                f,
                "backend {} is not a FILE:<path> backend; borg-gate serves borg 2 repositories only as FILE:<path>, and never connects elsewhere",
                quoted(backend)
            ),
            RestError::MissingRest => write!(
                f,
                "--backend without --rest; borg 2 clients send exactly {FORM}"
            ),
            RestError::MissingBackend => write!(
                f,
                "--rest without --backend FILE:<path>; borg 2 clients send exactly {FORM}"
            ),
            RestError::BackendTwice => write!(
                f,
                "--backend is given more than once; borg 2 clients send exactly {FORM}"
            ),
            RestError::EmptyPath => write!(f, "the backend FILE: names no path"),
            RestError::Unexpected(word) => write!(
                f,
                "unexpected argument {} in a borg 2 request; borg 2 clients send exactly {FORM}",
                quoted(word)
            ),
        }
    }
}

impl std::error::Error for RestError {}

/// Reads the words after the program name as a borg 2 request: `None` when they are not one
/// (no `--rest` and no `--backend` in any spelling: the borg 1 form, or not borg at all),
/// else the path after `FILE:`, or why the words are not the one form.
pub(crate) fn read_rest_request(arguments: &[String]) -> Option<Result<String, RestError>> {
    if !arguments.iter().any(|word| is_rest_word(word)) {
        return None;
    }
    Some(read_form(arguments))
}

fn read_form(arguments: &[String]) -> Result<String, RestError> {
    let backends = backend_values(arguments);
    if let Some(other) = backends.iter().flatten().find(|b| !b.starts_with("FILE:")) {
        return Err(RestError::NotFile((*other).to_owned()));
    }
    if backends.len() > 1 {
        return Err(RestError::BackendTwice);
    }
    if !arguments.iter().any(|word| word == "--rest") {
        return Err(RestError::MissingRest);
    }
    if backends.is_empty() {
        return Err(RestError::MissingBackend);
    }
    for (index, expected) in ["serve", "--rest", "--backend"].into_iter().enumerate() {
        match arguments.get(index) {
            Some(word) if word == expected => {}
            Some(word) => return Err(RestError::Unexpected(word.clone())),
            None => return Err(RestError::MissingBackend),
        }
    }
    if let Some(extra) = arguments.get(4) {
        return Err(RestError::Unexpected(extra.clone()));
    }
    let path = arguments
        .get(3)
        .and_then(|backend| backend.strip_prefix("FILE:"))
        .ok_or(RestError::MissingBackend)?;
    if path.is_empty() {
        return Err(RestError::EmptyPath);
    }
    Ok(path.to_owned())
}

/// `--rest`, or `--backend` in any spelling argparse would take for it (`--backend=X`,
/// `--back X`): a word only borg 2's `serve` knows.
fn is_rest_word(word: &str) -> bool {
    let name = word.split_once('=').map_or(word, |(name, _)| name);
    name == "--rest" || is_backend_option(name)
}

/// argparse's unambiguous prefixes of `--backend`; `--b` could also be borg's `--bypass-lock`.
fn is_backend_option(name: &str) -> bool {
    name.len() >= 4 && "--backend".starts_with(name)
}

/// The value of every `--backend` option (`None` where it has none), in order.
fn backend_values(arguments: &[String]) -> Vec<Option<&str>> {
    let mut values = Vec::new();
    let mut words = arguments.iter().peekable();
    while let Some(word) = words.next() {
        match word.split_once('=') {
            Some((name, value)) if is_backend_option(name) => values.push(Some(value)),
            None if is_backend_option(word) => values.push(
                words
                    .next_if(|next| !next.starts_with('-'))
                    .map(String::as_str),
            ),
            _ => {}
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Option<Result<String, RestError>> {
        let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        read_rest_request(&words)
    }

    #[test]
    fn the_one_form_gives_the_path_as_written() {
        assert_eq!(
            read("serve --rest --backend FILE:/srv/r"),
            Some(Ok("/srv/r".into()))
        );
        assert_eq!(
            read("serve --rest --backend FILE:~/r"),
            Some(Ok("~/r".into()))
        );
        assert_eq!(
            read("serve --rest --backend FILE:repo"),
            Some(Ok("repo".into()))
        );
        assert_eq!(
            read("serve --rest --backend FILE:sftp://x"),
            Some(Ok("sftp://x".into()))
        );
    }

    #[test]
    fn words_without_rest_or_backend_are_not_a_borg2_request() {
        assert_eq!(read("serve"), None);
        assert_eq!(read("serve --info --restrict-to-path=/"), None);
        assert_eq!(read("serve --restrict /"), None);
        assert_eq!(read("serve --b x"), None);
        assert_eq!(read("list"), None);
    }

    #[test]
    fn other_backends_are_refused_before_anything_else() {
        for text in [
            "serve --rest --backend sftp://evil/x",
            "serve --backend s3:bucket",
            "serve --backend=rest://host/x",
            "--info serve --rest --back file:///x",
            "serve --rest --backend FILE:/ok --backend http://x",
        ] {
            assert!(
                matches!(read(text), Some(Err(RestError::NotFile(_)))),
                "{text}: {:?}",
                read(text)
            );
        }
    }

    #[test]
    fn every_other_form_is_refused() {
        let cases = [
            ("serve --backend FILE:/x", RestError::MissingRest),
            ("serve --rest", RestError::MissingBackend),
            ("serve --rest --backend", RestError::MissingBackend),
            (
                "serve --rest --backend FILE:/x --backend FILE:/y",
                RestError::BackendTwice,
            ),
            (
                "serve --rest --backend=FILE:/x",
                RestError::Unexpected("--backend=FILE:/x".into()),
            ),
            (
                "serve --rest --back FILE:/x",
                RestError::Unexpected("--back".into()),
            ),
            (
                "serve --backend FILE:/x --rest",
                RestError::Unexpected("--backend".into()),
            ),
            (
                "--config /tmp/x serve --rest --backend FILE:/x",
                RestError::Unexpected("--config".into()),
            ),
            (
                "serve --rest --backend FILE:/x --config /tmp/y",
                RestError::Unexpected("--config".into()),
            ),
            (
                "serve --rest --backend FILE:/x --info",
                RestError::Unexpected("--info".into()),
            ),
            (
                "serve --rest --rest --backend FILE:/x",
                RestError::Unexpected("--rest".into()),
            ),
            ("serve --rest --backend FILE:", RestError::EmptyPath),
            (
                "list --rest --backend FILE:/x",
                RestError::Unexpected("list".into()),
            ),
        ];
        for (text, error) in cases {
            assert_eq!(read(text), Some(Err(error)), "{text}");
        }
    }

    #[test]
    fn refusals_are_one_line() {
        let errors = [
            RestError::NotFile("x\ny".into()),
            RestError::MissingRest,
            RestError::MissingBackend,
            RestError::BackendTwice,
            RestError::EmptyPath,
            RestError::Unexpected("a\nb".repeat(100)),
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains('\n') && text.len() < 300, "{text:?}");
        }
    }
}
