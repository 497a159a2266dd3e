//! Where the real borg installations are: the one place in the tests that names their paths.
//!
//! The environment comes first, with the variables scripts/setup.sh, scripts/test.sh and the
//! benchmarks use:
//!
//! | borg                        | executable                                          | its Python            |
//! |-----------------------------|-----------------------------------------------------|-----------------------|
//! | Debian's 1.2                | `$BORG12`, else /usr/bin/borg                        | /usr/bin/python3      |
//! | PyPI's 1.4.5 (setup.sh)     | `$BORG14`, else `$BORG14_VENV`/bin/borg, else /opt/borg145/bin/borg | `python` beside it |
//! | PyPI's 2.0.0b23 (setup.sh)  | `$BORG2`, else `$BORG2_VENV`/bin/borg, else /opt/borg2b23/bin/borg  | `python` beside it |
//!
//! An empty variable counts as unset. Whether the file exists is the caller's business (see
//! `unavailable` in tests/support/mod.rs and src/test_support.rs).
//!
//! std only: tests/support/mod.rs includes it as a module, and src/test_support.rs includes
//! the same file (`#[path]`) for the unit tests.

use std::env;
use std::path::PathBuf;

/// A borg installation the tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Borg {
    /// Debian's borgbackup package (borg 1.2).
    Debian12,
    /// borg 1.4.5 from PyPI, in the venv scripts/setup.sh creates.
    Pypi14,
    /// borg 2.0.0b23 from PyPI, in the venv scripts/setup.sh creates.
    Pypi2,
}

impl Borg {
    /// The `borg` executable, as this process's environment says.
    pub(crate) fn executable(self) -> PathBuf {
        self.executable_in(|name| env::var(name).ok())
    }

    /// The Python that runs this borg and can `import borg`.
    pub(crate) fn python(self) -> PathBuf {
        self.python_in(|name| env::var(name).ok())
    }

    /// [`Borg::executable`] with `variable` as the environment (pure, for the tests of this
    /// rule).
    pub(crate) fn executable_in(self, variable: impl Fn(&str) -> Option<String>) -> PathBuf {
        let path = |name: &str| {
            variable(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        let (executable, venv, default_venv) = match self {
            Borg::Debian12 => {
                return path("BORG12").unwrap_or_else(|| PathBuf::from("/usr/bin/borg"));
            }
            Borg::Pypi14 => ("BORG14", "BORG14_VENV", "/opt/borg145"),
            Borg::Pypi2 => ("BORG2", "BORG2_VENV", "/opt/borg2b23"),
        };
        path(executable).unwrap_or_else(|| {
            path(venv)
                .unwrap_or_else(|| PathBuf::from(default_venv))
                .join("bin/borg")
        })
    }

    /// [`Borg::python`] with `variable` as the environment: Debian's borg runs on the system
    /// python3; a venv's borg on the `python` beside it in the venv's bin/.
    pub(crate) fn python_in(self, variable: impl Fn(&str) -> Option<String>) -> PathBuf {
        match self {
            Borg::Debian12 => PathBuf::from("/usr/bin/python3"),
            Borg::Pypi14 | Borg::Pypi2 => self.executable_in(variable).with_file_name("python"),
        }
    }
}
