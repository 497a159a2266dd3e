"""Puts `borg-gate serve` where borg's remote test suites start Python `borg serve`.

borg's `RemoteRepository` starts `[sys.executable, '-m', 'borg.archiver', 'serve', ...]` for
locations on the host `__testsuite__`, in the pytest process and in every borg client a
test forks. A `.pth` file in the suite's venv imports this module into every python of the
venv, and with $GATE_SUITE_ENGINE set (the borg-gate executable) the prefix becomes
`[ENGINE, 'serve']`, every option the client and the test add kept. Unset, nothing changes,
so the same venv runs the suite against Python `borg serve`. With $GATE_SUITE_STARTS naming
a file, every server start appends its command line there.

The variables do not start with BORG_: borg's conftest removes those for each test. Only
`subprocess` is patched, so no borg module is imported before borg's conftest sets it up.
"""

import os
import subprocess
import sys

ENGINE = os.environ.get("GATE_SUITE_ENGINE", "")
STARTS = os.environ.get("GATE_SUITE_STARTS", "")
PYTHON_SERVE = [sys.executable, "-m", "borg.archiver", "serve"]

_popen_init = subprocess.Popen.__init__


def _server_popen_init(self, args, *rest, **kwargs):
    if isinstance(args, list) and args[: len(PYTHON_SERVE)] == PYTHON_SERVE:
        if ENGINE:
            args = [ENGINE, "serve"] + args[len(PYTHON_SERVE):]
        if STARTS:
            with open(STARTS, "a") as starts:
                starts.write(" ".join(args) + "\n")
    _popen_init(self, args, *rest, **kwargs)


if ENGINE or STARTS:
    subprocess.Popen.__init__ = _server_popen_init
