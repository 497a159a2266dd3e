//! Tests of the repository config codec, including Python's configparser as borg uses it.

use super::*;
use crate::engine::borg1::repository::segment::real_borg;
use proptest::prelude::*;

const FRESH: &str = "[repository]\nversion = 1\nsegments_per_dir = 1000\nmax_segment_size = 524288000\nappend_only = 0\nstorage_quota = 0\nadditional_free_space = 0\nid = 7ef879e6570d2edf8f100697b85ea6e10e62412b9f3a5de786eff26e6a198bf1\n\n";

#[test]
fn key_data_is_refused_when_it_could_change_how_the_config_reads_back() {
    assert_eq!(
        key_text(b"hqlhbGdvcml0aG2m\nc2hhMjU2pGRhdGHaAZ4=\n"),
        Ok("hqlhbGdvcml0aG2m\nc2hhMjU2pGRhdGHaAZ4=\n")
    );
    assert_eq!(key_text(b""), Ok(""));
    for (bad, offset, character) in [
        (&b"abc\rappend_only = 0"[..], 3, '\r'),
        (b"a\r\nb", 1, '\r'),
        (b"\x00", 0, '\0'),
        (b"a\tb", 1, '\t'),
        (b"a\x0bb", 1, '\x0b'),
        (b"a\x7f", 1, '\x7f'),
        ("a\u{85}b".as_bytes(), 1, '\u{85}'),
        ("a\u{2028}b".as_bytes(), 1, '\u{2028}'),
        ("\u{202e}".as_bytes(), 0, '\u{202e}'),
    ] {
        assert_eq!(
            key_text(bad),
            Err(KeyDataError::Forbidden { offset, character }),
            "{bad:?}"
        );
    }
    assert_eq!(key_text(b"\xff"), Err(KeyDataError::NotUtf8));
    let error = key_text(b"ab\r").unwrap_err().to_string();
    assert_eq!(
        error,
        "key data may hold only printable ASCII, spaces and line breaks (\\n); found \\u{d} at byte 2"
    );
}

#[test]
fn round_trips_a_fresh_config_byte_for_byte() {
    let config = ConfigFile::parse(FRESH).unwrap();
    assert_eq!(config.to_text(), FRESH);
    // The spec says 216 bytes; `borg init -e none` really writes 209.
    assert_eq!(FRESH.len(), 209);
    let id = hex_to_bin(
        "7ef879e6570d2edf8f100697b85ea6e10e62412b9f3a5de786eff26e6a198bf1",
        32,
    )
    .unwrap();
    let created = new_repository_config(&id.try_into().unwrap(), false, 0);
    assert_eq!(created.to_text(), FRESH);
}

#[test]
fn reads_the_typed_repository_section() {
    let config = ConfigFile::parse(FRESH).unwrap();
    let repo = RepositoryConfig::from_config(&config, None).unwrap();
    assert_eq!(repo.segments_per_dir.get(), 1000);
    assert_eq!(repo.max_segment_size, 524_288_000);
    assert!(!repo.append_only);
    assert_eq!((repo.storage_quota, repo.additional_free_space), (0, 0));
    assert_eq!(
        bin_to_hex(&repo.id),
        "7ef879e6570d2edf8f100697b85ea6e10e62412b9f3a5de786eff26e6a198bf1"
    );
    assert_eq!(repository_key(&config), "");
    assert_eq!(last_segment_checked(&config), Ok(-1));
}

#[test]
fn multi_line_keys_are_written_with_tab_continuations() {
    let mut config = ConfigFile::parse(FRESH).unwrap();
    config
        .set("repository", "key", "line1\nline2\nline3")
        .unwrap();
    let text = config.to_text();
    assert!(text.ends_with("key = line1\n\tline2\n\tline3\n\n"));
    let reread = ConfigFile::parse(&text).unwrap();
    assert_eq!(repository_key(&reread), "line1\nline2\nline3");
    assert_eq!(reread, config);
}

#[test]
fn set_replaces_in_place_and_remove_option_removes() {
    let mut config = ConfigFile::parse(FRESH).unwrap();
    config.set("repository", "Append_Only", "1").unwrap();
    config
        .set("repository", "last_segment_checked", "17")
        .unwrap();
    let options: Vec<&str> = config
        .options("repository")
        .unwrap()
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(options[3], "append_only");
    assert_eq!(options.last(), Some(&"last_segment_checked"));
    assert_eq!(last_segment_checked(&config), Ok(17));
    assert_eq!(
        config.remove_option("repository", "last_segment_checked"),
        Ok(true)
    );
    assert_eq!(
        config.remove_option("repository", "last_segment_checked"),
        Ok(false)
    );
    assert!(
        RepositoryConfig::from_config(&config, None)
            .unwrap()
            .append_only
    );
    assert_eq!(
        config.set("nosuch", "a", "b"),
        Err(ConfigEditError::NoSection("nosuch".into()))
    );
    assert_eq!(
        config.add_section("repository"),
        Err(ConfigEditError::DuplicateSection("repository".into()))
    );
}

#[test]
fn parses_the_configparser_dialect() {
    let text = "# leading comment\n\n[repository]\nVERSION: 1\n  ; indented comment\nkey = first\n  second\n\n\tthird\n# comment inside\n  fourth\n\nother=a=b:c\nempty =\n[Other Section] trailing\nx : y\n";
    let config = ConfigFile::parse(text).unwrap();
    assert_eq!(config.get("repository", "version"), Some("1"));
    assert_eq!(
        config.get("repository", "key"),
        Some("first\nsecond\n\nthird\nfourth")
    );
    assert_eq!(config.get("repository", "other"), Some("a=b:c"));
    assert_eq!(config.get("repository", "empty"), Some(""));
    assert_eq!(
        config.sections().collect::<Vec<_>>(),
        vec!["repository", "Other Section"]
    );
    assert_eq!(config.get("Other Section", "X"), Some("y"));
}

#[test]
fn default_section_is_inherited_and_written_first() {
    let text = "[repository]\nid = 00\n[DEFAULT]\nversion = 1\n";
    let config = ConfigFile::parse(text).unwrap();
    assert_eq!(config.get("repository", "version"), Some("1"));
    assert!(!config.has_section("DEFAULT"));
    assert_eq!(
        config.to_text(),
        "[DEFAULT]\nversion = 1\n\n[repository]\nid = 00\n\n"
    );
}

#[test]
fn universal_newlines_are_accepted() {
    let config =
        ConfigFile::parse("[repository]\r\nversion = 1\rsegments_per_dir = 5\r\n").unwrap();
    assert_eq!(config.get("repository", "version"), Some("1"));
    assert_eq!(config.get("repository", "segments_per_dir"), Some("5"));
}

#[test]
fn syntax_errors_are_reported() {
    assert!(matches!(
        ConfigFile::parse("version = 1\n"),
        Err(ConfigSyntaxError::MissingSectionHeader { line: 1, .. })
    ));
    assert!(matches!(
        ConfigFile::parse("[a]\n[a]\n"),
        Err(ConfigSyntaxError::DuplicateSection { line: 2, .. })
    ));
    assert!(matches!(
        ConfigFile::parse("[a]\nx=1\nX=2\n"),
        Err(ConfigSyntaxError::DuplicateOption { line: 3, .. })
    ));
    assert!(matches!(
        ConfigFile::parse("[a]\njunk\n= value\nok = 1\n"),
        Err(ConfigSyntaxError::Parsing { ref lines }) if lines.len() == 2
    ));
    assert_eq!(
        ConfigFile::parse_bytes(b"[a]\n\xff = 1\n"),
        Err(ConfigSyntaxError::NotUtf8)
    );
    assert!(ConfigFile::parse("[]\n").is_err());
}

fn repository_error(text: &str) -> RepositoryConfigError {
    RepositoryConfig::from_config(&ConfigFile::parse(text).unwrap(), None).unwrap_err()
}

#[test]
fn repository_validation_matches_borg_messages() {
    assert_eq!(
        repository_error("[other]\n").to_string(),
        "no repository section found"
    );
    assert_eq!(
        repository_error("[Repository]\nversion = 1\n"),
        RepositoryConfigError::NoRepositorySection
    );
    let version2 = repository_error("[repository]\nversion = 2\n");
    assert_eq!(
        version2.to_string(),
        "repository version 2 is not supported by this borg version"
    );
    assert!(version2.is_invalid_repository_config());
    let big = FRESH.replace("524288000", "4273995776");
    assert_eq!(
        repository_error(&big).to_string(),
        "max_segment_size >= 4273995776"
    );
    let ok = FRESH.replace("524288000", "4273995775");
    assert!(RepositoryConfig::from_config(&ConfigFile::parse(&ok).unwrap(), None).is_ok());
    let big_suffix = FRESH.replace("524288000", "5G");
    assert_eq!(
        repository_error(&big_suffix),
        RepositoryConfigError::MaxSegmentSizeTooBig
    );
    assert_eq!(
        repository_error("[repository]\n").to_string(),
        "No option 'version' in section: 'repository'"
    );
    assert_eq!(
        repository_error("[repository]\nversion = one\n").to_string(),
        "invalid literal for int() with base 10: 'one'"
    );
    let short_id = FRESH.replace("bf1\n", "b1\n");
    assert_eq!(repository_error(&short_id).to_string(), "Odd-length string");
    let short_id = FRESH.replace("bf1\n", "1\n");
    assert_eq!(
        repository_error(&short_id).to_string(),
        "Expected 32 bytes (64 hex digits), got 31 bytes."
    );
    let bad_bool = FRESH.replace("append_only = 0", "append_only = maybe");
    assert_eq!(
        repository_error(&bad_bool).to_string(),
        "Not a boolean: maybe"
    );
    let zero_dirs = FRESH.replace("segments_per_dir = 1000", "segments_per_dir = 0");
    assert!(matches!(
        repository_error(&zero_dirs),
        RepositoryConfigError::SegmentsPerDirOutOfRange(_)
    ));
    let bad_quota = FRESH.replace("storage_quota = 0", "storage_quota = lots");
    assert!(matches!(
        repository_error(&bad_quota),
        RepositoryConfigError::InvalidFileSize { .. }
    ));
    let overridden =
        RepositoryConfig::from_config(&ConfigFile::parse(&bad_quota).unwrap(), Some(5)).unwrap();
    assert_eq!(overridden.storage_quota, 5);
}

#[test]
fn typed_values_follow_python_rules() {
    let text = FRESH
        .replace("version = 1", "version = +0_1")
        .replace("max_segment_size = 524288000", "max_segment_size = 1.5M")
        .replace("append_only = 0", "append_only = YES")
        .replace("storage_quota = 0", "storage_quota = 10G");
    let repo = RepositoryConfig::from_config(&ConfigFile::parse(&text).unwrap(), None).unwrap();
    assert_eq!(repo.max_segment_size, 1_500_000);
    assert!(repo.append_only);
    assert_eq!(repo.storage_quota, 10_000_000_000);
    let negative = FRESH.replace("max_segment_size = 524288000", "max_segment_size = -5");
    assert_eq!(
        RepositoryConfig::from_config(&ConfigFile::parse(&negative).unwrap(), None)
            .unwrap()
            .max_segment_size,
        0
    );
}

#[test]
fn python_int_parsing() {
    assert_eq!(parse_python_int(" 007 ").as_deref(), Some("7"));
    assert_eq!(parse_python_int("-0").as_deref(), Some("0"));
    assert_eq!(parse_python_int("1_000").as_deref(), Some("1000"));
    assert_eq!(
        parse_python_int("-99999999999999999999999").as_deref(),
        Some("-99999999999999999999999")
    );
    for bad in ["", "-", "1__0", "_1", "1_", "1.0", "0x1", "1 2", "+-1"] {
        assert_eq!(parse_python_int(bad), None, "{bad:?}");
    }
}

#[test]
fn booleans_follow_configparser() {
    for truthy in ["1", "yes", "TRUE", "On"] {
        assert_eq!(parse_boolean(truthy), Some(true));
    }
    for falsy in ["0", "no", "False", "OFF"] {
        assert_eq!(parse_boolean(falsy), Some(false));
    }
    for bad in ["", "2", "y", " yes"] {
        assert_eq!(parse_boolean(bad), None);
    }
}

#[test]
fn nonce_codec_is_strict_like_borg_1_4() {
    assert_eq!(encode_nonce(0x0123_4567_89ab_cdef), "0123456789abcdef");
    assert_eq!(encode_nonce(5).len(), 16);
    assert_eq!(parse_nonce(b"0123456789abcdef"), Ok(0x0123_4567_89ab_cdef));
    assert_eq!(
        parse_nonce(b" 0123456789ABCDEF\n"),
        Ok(0x0123_4567_89ab_cdef)
    );
    assert_eq!(
        parse_nonce(b"0123").unwrap_err().to_string(),
        "Repository has an invalid nonce file: Expected 8 bytes (16 hex digits), got 2 bytes."
    );
    assert_eq!(
        parse_nonce(b"0123456789abcdeg").unwrap_err().to_string(),
        "Repository has an invalid nonce file: Non-hexadecimal digit found"
    );
    assert!(parse_nonce(b"0123456789abcde").is_err());
    assert!(parse_nonce(b"").is_err());
    assert!(parse_nonce(b"\xff\xfe").is_err());
}

/// Tricky inputs compared against Python's own ConfigParser.
const DIALECT_SAMPLES: &[&str] = &[
    "[repository]\nversion = 1\n",
    "[repository]\nkey = a\n\tb\n\n\n\tc\n\n",
    "[repository]\nkey = a\n  # not a continuation\n  b\n",
    "[repository]\n  indented = 1\n  same = 2\n    deeper\n",
    "[a]\nx = 1\n[b]\ny = 2\n[DEFAULT]\nz = 3\n",
    "[a]x\nk:v\n",
    "[a]]\nk=v\n",
    "[a]\nk = v # not a comment\n",
    "[a]\nk = \n  cont\n",
    "[a]\nK = v\nk2 = V\n",
    "[a]\r\nk = v\r\n\r\n",
    "[a]\rk = v\r",
    "[a]\n\u{a0}k\u{a0}=\u{a0}v\u{a0}\n",
    "[a]\nk = v\n\u{1c}cont\n",
    "[a]\n:v\n",
    "[a]\njunk\n",
    "k = v\n",
    "[a]\n[a]\n",
    "[a]\nk=1\nK=2\n",
    "\u{feff}[a]\nk=v\n",
    "[DEFAULT]\nk=v\n[DEFAULT]\nj=w\n",
    "",
    "\n\n# only comments\n",
    "[a]\nk = v\n[b]\n\tk = w\n",
    "[a]\nk = line\n\n[b]\n",
    "[a]\nk = x\n   \n  y\n",
    "[a]\n\tk = v\n\t\tw\n\tj = x\n",
    "  [a]\n  k = v\n   w\n",
    "[a]\nk: v = w\n",
    "[a]\n\u{c4}\u{df} = 1\n",
    "[a]\nk = v\n\t\n",
    "[a]\nk = v\n;c\n  w\n",
    "[a]\nk = v\n#c\n\n  w\n",
    "[ a ]\nk=v\n",
    "[a]\nk\t=\tv\t\n",
    "[a]\n  \n",
    "[a]\nk = v\n  [b]\n",
    "[DEFAULT]\nk = v\n  w\n[a]\n",
    "[a]\nk = v\njunk\n  more\n",
    "[a]\nk = v\u{2028}w\n",
    "[a]\nk = v\x0bw\n\x0c\n",
];

fn ours(text: &str) -> String {
    match ConfigFile::parse(text) {
        Ok(config) => {
            let mut out = String::new();
            for (name, options) in std::iter::once(("DEFAULT", config.options("DEFAULT").unwrap()))
                .chain(
                    config
                        .sections()
                        .map(|name| (name, config.options(name).unwrap())),
                )
            {
                out.push_str(&format!("S {}\n", bin_to_hex(name.as_bytes())));
                for (option, value) in options {
                    out.push_str(&format!(
                        "O {} {}\n",
                        bin_to_hex(option.as_bytes()),
                        bin_to_hex(value.as_bytes())
                    ));
                }
            }
            out.push_str(&format!("W {}\n", bin_to_hex(config.to_text().as_bytes())));
            out
        }
        Err(ConfigSyntaxError::MissingSectionHeader { .. }) => {
            "E MissingSectionHeaderError\n".to_owned()
        }
        Err(ConfigSyntaxError::DuplicateSection { .. }) => "E DuplicateSectionError\n".to_owned(),
        Err(ConfigSyntaxError::DuplicateOption { .. }) => "E DuplicateOptionError\n".to_owned(),
        Err(ConfigSyntaxError::Parsing { .. }) => "E ParsingError\n".to_owned(),
        Err(ConfigSyntaxError::NotUtf8) => "E UnicodeDecodeError\n".to_owned(),
    }
}

const PYTHON_DIALECT: &str = r#"
import sys, io, configparser
for sample in sys.stdin.buffer.read().split(b'\x00'):
    c = configparser.ConfigParser(interpolation=None)
    try:
        c.read_file(io.TextIOWrapper(io.BytesIO(sample), encoding='utf-8'))
    except configparser.Error as e:
        print('E', type(e).__name__)
        print('--')
        continue
    print('S', b'DEFAULT'.hex())
    for k, v in c.defaults().items():
        print('O', k.encode().hex(), v.encode().hex())
    for s in c.sections():
        print('S', s.encode().hex())
        for k, v in c._sections[s].items():
            print('O', k.encode().hex(), v.encode().hex())
    out = io.StringIO()
    c.write(out)
    print('W', out.getvalue().encode().hex())
    print('--')
"#;

#[test]
fn dialect_agrees_with_python_configparser() {
    let Some(python) = real_borg::python() else {
        return;
    };
    let input = DIALECT_SAMPLES.join("\u{0}");
    let output = real_borg::run_python(&python, PYTHON_DIALECT, input.as_bytes());
    let expected: Vec<&str> = output.split("--\n").filter(|s| !s.is_empty()).collect();
    assert_eq!(expected.len(), DIALECT_SAMPLES.len());
    for (sample, want) in DIALECT_SAMPLES.iter().zip(expected) {
        assert_eq!(ours(sample), want, "sample {sample:?}");
    }
}

#[test]
fn borg_written_config_round_trips_byte_for_byte() {
    let Some(made) = real_borg::RealRepository::new("repokey") else {
        return;
    };
    let repo = &made.path;
    let bytes = std::fs::read(repo.join("config")).unwrap();
    let config = ConfigFile::parse_bytes(&bytes).unwrap();
    assert_eq!(config.to_text().as_bytes(), &bytes[..]);
    let typed = RepositoryConfig::from_config(&config, None).unwrap();
    assert_eq!(typed.segments_per_dir.get(), DEFAULT_SEGMENTS_PER_DIR);
    assert_eq!(typed.max_segment_size, DEFAULT_MAX_SEGMENT_SIZE);
    let key = repository_key(&config);
    assert!(
        key.len() > 300 && key.contains('\n'),
        "repokey stores a multi-line key"
    );
    let id_hex = config.get("repository", "id").unwrap();
    assert_eq!(bin_to_hex(&typed.id), id_hex);
    // The fresh-config layout equals what borg init wrote, minus the key.
    let mut without_key = config.clone();
    without_key.remove_option("repository", "key").unwrap();
    assert_eq!(new_repository_config(&typed.id, false, 0), without_key);
    // Write our config and let borg use it.
    let mut ours = config.clone();
    ours.set("repository", "last_segment_checked", "0").unwrap();
    std::fs::write(repo.join("config"), ours.to_text()).unwrap();
    made.borg(&["check", "--repository-only", repo.to_str().unwrap()]);
    let after = ConfigFile::parse_bytes(&std::fs::read(repo.join("config")).unwrap()).unwrap();
    assert_eq!(
        after, config,
        "borg check removed our last_segment_checked and kept the rest"
    );
    let nonce = std::fs::read(repo.join("nonce")).unwrap();
    let value = parse_nonce(&nonce).unwrap();
    assert_eq!(encode_nonce(value).as_bytes(), &nonce[..]);
}

proptest! {
    #[test]
    fn written_configs_read_back_equal(
        options in proptest::collection::vec(("[a-z_][a-z0-9_]{0,8}", "[ -~]{0,20}(\n[a-zA-Z0-9][ -~]{0,10}){0,3}"), 0..8)
    ) {
        let mut config = ConfigFile::new();
        config.add_section("repository").unwrap();
        for (name, value) in &options {
            config.set("repository", name, value).unwrap();
        }
        let reread = ConfigFile::parse(&config.to_text()).unwrap();
        for (name, _) in config.options("repository").unwrap() {
            // Reading strips every line and the end of the value, as ConfigParser does.
            let written = config.get("repository", name).unwrap();
            let normalised: Vec<&str> = written.split('\n').map(python_strip).collect();
            let expected = normalised.join("\n");
            prop_assert_eq!(reread.get("repository", name).unwrap(), expected.trim_end());
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Ok(config) = ConfigFile::parse(&text) {
            let _ = RepositoryConfig::from_config(&config, None);
            let _ = config.to_text();
        }
    }
}
