"""bench/driver.py: borg-gate's built-in engine against Python `borg serve` 1.4.5.

Run it through bench/run.sh, which builds the binaries and picks borg 1.4.5's own Python
(this file imports msgpack and borg's Repository from it). Every workload runs both servers
in the same run, alternating A B A B, and reports median, min and max of each figure and the
ratio borg-gate / borg of the medians. Output: Markdown and JSON in --out.

Workloads (bench/README.md explains each):
  session   negotiate, open, __len__, list, close through `borg-gate --policy` (gate mode,
            built-in engine) and through `borg serve`; plus a real `borg list` end to end
  put       replay of the client-to-server stream of a real `borg create` (large and small
            objects) into a fresh copy of the repository as it was before the create
  record    the engine with and without its session record (audit file, metrics textfile):
            session latency and the put replay
  get       replay of the stream of a real `borg extract` of the same archive
  index     open (`__len__`) of repositories with 1M and 5M objects
  check     the `check` RPC that `borg check --repository-only` sends
  gate      exec of `borg-gate --policy` to exec of the engine (/bin/true)
  limits    dd with fsync, pipe, crc32, and the `cat stream > file` copy floor
"""

import argparse
import fcntl
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import msgpack

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

BORG_VERSION_TUPLE = (1, 4, 5, -1)


# --------------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Sizes:
    name: str
    put_bytes: int
    put_file_bytes: int
    small_files: int
    small_file_bytes: int
    index_objects: tuple
    pairs_cheap: int
    pairs_heavy: int
    gate_iterations: int


FULL = Sizes(
    name="full",
    put_bytes=GIB,
    put_file_bytes=64 * MIB,
    small_files=200_000,
    small_file_bytes=KIB,
    index_objects=(1_000_000, 5_000_000),
    pairs_cheap=7,
    pairs_heavy=3,
    gate_iterations=301,
)

QUICK = Sizes(
    name="quick",
    put_bytes=64 * MIB,
    put_file_bytes=16 * MIB,
    small_files=5_000,
    small_file_bytes=KIB,
    index_objects=(50_000, 200_000),
    pairs_cheap=3,
    pairs_heavy=2,
    gate_iterations=51,
)


# --------------------------------------------------------------------------------------------
# Measuring one process


@dataclass
class Run:
    """One measured process: wall seconds from spawn to reaped, CPU from wait4."""

    wall: float
    user: float
    sys: float
    maxrss: int  # bytes
    status: int

    @property
    def cpu(self):
        return self.user + self.sys


class BenchError(Exception):
    pass


class Meter:
    """bench/tools' `measure`: runs one program and reports its wall, CPU and peak RSS.

    Set once by main(); every measured server runs under it (see measure.rs for why the
    driver cannot read a child's peak RSS itself)."""

    program = None
    report = None


def _spawn(argv, env, stdin_fd, stdout_fd, stderr_fd):
    actions = [
        (os.POSIX_SPAWN_DUP2, stdin_fd, 0),
        (os.POSIX_SPAWN_DUP2, stdout_fd, 1),
        (os.POSIX_SPAWN_DUP2, stderr_fd, 2),
    ]
    if os.path.exists(Meter.report):
        os.unlink(Meter.report)
    metered = [Meter.program, Meter.report] + list(argv)
    # Python ignores SIGPIPE; a spawned server must not inherit that.
    return os.posix_spawn(
        metered[0], metered, env, file_actions=actions, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ)
    )


def _reap(pid):
    """Waits for the meter and returns its report. The meter's own clock runs from its fork
    of the program to the reaping, so neither the meter's exec nor the driver counts."""
    _, status, _ = os.wait4(pid, 0)
    try:
        with open(Meter.report) as report:
            measured = json.load(report)
    except (OSError, ValueError) as error:
        raise BenchError(f"the meter left no report ({error}); exit status {status}")
    return Run(
        wall=measured["wall"],
        user=measured["user"],
        sys=measured["sys"],
        maxrss=measured["maxrss_kib"] * 1024,
        status=measured["status"],
    )


def run_plain(argv, env, stdout_path=None, stdin_path=None):
    """Runs argv with stdin/stdout on files (or /dev/null), stderr to /dev/null."""
    with open(stdin_path or os.devnull, "rb") as stdin, open(
        stdout_path or os.devnull, "wb"
    ) as stdout, open(os.devnull, "wb") as stderr:
        pid = _spawn(argv, env, stdin.fileno(), stdout.fileno(), stderr.fileno())
        return _reap(pid)


class ReplyCollector:
    """Reads a server's stdout: decodes replies into (msgid, outcome) and hashes the bytes."""

    def __init__(self):
        self.unpacker = msgpack.Unpacker(
            raw=True, use_list=False, strict_map_key=False, max_buffer_size=64 * MIB
        )
        self.digest = hashlib.sha256()
        self.replies = []
        self.bytes = 0

    def feed(self, data):
        self.bytes += len(data)
        self.digest.update(data)
        self.unpacker.feed(data)
        for reply in self.unpacker:
            self.replies.append(describe_reply(reply))


def describe_reply(reply):
    """A comparable summary of a reply: msgid plus the result, or the exception class."""
    if isinstance(reply, dict):
        msgid = reply.get(b"i")
        if b"exception_class" in reply:
            return (msgid, "exception", reply[b"exception_class"])
        result = reply.get(b"r")
    else:
        _, msgid, error, result = reply
        if error is not None:
            return (msgid, "exception", error)
    if isinstance(result, bytes) and len(result) > 64:
        result = hashlib.sha256(result).hexdigest()
    return (msgid, "result", result)


def replay(argv, env, stream_path, stderr_path, collect=False, pipe_size=None, stdout_path=None):
    """Feeds a captured client stream into a server through a pipe; measures the server.

    The feeder uses sendfile and the drain uses splice, so the driver adds almost no CPU
    of its own; with collect=True the replies are decoded and hashed instead (validation).
    stream_path None gives the process an empty stdin (/dev/null); stdout_path sends its
    stdout to that file instead of a pipe. Both serve the floors in workload_limits.
    """
    if stream_path is None:
        in_r, in_w = os.open(os.devnull, os.O_RDONLY), None
    else:
        in_r, in_w = os.pipe()
    if stdout_path is None:
        out_r, out_w = os.pipe()
    else:
        out_r, out_w = None, os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    if pipe_size and in_w is not None:
        # For experiments: what the server would see after fcntl(0, F_SETPIPE_SZ, n).
        fcntl.fcntl(in_w, fcntl.F_SETPIPE_SZ, pipe_size)
    collector = ReplyCollector() if collect else None
    feed_error = []
    with open(stderr_path, "wb") as stderr:
        pid = _spawn(argv, env, in_r, out_w, stderr.fileno())
    os.close(in_r)
    os.close(out_w)

    def feed():
        try:
            with open(stream_path, "rb") as stream:
                size = os.fstat(stream.fileno()).st_size
                offset = 0
                while offset < size:
                    sent = os.sendfile(in_w, stream.fileno(), offset, size - offset)
                    if sent == 0:
                        break
                    offset += sent
        except BrokenPipeError as error:
            feed_error.append(error)
        finally:
            os.close(in_w)

    def drain():
        try:
            if collector is None:
                with open(os.devnull, "wb") as sink:
                    while os.splice(out_r, sink.fileno(), MIB):
                        pass
            else:
                while True:
                    data = os.read(out_r, MIB)
                    if not data:
                        break
                    collector.feed(data)
        finally:
            os.close(out_r)

    threads = []
    if in_w is not None:
        threads.append(threading.Thread(target=feed))
    if out_r is not None:
        threads.append(threading.Thread(target=drain))
    for thread in threads:
        thread.start()
    run = _reap(pid)
    for thread in threads:
        thread.join()
    if run.status != 0:
        raise BenchError(f"{argv[0]} exited with {run.status} replaying {stream_path}; see {stderr_path}")
    if feed_error:
        raise BenchError(f"{argv[0]} stopped reading {stream_path}: {feed_error[0]}; see {stderr_path}")
    return run, collector


def pack_request(msgid, method, args):
    if method == "negotiate":
        # borg clients always negotiate in the legacy tuple format.
        return msgpack.packb((1, msgid, b"negotiate", [args["client_data"]]), use_bin_type=False)
    encoded = {name.encode(): value for name, value in args.items()}
    return msgpack.packb({b"i": msgid, b"m": method.encode(), b"a": encoded}, use_bin_type=False)


def session(argv, env, requests, stderr_path):
    """A client session: each request waits for its reply (as a real client does for these),
    then stdin is closed (borg's "close") and the server is reaped. Returns (Run, replies)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    with open(stderr_path, "wb") as stderr:
        pid = _spawn(argv, env, in_r, out_w, stderr.fileno())
    os.close(in_r)
    os.close(out_w)
    unpacker = msgpack.Unpacker(raw=True, use_list=False, strict_map_key=False)
    replies = []
    try:
        for msgid, (method, args) in enumerate(requests, start=1):
            os.write(in_w, pack_request(msgid, method, args))
            reply = None
            while reply is None:
                for reply in unpacker:
                    break
                else:
                    data = os.read(out_r, MIB)
                    if not data:
                        raise BenchError(f"{argv[0]} closed stdout during {method}; see {stderr_path}")
                    unpacker.feed(data)
            replies.append(describe_reply(reply))
    finally:
        os.close(in_w)
        while os.read(out_r, MIB):
            pass
        os.close(out_r)
        run = _reap(pid)
    if run.status != 0:
        raise BenchError(f"{argv[0]} exited with {run.status}; see {stderr_path}")
    for _, kind, value in replies:
        if kind == "exception":
            raise BenchError(f"{argv[0]} answered {value!r}; see {stderr_path}")
    return run, replies


def negotiate():
    return ("negotiate", {"client_data": {b"client_version": BORG_VERSION_TUPLE}})


def open_request(path, exclusive):
    return (
        "open",
        {
            "path": os.fsencode(path),
            "create": False,
            "lock_wait": 1,
            "lock": True,
            "exclusive": exclusive,
            "append_only": False,
            "make_parent_dirs": False,
        },
    )


# --------------------------------------------------------------------------------------------
# Statistics and results


def summary(values):
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "samples": values,
    }


@dataclass
class Figure:
    workload: str
    name: str
    unit: str
    gate: list = field(default_factory=list)
    borg: list = field(default_factory=list)
    # One series for figures that are not per server (physical limits).
    single: list = field(default_factory=list)

    def to_json(self):
        out = {"workload": self.workload, "figure": self.name, "unit": self.unit}
        if self.single:
            out["value"] = summary(self.single)
        else:
            out["borg-gate"] = summary(self.gate)
            out["borg"] = summary(self.borg)
            out["ratio"] = ratio(self.gate, self.borg)
        return out


def ratio(gate, borg):
    denominator = statistics.median(borg)
    return statistics.median(gate) / denominator if denominator else None


class Results:
    def __init__(self):
        self.figures = []
        self.targets = []
        self.notes = []
        # Figures the targets refer to, by a short name.
        self.key = {}

    def figure(self, workload, name, unit, key=None):
        found = Figure(workload, name, unit)
        self.figures.append(found)
        if key:
            self.key[key] = found
        return found

    def target(self, text, measured, limit, met):
        self.targets.append({"target": text, "measured": measured, "limit": limit, "met": bool(met)})


# --------------------------------------------------------------------------------------------
# The bench


class Bench:
    def __init__(self, args, sizes):
        self.args = args
        self.sizes = sizes
        self.gate_bin = os.path.abspath(args.borg_gate)
        self.borg_bin = os.path.abspath(args.borg)
        self.checksum_bin = os.path.abspath(args.checksum_speed)
        self.work = os.path.abspath(args.workdir)
        self.repos = os.path.join(self.work, "repos")
        self.fixtures = os.path.join(self.work, "fixtures")
        self.logs = os.path.join(self.work, "logs")
        self.home = os.path.join(self.work, "home")
        for directory in (self.repos, self.fixtures, self.logs, self.home):
            os.makedirs(directory, exist_ok=True)
        self.results = Results()
        self.env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": self.home,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        self.client_env = dict(
            self.env,
            BORG_BASE_DIR=os.path.join(self.home, "client"),
            BORG_PASSPHRASE="",
            BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
            BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
        )
        self.log_counter = 0
        self._write_rsh_scripts()
        self._write_policies()

    # ---------------------------------------------------------------- helpers

    def log(self, message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def stderr_path(self, label):
        self.log_counter += 1
        return os.path.join(self.logs, f"{self.log_counter:04d}-{label}.stderr")

    def engine_argv(self):
        return [self.gate_bin, "serve"]

    def borg_argv(self):
        return [self.borg_bin, "serve"]

    def servers(self):
        """(label, argv) in the order A B."""
        return [("borg-gate", self.engine_argv()), ("borg", self.borg_argv())]

    def _write_rsh_scripts(self):
        """BORG_RSH scripts. The client runs `$RSH host borg serve [options]`."""
        self.rsh_borg = os.path.join(self.work, "rsh-borg.sh")
        self.rsh_capture = os.path.join(self.work, "rsh-capture.sh")
        self.rsh_gate = os.path.join(self.work, "rsh-gate.sh")
        self.gate_policy = os.path.join(self.work, "policy-builtin.toml")
        scripts = {
            # Python borg serve; the client's words minus host and "borg".
            self.rsh_borg: f'#!/bin/sh\nshift 2\nexec {self.borg_bin} "$@"\n',
            # The same, with the client-to-server bytes teed to $BENCH_CAPTURE.
            self.rsh_capture: (
                "#!/bin/sh\nshift 2\n"
                f'tee "$BENCH_CAPTURE" | {self.borg_bin} "$@"\n'
            ),
            # As sshd with command="borg-gate --policy ...": the words become SSH_ORIGINAL_COMMAND.
            self.rsh_gate: (
                "#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND=\"$*\"\nexport SSH_ORIGINAL_COMMAND\n"
                f"exec {self.gate_bin} --policy {self.gate_policy}\n"
            ),
        }
        for path, text in scripts.items():
            with open(path, "w") as script:
                script.write(text)
            os.chmod(path, 0o755)

    def _write_policies(self):
        self.audit_file = os.path.join(self.work, "audit.jsonl")
        self.true_policy = os.path.join(self.work, "policy-true.toml")
        common = (
            '[client]\nprograms = ["borg"]\n'
            f'[repository]\nrestrict_to_paths = ["{self.repos}"]\n'
            f'[audit]\nfile = "{self.audit_file}"\n'
        )
        for path, engine in ((self.gate_policy, "builtin"), (self.true_policy, "/bin/true")):
            with open(path, "w") as policy:
                policy.write(f'version = 1\nname = "bench"\n[engine]\nprogram = "{engine}"\n{common}')
            os.chmod(path, 0o644)
        check = subprocess.run(
            [self.gate_bin, "check-policy", self.gate_policy, self.true_policy],
            capture_output=True,
            text=True,
        )
        if check.returncode != 0:
            raise BenchError(f"borg-gate check-policy failed: {check.stdout}{check.stderr}")

    def borg_client(self, args, rsh=None, capture=None, cwd=None):
        env = dict(self.client_env, BORG_RSH=rsh or self.rsh_borg)
        if capture:
            env["BENCH_CAPTURE"] = capture
        started = time.perf_counter()
        done = subprocess.run([self.borg_bin] + args, env=env, cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"borg {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return time.perf_counter() - started, done

    def url(self, repo):
        return f"ssh://bench{repo}"

    def fixture_done(self, name):
        return os.path.exists(os.path.join(self.fixtures, name + ".done"))

    def mark_done(self, name):
        open(os.path.join(self.fixtures, name + ".done"), "w").close()

    def pairs(self, count, body):
        """Runs body(label, argv) for A B A B ..., count pairs, after one untimed warm-up each."""
        for label, argv in self.servers():
            body(label, argv, warmup=True)
        for _ in range(count):
            for label, argv in self.servers():
                body(label, argv, warmup=False)

    @staticmethod
    def add(figure, label, value):
        (figure.gate if label == "borg-gate" else figure.borg).append(value)

    # ---------------------------------------------------------------- fixtures

    def write_random_tree(self, root, total, file_size, per_dir=1000):
        os.makedirs(root, exist_ok=True)
        count = max(1, total // file_size)
        for index in range(count):
            directory = os.path.join(root, f"d{index // per_dir:04d}")
            if index % per_dir == 0:
                os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, f"f{index:07d}"), "wb") as out:
                remaining = file_size
                while remaining:
                    block = min(remaining, 16 * MIB)
                    out.write(os.urandom(block))
                    remaining -= block

    def create_fixture(self, name, total, file_size):
        """A repository before and after a real `borg create` of random data, with the
        captured client-to-server stream of that create."""
        prefix = os.path.join(self.fixtures, name)
        paths = {
            "before": prefix + "-repo-before",
            "after": prefix + "-repo-after",
            "stream": prefix + "-create.c2s",
        }
        if self.fixture_done(name):
            return paths
        self.log(f"fixture {name}: writing {total // MIB} MiB in files of {file_size} bytes")
        source = prefix + "-source"
        for path in [source] + list(paths.values()):
            remove(path)
        self.write_random_tree(source, total, file_size)
        repo = os.path.join(self.repos, name)
        remove(repo)
        self.borg_client(["init", "--encryption", "none", self.url(repo)])
        copy_tree(repo, paths["before"])
        self.log(f"fixture {name}: borg create (captured)")
        elapsed, _ = self.borg_client(
            ["create", "--compression", "none", self.url(repo) + "::bench", "."],
            rsh=self.rsh_capture,
            capture=paths["stream"],
            cwd=source,
        )
        self.log(f"fixture {name}: create took {elapsed:.1f} s")
        os.rename(repo, paths["after"])
        # The source stays until the scratch directory goes: on a file system mounted with
        # `discard`, unlinking 200,000 files can take minutes.
        self.mark_done(name)
        return paths

    def extract_fixture(self, name, after_repo):
        stream = os.path.join(self.fixtures, name + "-extract.c2s")
        if self.fixture_done(name + "-extract"):
            return stream
        self.log(f"fixture {name}: borg extract (captured)")
        target = os.path.join(self.work, "extract")
        remove(target)
        os.makedirs(target)
        repo = os.path.join(self.repos, name)
        remove(repo)
        os.rename(after_repo, repo)
        try:
            self.borg_client(
                ["extract", self.url(repo) + "::bench"],
                rsh=self.rsh_capture,
                capture=stream,
                cwd=target,
            )
        finally:
            os.rename(repo, after_repo)
            remove(target)
        self.mark_done(name + "-extract")
        return stream

    def index_fixture(self, objects):
        """A repository with `objects` tiny objects, written with borg's own Repository API
        (so real borg accepts it by construction)."""
        name = f"index-{objects}"
        repo = os.path.join(self.fixtures, name)
        if self.fixture_done(name):
            return repo
        remove(repo)
        self.log(f"fixture {name}: writing {objects} objects with borg.repository")
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", INDEX_BUILDER, repo, str(objects)], check=True, env=self.env
        )
        self.log(f"fixture {name}: built in {time.perf_counter() - started:.1f} s")
        self.mark_done(name)
        return repo

    def small_repo_fixture(self):
        """A repository with two small archives, for `borg list` end to end."""
        repo = os.path.join(self.repos, "listrepo")
        if self.fixture_done("listrepo"):
            return repo
        remove(repo)
        source = os.path.join(self.work, "listrepo-source")
        remove(source)
        self.write_random_tree(source, 64 * KIB, 4 * KIB)
        self.borg_client(["init", "--encryption", "none", self.url(repo)])
        for archive in ("one", "two"):
            self.borg_client(["create", self.url(repo) + "::" + archive, "."], cwd=source)
        remove(source)
        self.mark_done("listrepo")
        return repo

    # ---------------------------------------------------------------- workloads

    def workload_session(self):
        repo = self.small_repo_fixture()
        self.log("session latency")
        wall = self.results.figure("session", "minimal session wall (negotiate, open, __len__, list, close)", "ms", key="session_wall")
        cpu = self.results.figure("session", "minimal session CPU", "ms")
        rss = self.results.figure("session", "minimal session peak RSS", "MiB")
        requests = [negotiate(), open_request(repo, exclusive=False), ("__len__", {}), ("list", {"limit": 100000, "marker": None})]
        gate_env = dict(self.env, SSH_ORIGINAL_COMMAND="borg serve --umask=077")
        argvs = {
            "borg-gate": ([self.gate_bin, "--policy", self.gate_policy], gate_env),
            "borg": ([self.borg_bin, "serve", "--restrict-to-path", self.repos, "--umask=077"], self.env),
        }
        lengths = {}

        def one(label, _argv, warmup):
            argv, env = argvs[label]
            run, replies = session(argv, env, requests, self.stderr_path(f"session-{label}"))
            lengths[label] = replies[2][2]
            if not warmup:
                self.add(wall, label, run.wall * 1e3)
                self.add(cpu, label, run.cpu * 1e3)
                self.add(rss, label, run.maxrss / MIB)

        self.pairs(self.sizes.pairs_cheap * 3, one)
        if lengths["borg-gate"] != lengths["borg"]:
            raise BenchError(f"__len__ differs: {lengths}")

        self.log("borg list end to end")
        listing = self.results.figure("session", "`borg list REPO` end to end (client 1.4.5)", "ms")
        outputs = {}
        rsh = {"borg-gate": self.rsh_gate, "borg": self.rsh_borg}

        def one_list(label, _argv, warmup):
            elapsed, done = self.borg_client(["list", "--short", self.url(repo)], rsh=rsh[label])
            outputs[label] = done.stdout
            if not warmup:
                self.add(listing, label, elapsed * 1e3)

        self.pairs(self.sizes.pairs_cheap, one_list)
        if outputs["borg-gate"] != outputs["borg"] or outputs["borg"] != "one\ntwo\n":
            raise BenchError(f"borg list output differs: {outputs}")

    def workload_record(self, put_paths):
        """The cost of the engine's session record (issue 11): `borg-gate serve` with the
        reporting options the gate passes (--session-id, --policy-name, --audit-file,
        --metrics-textfile) against the same engine without them, interleaved. Session
        latency on the small repository, and the put replay of the `put` fixture."""
        repo = self.small_repo_fixture()
        record_dir = os.path.join(self.work, "record")
        os.makedirs(record_dir, exist_ok=True)
        audit = os.path.join(record_dir, "audit.jsonl")
        textfile = os.path.join(record_dir, "borg-gate.prom")
        plain = [self.gate_bin, "serve", f"--restrict-to-path={self.repos}"]
        variants = [
            ("without record", plain),
            (
                "with record",
                plain + ["--session-id=bench", "--policy-name=bench", f"--audit-file={audit}", f"--metrics-textfile={textfile}"],
            ),
        ]

        def interleaved(count, body):
            for label, argv in variants:
                body(label, argv, warmup=True)
            for _ in range(count):
                for label, argv in variants:
                    body(label, argv, warmup=False)

        def single(workload, name, unit):
            return {label: self.results.figure(workload, f"{name}, {label}", unit) for label, _ in variants}

        self.log("session record: session latency")
        wall = single("record", "engine session wall (negotiate, open, __len__, list, close)", "ms")
        cpu = single("record", "engine session CPU", "ms")
        requests = [negotiate(), open_request(repo, exclusive=False), ("__len__", {}), ("list", {"limit": 100000, "marker": None})]

        def one_session(label, argv, warmup):
            run, _ = session(argv, self.env, requests, self.stderr_path("record-session"))
            if not warmup:
                wall[label].single.append(run.wall * 1e3)
                cpu[label].single.append(run.cpu * 1e3)

        interleaved(self.sizes.pairs_cheap * 3, one_session)
        sessions = 1 + self.sizes.pairs_cheap * 3
        with open(audit) as lines:
            written = sum(1 for line in lines if '"event":"session_end"' in line)
        if written != sessions:
            raise BenchError(f"session record: {written} records for {sessions} sessions in {audit}")

        if put_paths is None:
            return
        self.log("session record: put replay")
        target = os.path.join(self.repos, "put")
        stream_bytes = os.path.getsize(put_paths["stream"])
        put_wall = single("record", "put replay: server wall", "s")
        put_cpu = single("record", "put replay: server CPU", "s")
        throughput = single("record", "put replay: stream throughput", "MiB/s")

        def one_put(label, argv, warmup):
            remove(target)
            copy_tree(put_paths["before"], target)
            os.sync()
            run, collector = replay(argv, self.env, put_paths["stream"], self.stderr_path("record-put"), collect=warmup)
            if warmup:
                check_replies(collector.replies, label)
                return
            put_wall[label].single.append(run.wall)
            put_cpu[label].single.append(run.cpu)
            throughput[label].single.append(stream_bytes / MIB / run.wall)

        interleaved(self.sizes.pairs_heavy * 2, one_put)
        remove(target)
        medians = {
            name: {label: statistics.median(figure.single) for label, figure in figures.items()}
            for name, figures in (("session wall", wall), ("session CPU", cpu), ("put wall", put_wall), ("put CPU", put_cpu))
        }
        self.results.notes.append(
            "session record (with / without, ratio of medians): "
            + "; ".join(f"{name} {m['with record'] / m['without record']:.3f}" for name, m in medians.items())
            + f". The record's audit file held one session_end line per session ({sessions} sessions checked)."
        )

    def workload_put(self, name, total, file_size, tag):
        paths = self.create_fixture(name, total, file_size)
        stream_bytes = os.path.getsize(paths["stream"])
        methods = count_requests(paths["stream"])
        puts = methods.get("put", 0)
        data_bytes = tree_size(os.path.join(paths["after"], "data"))
        self.log(f"put {name}: stream {stream_bytes / MIB:.1f} MiB, {puts} puts")
        target = os.path.join(self.repos, name)
        cpu = self.results.figure(name, f"{tag}: server CPU", "s", key=f"{name}_cpu")
        cpu_per_gib = self.results.figure(name, f"{tag}: server CPU per GiB of stream", "s/GiB", key=f"{name}_cpu_gib")
        cpu_per_put = self.results.figure(name, f"{tag}: server CPU per put", "µs", key=f"{name}_cpu_put")
        wall = self.results.figure(name, f"{tag}: server wall", "s", key=f"{name}_wall")
        rss = self.results.figure(name, f"{tag}: server peak RSS", "MiB")
        seen = {}

        def one(label, argv, warmup):
            remove(target)
            copy_tree(paths["before"], target)
            os.sync()
            run, collector = replay(argv, self.env, paths["stream"], self.stderr_path(f"{name}-{label}"), collect=warmup)
            if warmup:
                seen[label] = collector.replies
                seen[label + "-segments"] = segment_digests(os.path.join(target, "data"))
                check_replies(collector.replies, label)
                return
            self.add(cpu, label, run.cpu)
            self.add(cpu_per_gib, label, run.cpu / (stream_bytes / GIB))
            self.add(cpu_per_put, label, run.cpu / max(puts, 1) * 1e6)
            self.add(wall, label, run.wall)
            self.add(rss, label, run.maxrss / MIB)

        self.pairs(self.sizes.pairs_heavy, one)
        remove(target)
        compare_replies(seen["borg-gate"], seen["borg"], name)
        same_segments = seen["borg-gate-segments"] == seen["borg-segments"]
        self.results.notes.append(
            f"{name} ({tag}): stream {stream_bytes / MIB:.1f} MiB, {sum(methods.values())} requests "
            f"({', '.join(f'{m} {n}' for m, n in sorted(methods.items()))}). The replies of both servers "
            f"match request for request; the segment files both write are "
            f"{'byte-identical' if same_segments else 'NOT byte-identical'} "
            f"({len(seen['borg-segments'])} files, {data_bytes / MIB:.0f} MiB)."
        )
        return paths

    def workload_get(self, name, paths):
        stream = self.extract_fixture(name, paths["after"])
        data_bytes = tree_size(os.path.join(paths["after"], "data"))
        methods = count_requests(stream)
        self.log(f"get {name}: {data_bytes / MIB:.1f} MiB of segments, {methods.get('get', 0)} gets")
        cpu = self.results.figure("get", "extract replay: server CPU per GiB of segments", "s/GiB", key="get_cpu_gib")
        wall = self.results.figure("get", "extract replay: server wall", "s", key="get_wall")
        rss = self.results.figure("get", "extract replay: server peak RSS", "MiB")
        digests = {}
        # The captured stream opens the path the repository had during the capture.
        repo = os.path.join(self.repos, name)
        remove(repo)
        os.rename(paths["after"], repo)

        def one(label, argv, warmup):
            warm_page_cache(repo)
            run, collector = replay(argv, self.env, stream, self.stderr_path(f"get-{label}"), collect=warmup)
            if warmup:
                check_replies(collector.replies, label)
                digests[label] = (collector.digest.hexdigest(), collector.bytes, len(collector.replies))
                return
            self.add(cpu, label, run.cpu / (data_bytes / GIB))
            self.add(wall, label, run.wall)
            self.add(rss, label, run.maxrss / MIB)

        try:
            self.pairs(self.sizes.pairs_heavy, one)
        finally:
            os.rename(repo, paths["after"])
        same = digests["borg-gate"] == digests["borg"]
        self.results.notes.append(
            f"get: {methods.get('get', 0)} gets; {digests['borg'][1] / MIB:.0f} MiB of replies; the reply "
            f"streams of both servers are {'byte-identical' if same else 'DIFFERENT: ' + repr(digests)}."
        )

    def workload_check(self, repo):
        data_bytes = tree_size(os.path.join(repo, "data"))
        self.log(f"check: {data_bytes / MIB:.1f} MiB of segments")
        wall = self.results.figure("check", "check RPC: server wall per GiB of segments", "s/GiB", key="check_wall_gib")
        cpu = self.results.figure("check", "check RPC: server CPU per GiB of segments", "s/GiB")
        requests = [
            negotiate(),
            open_request(repo, exclusive=True),
            ("check", {"repair": False, "save_space": False, "max_duration": 0}),
        ]

        def one(label, argv, warmup):
            warm_page_cache(repo)
            run, replies = session(argv, self.env, requests, self.stderr_path(f"check-{label}"))
            if replies[2][2] is not True:
                raise BenchError(f"{label}: check returned {replies[2]!r}")
            if not warmup:
                self.add(wall, label, run.wall / (data_bytes / GIB))
                self.add(cpu, label, run.cpu / (data_bytes / GIB))

        self.pairs(self.sizes.pairs_heavy, one)

    def workload_index(self):
        for objects in self.sizes.index_objects:
            repo = self.index_fixture(objects)
            tag = self.index_tag(objects)
            largest = objects == self.sizes.index_objects[-1]
            self.log(f"index {tag}")
            wall = self.results.figure("index", f"{tag} objects: open + __len__ session wall", "ms", key="index_open_largest" if largest else None)
            per_object = self.results.figure("index", f"{tag} objects: open wall per object", "ns")
            rss = self.results.figure("index", f"{tag} objects: peak RSS", "MiB", key="index_rss_largest" if largest else None)
            rss_per_object = self.results.figure("index", f"{tag} objects: peak RSS per object", "bytes")
            requests = [negotiate(), open_request(repo, exclusive=False), ("__len__", {})]

            def one(label, argv, warmup):
                run, replies = session(argv, self.env, requests, self.stderr_path(f"index-{tag}-{label}"))
                if replies[2][2] != objects:
                    raise BenchError(f"{label}: __len__ is {replies[2][2]!r}, expected {objects}")
                if not warmup:
                    self.add(wall, label, run.wall * 1e3)
                    self.add(per_object, label, run.wall / objects * 1e9)
                    self.add(rss, label, run.maxrss / MIB)
                    self.add(rss_per_object, label, run.maxrss / objects)

            self.pairs(self.sizes.pairs_cheap, one)

    def workload_gate(self):
        """Gate overhead: `borg-gate --policy` whose engine is /bin/true, against /bin/true
        run directly, interleaved; the overhead is the median of the paired differences."""
        self.log("gate overhead")
        gate = [self.gate_bin, "--policy", self.true_policy]
        direct = ["/bin/true", "serve"]
        env = dict(self.env, SSH_ORIGINAL_COMMAND="borg serve --umask=077 --info")
        wall = {"gate": [], "direct": []}
        cpu = {"gate": [], "direct": []}
        warmup = 10
        for iteration in range(self.sizes.gate_iterations + warmup):
            for label, argv in (("gate", gate), ("direct", direct)):
                run = run_plain(argv, env)
                if run.status != 0:
                    raise BenchError(f"{argv} exited with {run.status}")
                if iteration >= warmup:
                    wall[label].append(run.wall * 1e3)
                    cpu[label].append(run.cpu * 1e3)
        figure = self.results.figure
        figure("gate", "exec `borg-gate --policy` → engine (/bin/true) → exit: wall", "ms").single.extend(wall["gate"])
        figure("gate", "exec /bin/true directly → exit: wall", "ms").single.extend(wall["direct"])
        overhead = [g - d for g, d in zip(wall["gate"], wall["direct"])]
        figure("gate", "gate overhead, wall (paired difference)", "ms", key="gate_overhead").single.extend(overhead)
        figure("gate", "exec `borg-gate --policy` → engine (/bin/true) → exit: CPU", "ms").single.extend(cpu["gate"])
        figure("gate", "exec /bin/true directly → exit: CPU", "ms").single.extend(cpu["direct"])
        overhead_cpu = [g - d for g, d in zip(cpu["gate"], cpu["direct"])]
        figure("gate", "gate overhead, CPU (paired difference)", "ms").single.extend(overhead_cpu)
        with open(self.audit_file) as audit:
            accepted = sum(1 for line in audit if '"policy":"bench"' in line and '"decision":"accept"' in line)
        if accepted < self.sizes.gate_iterations:
            raise BenchError(f"the audit log holds only {accepted} accepted sessions")

    def workload_limits(self, stream, reps):
        """Physical limits on the same disk, same size as the put stream.

        Floors, all for the put stream and measured under the meter like the servers:
        `cat stream > file` is the copy floor the targets use (GNU cat copies in the kernel
        with copy_file_range: one copy, no pipe); `cat > file` fed through a pipe is what any
        server reading its stream from a pipe must at least do (pipe read + file write);
        `cat stream` into a pipe is the same for the get direction (file read + pipe write);
        `dd conv=fsync` adds the fsync, and its wall time is the write+fsync limit; fed
        through a pipe it is the floor of a durable put (pipe read + file write + fsync)."""
        size = os.path.getsize(stream)
        gib = size / GIB
        self.log(f"limits: {size / MIB:.0f} MiB")
        out = os.path.join(self.work, "limits.out")
        figure = self.results.figure
        dd = figure("limits", "write+fsync limit: `dd bs=1M conv=fsync` of the put stream, wall", "s", key="dd_wall")
        dd_rate = figure("limits", "write+fsync limit: throughput", "MiB/s")
        dd_cpu = figure("limits", "write+fsync limit: dd CPU per GiB", "s/GiB")
        floor = figure("limits", "copy floor: `cat stream > file` CPU per GiB", "s/GiB", key="copy_floor")
        floor_wall = figure("limits", "copy floor: `cat stream > file` wall", "s")
        pipe_in = figure("limits", "pipe-in floor: pipe → `cat > file` CPU per GiB", "s/GiB", key="pipe_in_floor")
        durable = figure("limits", "durable pipe-in floor: pipe → `dd bs=1M conv=fsync` CPU per GiB", "s/GiB", key="durable_floor")
        pipe_out = figure("limits", "pipe-out floor: `cat stream` → pipe CPU per GiB", "s/GiB", key="pipe_out_floor")
        pipe = figure("limits", "pipe throughput: `cat stream | cat > /dev/null`", "MiB/s")
        for rep in range(reps + 1):
            keep = rep > 0  # the first round warms the caches
            remove(out)
            os.sync()
            run = run_plain(["/bin/dd", f"if={stream}", f"of={out}", "bs=1M", "conv=fsync", "status=none"], self.env)
            if keep:
                dd.single.append(run.wall)
                dd_rate.single.append(size / MIB / run.wall)
                dd_cpu.single.append(run.cpu / gib)
            remove(out)
            os.sync()
            run = run_plain(["/bin/cat", stream], self.env, stdout_path=out)
            if keep:
                floor.single.append(run.cpu / gib)
                floor_wall.single.append(run.wall)
            remove(out)
            os.sync()
            run, _ = replay(["/bin/cat"], self.env, stream, self.stderr_path("pipe-in"), stdout_path=out)
            if keep:
                pipe_in.single.append(run.cpu / gib)
            remove(out)
            os.sync()
            run, _ = replay(["/bin/dd", f"of={out}", "bs=1M", "conv=fsync", "status=none"], self.env, stream, self.stderr_path("durable"))
            if keep:
                durable.single.append(run.cpu / gib)
            remove(out)
            run, _ = replay(["/bin/cat", stream], self.env, None, self.stderr_path("pipe-out"))
            if keep:
                pipe_out.single.append(run.cpu / gib)
            started = time.perf_counter()
            subprocess.run(["sh", "-c", f"cat {stream} | cat > /dev/null"], check=True)
            if keep:
                pipe.single.append(size / MIB / (time.perf_counter() - started))
        speed = json.loads(subprocess.run([self.checksum_bin, "256"], capture_output=True, check=True, text=True).stdout)
        figure("limits", "crc32 (crc32fast, the engine's)", "GiB/s").single.append(speed["crc32fast_gib_per_s"])
        figure("limits", "XXH64 (xxhash-rust, the engine's)", "GiB/s").single.append(speed["xxh64_gib_per_s"])
        borg_crc = subprocess.run([sys.executable, "-c", BORG_CRC_PROBE], capture_output=True, check=True, text=True)
        figure("limits", "crc32 (borg.algorithms.checksums, borg's)", "GiB/s").single.append(float(borg_crc.stdout))

    def evaluate_targets(self):
        r = self.results
        key = r.key

        def med(figure, side="gate"):
            return statistics.median(getattr(figure, side))

        def ratio_target(text, name, limit):
            figure = key.get(name)
            if figure is None:
                return
            value = ratio(figure.gate, figure.borg)
            r.target(text, f"ratio {value:.3f} (1/{1 / value:.1f})", f"≤ {limit:g}", value <= limit)

        ratio_target("session latency ≤ 1/50 of borg's", "session_wall", 1 / 50)
        ratio_target("put server CPU/GiB ≤ 1/2 of borg's", "put_cpu_gib", 0.5)
        floor = key.get("copy_floor")
        if floor and "put_cpu_gib" in key:
            value = med(key["put_cpu_gib"]) / med(floor, "single")
            r.target("put server CPU/GiB within 1.3× of the copy floor", f"{value:.2f}× ({med(key['put_cpu_gib']):.3f} vs {med(floor, 'single'):.3f} s/GiB)", "≤ 1.3×", value <= 1.3)
        pipe_in = key.get("pipe_in_floor")
        if pipe_in and "put_cpu_gib" in key:
            value = med(key["put_cpu_gib"]) / med(pipe_in, "single")
            r.target("(extra) put server CPU/GiB within 1.3× of the pipe-in floor", f"{value:.2f}× ({med(key['put_cpu_gib']):.3f} vs {med(pipe_in, 'single'):.3f} s/GiB)", "≤ 1.3×", value <= 1.3)
        durable = key.get("durable_floor")
        if durable and "put_cpu_gib" in key:
            value = med(key["put_cpu_gib"]) / med(durable, "single")
            r.target("(extra) put server CPU/GiB within 1.3× of the durable pipe-in floor", f"{value:.2f}× ({med(key['put_cpu_gib']):.3f} vs {med(durable, 'single'):.3f} s/GiB)", "≤ 1.3×", value <= 1.3)
        ratio_target("small-object puts: server CPU ≤ 1/10 of borg's", "small_cpu", 0.1)
        if "dd_wall" in key and "put_wall" in key:
            value = med(key["put_wall"]) / med(key["dd_wall"], "single")
            r.target("put wall within 1.25× of write+fsync (dd)", f"{value:.2f}× ({med(key['put_wall']):.2f} vs {med(key['dd_wall'], 'single'):.2f} s)", "≤ 1.25×", value <= 1.25)
        ratio_target("get server CPU/GiB ≤ 1/2 of borg's", "get_cpu_gib", 0.5)
        if floor and "get_cpu_gib" in key:
            value = med(key["get_cpu_gib"]) / med(floor, "single")
            r.target("get server CPU/GiB within 1.3× of the copy floor", f"{value:.2f}× ({med(key['get_cpu_gib']):.3f} vs {med(floor, 'single'):.3f} s/GiB)", "≤ 1.3×", value <= 1.3)
        pipe_out = key.get("pipe_out_floor")
        if pipe_out and "get_cpu_gib" in key:
            value = med(key["get_cpu_gib"]) / med(pipe_out, "single")
            r.target("(extra) get server CPU/GiB within 1.3× of the pipe-out floor", f"{value:.2f}× ({med(key['get_cpu_gib']):.3f} vs {med(pipe_out, 'single'):.3f} s/GiB)", "≤ 1.3×", value <= 1.3)
        ratio_target(f"open of the {self.index_tag(self.sizes.index_objects[-1])}-object index ≤ 1/2 of borg's time", "index_open_largest", 0.5)
        if "index_rss_largest" in key:
            figure = key["index_rss_largest"]
            value = ratio(figure.gate, figure.borg)
            r.target(f"peak RSS with {self.index_tag(self.sizes.index_objects[-1])} objects ≤ borg's", f"ratio {value:.3f} ({med(figure):.0f} vs {med(figure, 'borg'):.0f} MiB)", "≤ 1", value <= 1)
        ratio_target("check time/GiB ≤ 1/2 of borg's", "check_wall_gib", 0.5)
        if "gate_overhead" in key:
            overhead = med(key["gate_overhead"], "single")
            r.target("gate overhead ≤ 2 ms median", f"{overhead:.2f} ms", "≤ 2 ms", overhead <= 2)

    @staticmethod
    def index_tag(objects):
        return f"{objects / 1e6:g}M" if objects >= 1_000_000 else f"{objects // 1000}k"

    # ---------------------------------------------------------------- run

    def run(self):
        selected = set(self.args.only.split(",")) if self.args.only else None

        def wanted(*names):
            return selected is None or any(name in selected for name in names)

        started = time.time()
        if wanted("session"):
            self.workload_session()
        if wanted("gate"):
            self.workload_gate()
        put_paths = None
        if wanted("put", "get", "check", "limits"):
            size = self.sizes.put_bytes
            tag = f"{size // GIB} GiB" if size >= GIB else f"{size // MIB} MiB"
            put_paths = self.workload_put("put", size, self.sizes.put_file_bytes, f"{tag} create replay")
        if wanted("record"):
            if put_paths is None:
                size = self.sizes.put_bytes
                put_paths = self.create_fixture("put", size, self.sizes.put_file_bytes)
            self.workload_record(put_paths)
        if wanted("small"):
            count, size = self.sizes.small_files, self.sizes.small_file_bytes
            self.workload_put("small", count * size, size, f"{count // 1000}k × {size // KIB} KiB create replay")
        if put_paths and wanted("get"):
            self.workload_get("put", put_paths)
        if put_paths and wanted("check"):
            self.workload_check(put_paths["after"])
        if wanted("index"):
            self.workload_index()
        if put_paths and wanted("limits"):
            self.workload_limits(put_paths["stream"], self.sizes.pairs_heavy)
        self.evaluate_targets()
        self.elapsed = time.time() - started


# --------------------------------------------------------------------------------------------
# Helper programs run with borg's Python


INDEX_BUILDER = r"""
import os, sys
from borg.logger import setup_logging
setup_logging(level='warning')
from borg.repository import Repository
path, count = sys.argv[1], int(sys.argv[2])
data = bytes(8)
with Repository(path, create=True, exclusive=True) as repo:
    done = 0
    while done < count:
        batch = min(100_000, count - done)
        ids = os.urandom(32 * batch)
        for offset in range(0, 32 * batch, 32):
            repo.put(ids[offset:offset + 32], data)
        done += batch
    repo.commit(compact=False)
with Repository(path, exclusive=False) as repo:
    assert len(repo) == count, (len(repo), count)
"""

BORG_CRC_PROBE = r"""
import os, time
from borg.algorithms.checksums import crc32
buffer = os.urandom(256 << 20)
view = memoryview(buffer)
best = float('inf')
for _ in range(5):
    started = time.perf_counter()
    for offset in range(0, len(buffer), 2 << 20):
        crc32(view[offset:offset + (2 << 20)])
    best = min(best, time.perf_counter() - started)
print(len(buffer) / best / (1 << 30))
"""


# --------------------------------------------------------------------------------------------
# File helpers


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def copy_tree(source, destination):
    subprocess.run(["cp", "-a", source, destination], check=True)


def warm_page_cache(root):
    """Reads every file under root, so that the next server finds it in the page cache.

    borg's LoggedIO drops each segment from the page cache when it closes the segment
    (`posix_fadvise(DONTNEED)`, at the latest when the session ends); the engine does not.
    Without this, every server run after a borg run would read from the disk and every run
    after an engine run from memory, which favours borg in an A B A B series.
    """
    for directory, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as file:
                while file.read(1 << 20):
                    pass


def tree_size(root):
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            total += os.path.getsize(os.path.join(directory, name))
    return total


def segment_digests(data_dir):
    digests = {}
    for directory, _, files in os.walk(data_dir):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as segment:
                digests[os.path.relpath(path, data_dir)] = hashlib.file_digest(segment, "sha256").hexdigest()
    return digests


def count_requests(stream_path):
    """Requests per method in a captured client stream."""
    counts = {}
    unpacker = msgpack.Unpacker(raw=True, use_list=False, strict_map_key=False, max_buffer_size=64 * MIB)
    with open(stream_path, "rb") as stream:
        while True:
            data = stream.read(8 * MIB)
            if not data:
                break
            unpacker.feed(data)
            for request in unpacker:
                method = request[b"m"] if isinstance(request, dict) else request[2]
                name = method.decode()
                counts[name] = counts.get(name, 0) + 1
    return counts


def check_replies(replies, label):
    """The only exception a create may see is ObjectNotFound for the manifest of a new repo."""
    for msgid, kind, value in replies:
        if kind == "exception" and value != b"ObjectNotFound":
            raise BenchError(f"{label}: reply {msgid} is the exception {value!r}")


def compare_replies(gate, borg, name):
    if len(gate) != len(borg):
        raise BenchError(f"{name}: borg-gate sent {len(gate)} replies, borg {len(borg)}")
    for ours, theirs in zip(gate, borg):
        if ours != theirs:
            raise BenchError(f"{name}: replies differ: borg-gate {ours!r}, borg {theirs!r}")


# --------------------------------------------------------------------------------------------
# Machine and report


def machine_description(work):
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        mem_kib = int(info.readline().split()[1])
    fs = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", work], capture_output=True, text=True).stdout.strip()
    df = shutil.disk_usage(work)
    rotational = "unknown"
    source = fs.split()[0] if fs else ""
    device = os.path.basename(source)
    rot_path = f"/sys/block/{device}/queue/rotational"
    if os.path.exists(rot_path):
        rotational = "rotational" if open(rot_path).read().strip() == "1" else "non-rotational"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / MIB, 1),
        "filesystem": fs,
        "disk": f"{source} ({rotational}), {df.total / GIB:.0f} GiB",
        "kernel": platform.release(),
        "load_average_at_start": os.getloadavg(),
    }


def versions(bench):
    gate = subprocess.run([bench.gate_bin, "--version"], capture_output=True, text=True).stdout.strip()
    borg = subprocess.run([bench.borg_bin, "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"borg-gate": f"{gate} ({commit})", "borg": borg, "python": platform.python_version()}


def fmt(value, unit):
    if value is None:
        return "–"
    if abs(value) >= 100 or unit in ("bytes",):
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def cell(stats, unit):
    return f"{fmt(stats['median'], unit)} ({fmt(stats['min'], unit)}–{fmt(stats['max'], unit)})"


def markdown(report):
    lines = []
    m = report["machine"]
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; {m['disk']}; `{m['filesystem']}`; Linux {m['kernel']}.")
    load = lambda triple: "/".join(f"{x:.1f}" for x in triple)  # noqa: E731
    lines.append(f"Load average (1/5/15 min) at start {load(m['load_average_at_start'])}, at end {load(m['load_average_at_end'])}.")
    v = report["versions"]
    lines.append(f"Versions: {v['borg-gate']}; {v['borg']} (Python {v['python']}). Size: {report['sizes']['name']}; run took {report['elapsed_s'] / 60:.1f} min.")
    lines.append("")
    lines.append("Cells are median (min–max). Ratio = borg-gate median / borg median.")
    lines.append("")
    lines.append("| workload | figure | unit | borg-gate | borg serve 1.4.5 | ratio |")
    lines.append("|---|---|---|---|---|---|")
    for figure in report["figures"]:
        if "value" in figure:
            continue
        ratio_text = f"{figure['ratio']:.3f}" if figure["ratio"] is not None else "–"
        lines.append(
            f"| {figure['workload']} | {figure['figure']} | {figure['unit']} | {cell(figure['borg-gate'], figure['unit'])} "
            f"| {cell(figure['borg'], figure['unit'])} | {ratio_text} |"
        )
    lines.append("")
    lines.append("| single-series figure | unit | median (min–max) | n |")
    lines.append("|---|---|---|---|")
    for figure in report["figures"]:
        if "value" in figure:
            lines.append(f"| {figure['workload']}: {figure['figure']} | {figure['unit']} | {cell(figure['value'], figure['unit'])} | {figure['value']['n']} |")
    if report["targets"]:
        lines.append("")
        lines.append("| target | measured | limit | met |")
        lines.append("|---|---|---|---|")
        for target in report["targets"]:
            lines.append(f"| {target['target']} | {target['measured']} | {target['limit']} | {'yes' if target['met'] else '**no**'} |")
    if report["notes"]:
        lines.append("")
        for note in report["notes"]:
            lines.append(f"* {note}")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (minutes, not tens of minutes)")
    parser.add_argument("--borg-gate", required=True, help="the borg-gate release binary")
    parser.add_argument("--borg", required=True, help="borg 1.4.5 (its `borg serve` is the reference)")
    parser.add_argument("--checksum-speed", required=True, help="bench/tools' checksum-speed binary")
    parser.add_argument("--measure", required=True, help="bench/tools' measure binary (process meter)")
    parser.add_argument("--workdir", required=True, help="scratch directory (repositories, captured streams)")
    parser.add_argument("--out", required=True, help="directory for results.md and results.json")
    parser.add_argument("--only", help="comma-separated workloads: session,gate,put,record,small,get,check,index,limits")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    bench = Bench(args, sizes)
    Meter.program = os.path.abspath(args.measure)
    Meter.report = os.path.join(bench.work, "meter.json")
    machine = machine_description(bench.work)
    bench.run()
    machine["load_average_at_end"] = os.getloadavg()
    report = {
        "machine": machine,
        "versions": versions(bench),
        "sizes": {k: v for k, v in sizes.__dict__.items()},
        "elapsed_s": bench.elapsed,
        "figures": [figure.to_json() for figure in bench.results.figures],
        "targets": bench.results.targets,
        "notes": bench.results.notes,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as out:
        json.dump(report, out, indent=1, default=str)
    text = markdown(report)
    with open(os.path.join(args.out, "results.md"), "w") as out:
        out.write(text)
    print(text)


if __name__ == "__main__":
    try:
        main()
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        sys.exit(1)
