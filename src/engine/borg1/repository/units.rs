//! File sizes as borg writes and reads them: `parse_file_size` ("500M", "1.5G") and `format_file_size` ("20.00 MB").
//!
//! Both follow `helpers/parseformat.py` of borg 1.4.5 to the byte, because the parsed values come from
//! the repository `config` and the formatted ones end up in error messages that clients show to users.

use std::fmt;

use crate::common::python::python_str_repr;

/// Why a file size could not be parsed; `Display` gives Python's `ValueError`/`OverflowError` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSizeError {
    /// The text is empty (Python: `int('')`).
    Empty,
    /// The number part is not a Python float literal.
    NotANumber { text: String },
    /// The number part is `nan`.
    NotFinite { nan: bool },
}

impl fmt::Display for FileSizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "invalid literal for int() with base 10: ''"),
            Self::NotANumber { text } => {
                write!(
                    f,
                    "could not convert string to float: {}",
                    python_str_repr(text)
                )
            }
            Self::NotFinite { nan: true } => write!(f, "cannot convert float NaN to integer"),
            Self::NotFinite { nan: false } => write!(f, "cannot convert float infinity to integer"),
        }
    }
}

impl std::error::Error for FileSizeError {}

/// Parses a size like borg's `parse_file_size`: an optional decimal suffix `K`, `M`, `G`, `T` or `P`
/// (powers of 1000, upper case only) after a Python float literal; the product is truncated toward zero.
///
/// Python returns an unbounded integer; results beyond the `i64` range saturate here. Every use borg makes
/// of these values is a comparison against a far smaller limit, so saturation keeps each outcome.
pub(crate) fn parse_file_size(text: &str) -> Result<i64, FileSizeError> {
    let Some(suffix) = text.chars().last() else {
        return Err(FileSizeError::Empty);
    };
    let factor: f64 = match suffix {
        'K' => 1e3,
        'M' => 1e6,
        'G' => 1e9,
        'T' => 1e12,
        'P' => 1e15,
        _ => 1.0,
    };
    let number = if factor == 1.0 {
        text
    } else {
        &text[..text.len() - suffix.len_utf8()]
    };
    let value = parse_python_float(number).ok_or_else(|| FileSizeError::NotANumber {
        text: number.to_owned(),
    })?;
    let product = value * factor;
    if product.is_nan() {
        return Err(FileSizeError::NotFinite { nan: true });
    }
    if product.is_infinite() {
        return Err(FileSizeError::NotFinite { nan: false });
    }
    // `as` truncates toward zero and saturates at the i64 bounds, which is what we document.
    Ok(product.trunc() as i64)
}

/// Formats a size like borg's `format_file_size(v)` (decimal units, precision 2): `"999 B"`, `"20.97 MB"`.
pub(crate) fn format_file_size(value: i64) -> String {
    const UNITS: [&str; 9] = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"];
    const PRECISION: usize = 2;
    // Python starts with the int itself: an int rounds to itself, so small values print without decimals.
    if value.unsigned_abs() < 1000 {
        return format!("{value} B");
    }
    let mut number = value as f64 / 1000.0;
    for unit in &UNITS[1..UNITS.len() - 1] {
        if python_round(number, PRECISION).abs() < 1000.0 {
            return format!("{number:.PRECISION$} {unit}B");
        }
        number /= 1000.0;
    }
    format!("{number:.PRECISION$} {}B", UNITS[UNITS.len() - 1])
}

/// Python's `round(x, digits)` for floats: exact decimal rounding, ties to even on the binary value.
/// Rust's fixed-precision formatting rounds the same way, so the round trip through text is exact.
fn python_round(number: f64, digits: usize) -> f64 {
    format!("{number:.digits$}").parse().unwrap_or(number)
}

/// Python's `str.isspace()`: Unicode White_Space plus the ASCII separators U+001C..U+001F.
pub(crate) fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` without arguments.
pub(crate) fn python_strip(text: &str) -> &str {
    text.trim_matches(is_python_space)
}

/// Parses a Python `float()` literal (ASCII digits only): surrounding whitespace, sign, `_` between digits,
/// `inf`/`infinity`/`nan` in any case. Returns `None` for anything Python would reject.
pub(crate) fn parse_python_float(text: &str) -> Option<f64> {
    let body = python_strip(text);
    let (negative, unsigned) = match body.as_bytes().first() {
        Some(b'-') => (true, &body[1..]),
        Some(b'+') => (false, &body[1..]),
        _ => (false, body),
    };
    let lower = unsigned.to_ascii_lowercase();
    let magnitude = if lower == "inf" || lower == "infinity" {
        f64::INFINITY
    } else if lower == "nan" {
        f64::NAN
    } else {
        let digits = python_decimal_literal_digits(unsigned)?;
        digits.parse::<f64>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// Validates `digits ["." [digits]] | "." digits` with an optional exponent, where `digits` may contain
/// single underscores between digits, and returns the literal without underscores.
fn python_decimal_literal_digits(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut cleaned = String::with_capacity(text.len());
    let mut index = 0;
    let integer_digits = take_digit_part(bytes, &mut index, &mut cleaned);
    let mut fraction_digits = 0;
    if bytes.get(index) == Some(&b'.') {
        cleaned.push('.');
        index += 1;
        fraction_digits = take_digit_part(bytes, &mut index, &mut cleaned);
    }
    if integer_digits == 0 && fraction_digits == 0 {
        return None;
    }
    if matches!(bytes.get(index), Some(b'e' | b'E')) {
        cleaned.push('e');
        index += 1;
        if let Some(&sign @ (b'+' | b'-')) = bytes.get(index) {
            cleaned.push(char::from(sign));
            index += 1;
        }
        if take_digit_part(bytes, &mut index, &mut cleaned) == 0 {
            return None;
        }
    }
    (index == bytes.len()).then_some(cleaned)
}

/// Consumes `digit (["_"] digit)*` and returns how many digits it took (0 if none).
fn take_digit_part(bytes: &[u8], index: &mut usize, out: &mut String) -> usize {
    let mut count = 0;
    while let Some(&byte) = bytes.get(*index) {
        if byte.is_ascii_digit() {
            out.push(char::from(byte));
            count += 1;
            *index += 1;
        } else if byte == b'_' && count > 0 && bytes.get(*index + 1).is_some_and(u8::is_ascii_digit)
        {
            *index += 1;
        } else {
            break;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::borg1::repository::segment::real_borg;

    #[test]
    fn parses_plain_integers_and_suffixes() {
        assert_eq!(parse_file_size("524288000"), Ok(524_288_000));
        assert_eq!(parse_file_size("500M"), Ok(500_000_000));
        assert_eq!(parse_file_size("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_file_size("10K"), Ok(10_000));
        assert_eq!(parse_file_size("2T"), Ok(2_000_000_000_000));
        assert_eq!(parse_file_size("1P"), Ok(1_000_000_000_000_000));
        assert_eq!(parse_file_size("0"), Ok(0));
        assert_eq!(parse_file_size("-5"), Ok(-5));
        assert_eq!(parse_file_size("1.9"), Ok(1));
        assert_eq!(parse_file_size("-1.9"), Ok(-1));
        assert_eq!(parse_file_size(" 7 "), Ok(7));
        assert_eq!(parse_file_size("1_000K"), Ok(1_000_000));
        assert_eq!(parse_file_size("1e3"), Ok(1000));
        assert_eq!(parse_file_size(".5K"), Ok(500));
    }

    #[test]
    fn rejects_what_python_rejects() {
        assert_eq!(parse_file_size(""), Err(FileSizeError::Empty));
        for bad in [
            "k", "5k", "5KB", "5 K ", "abc", "1__0", "_1", "1_", "e5", "1e", ".", "--1", "0x10",
            "K",
        ] {
            assert!(parse_file_size(bad).is_err(), "{bad:?} must be rejected");
        }
        assert_eq!(
            parse_file_size("nan"),
            Err(FileSizeError::NotFinite { nan: true })
        );
        assert_eq!(
            parse_file_size("-infK"),
            Err(FileSizeError::NotFinite { nan: false })
        );
    }

    #[test]
    fn saturates_beyond_i64() {
        assert_eq!(parse_file_size("1e300"), Ok(i64::MAX));
        assert_eq!(parse_file_size("-1e290P"), Ok(i64::MIN));
    }

    #[test]
    fn error_messages_match_python() {
        assert_eq!(
            parse_file_size("abc").unwrap_err().to_string(),
            "could not convert string to float: 'abc'"
        );
        assert_eq!(
            parse_file_size("").unwrap_err().to_string(),
            "invalid literal for int() with base 10: ''"
        );
    }

    #[test]
    fn formats_small_values_without_decimals() {
        assert_eq!(format_file_size(0), "0 B");
        assert_eq!(format_file_size(999), "999 B");
        assert_eq!(format_file_size(-999), "-999 B");
        assert_eq!(format_file_size(1000), "1.00 kB");
        assert_eq!(format_file_size(20_000_000), "20.00 MB");
        assert_eq!(format_file_size(999_995), "1.00 MB");
        assert_eq!(format_file_size(i64::MAX), "9.22 EB");
    }

    const SIZE_SAMPLES: &[&str] = &[
        "0",
        "1",
        "1.5",
        "1.9K",
        "500M",
        "1.5G",
        "2T",
        "3P",
        "1e3",
        "1_000",
        " 42 ",
        "-7",
        "-1.5K",
        ".5M",
        "5.",
        "1e-3K",
        "0.0001P",
        "123456789",
        "9007199254740993",
        "1e18",
        "abc",
        "5KB",
        "",
        "nan",
        "inf",
        "1__0",
        "+3K",
    ];

    #[test]
    fn parse_file_size_agrees_with_borg_python() {
        let Some(python) = real_borg::python() else {
            return;
        };
        let script = "import sys\nfrom borg.helpers import parse_file_size\nfor line in sys.stdin.read().split('\\x00'):\n    try:\n        print(parse_file_size(line))\n    except Exception:\n        print('ERR')\n";
        let input = SIZE_SAMPLES.join("\u{0}");
        let output = real_borg::run_python(&python, script, input.as_bytes());
        let expected: Vec<&str> = output.lines().collect();
        assert_eq!(expected.len(), SIZE_SAMPLES.len());
        for (sample, want) in SIZE_SAMPLES.iter().zip(expected) {
            let got = match parse_file_size(sample) {
                Ok(value) => value.to_string(),
                Err(_) => "ERR".to_owned(),
            };
            assert_eq!(got, want, "parse_file_size({sample:?})");
        }
    }

    #[test]
    fn format_file_size_agrees_with_borg_python() {
        let Some(python) = real_borg::python() else {
            return;
        };
        let mut samples: Vec<i64> = vec![
            0, 1, 999, 1000, 1001, 999_994, 999_995, 999_999, 1_000_000, 20_971_520,
        ];
        samples.extend([
            4_273_995_776,
            524_288_000,
            20_000_000,
            -1,
            -1000,
            -999_995,
            -20_971_520,
            i64::MAX,
            i64::MIN,
        ]);
        let mut value: i64 = 7;
        for _ in 0..400 {
            value = value
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            samples.push(value >> (value.unsigned_abs() % 60));
        }
        for power in 0..18u32 {
            let base = 10i64.pow(power);
            samples.extend([
                base * 9 + base / 2,
                base - 1,
                base * 5 / 2,
                (i128::from(base) * 999_995 / 1_000_000) as i64,
            ]);
        }
        let script = "import sys\nfrom borg.helpers import format_file_size\nfor line in sys.stdin:\n    print(format_file_size(int(line)))\n";
        let input: String = samples.iter().map(|v| format!("{v}\n")).collect();
        let output = real_borg::run_python(&python, script, input.as_bytes());
        for (sample, want) in samples.iter().zip(output.lines()) {
            assert_eq!(
                format_file_size(*sample),
                want,
                "format_file_size({sample})"
            );
        }
        assert_eq!(output.lines().count(), samples.len());
    }

    #[test]
    fn python_repr_quotes_like_python() {
        assert_eq!(python_str_repr("abc"), "'abc'");
        assert_eq!(python_str_repr("a'b"), "\"a'b\"");
        assert_eq!(python_str_repr("a'\"b"), "'a\\'\"b'");
        assert_eq!(python_str_repr("a\nb\\"), "'a\\nb\\\\'");
    }

    proptest::proptest! {
        #[test]
        fn parse_file_size_never_panics(text in "\\PC{0,12}") {
            let _ = parse_file_size(&text);
        }

        #[test]
        fn integers_parse_to_themselves(value in -(1i64 << 53)..(1i64 << 53)) {
            proptest::prop_assert_eq!(parse_file_size(&value.to_string()), Ok(value));
        }
    }
}
