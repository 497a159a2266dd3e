"""borg-gate's borg 2 engine (`borg-gate serve --rest`) against Python's `borg serve --rest`.

Run by bench/rest.sh. Each server process runs under bench/tools' `measure` (wall, CPU, peak
RSS of exactly that process), fed by this driver over its stdin/stdout with requests framed
as borgstore's REST client frames them. Servers alternate (engine, Python, engine, ...) after
one untimed warm-up each; figures are medians with the range over the rounds.

Workloads:
  session   start, HEAD /config, GET /config/config, GET //, GET /locks/, end of input
  store     1 GiB as 8 MiB objects with X-Content-hash-sha256 (server CPU per GiB)
  load      the same objects read back (server CPU per GiB)
  small     2000 stores of 4 KiB (fsync per object dominates: wall per store)
  list      GET of one directory holding 100k objects
The engine also runs store and small with --no-fsync, which measures what its fsync costs.
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ACCEPT = "application/vnd.x.borgstore.rest.v1"


def request(method, target, headers=(), body=b""):
    lines = [f"{method} {target} HTTP/1.1", f"Accept: {ACCEPT}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("Connection: keep-alive")
    if method in ("POST", "DELETE") or body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def store_request(name, data):
    digest = hashlib.sha256(data).hexdigest()
    return request("POST", f"/{name}", [("X-Content-hash-sha256", digest)], data)


class Server:
    """One server process under `measure`."""

    def __init__(self, meter, argv, report):
        self.report = report
        self.proc = subprocess.Popen(
            [meter, report] + argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        self.out = self.proc.stdout

    def send(self, data):
        self.proc.stdin.write(data)

    def response(self, head=False):
        line = self.out.readline()
        if not line:
            raise RuntimeError("server closed its output")
        status = int(line.split(b" ", 2)[1])
        length = 0
        while True:
            header = self.out.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = b"" if head else self.read_exact(length)
        return status, body

    def read_exact(self, length):
        chunks = []
        while length:
            chunk = self.out.read(min(length, 1 << 20))
            if not chunk:
                raise RuntimeError("short body")
            chunks.append(chunk)
            length -= len(chunk)
        return b"".join(chunks)

    def call(self, data, head=False, expect=200):
        self.send(data)
        status, body = self.response(head)
        if status != expect:
            raise RuntimeError(f"status {status}, expected {expect}: {body[:200]!r}")
        return body

    def finish(self):
        self.proc.stdin.close()
        self.proc.wait()
        with open(self.report) as f:
            return json.load(f)


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="borg-gate-rest-bench-", dir=args.workdir)
        self.results = {}
        self.counter = 0

    def servers(self):
        return {
            "borg-gate": [self.args.engine, "serve", "--rest"],
            "borg serve": [self.args.borg2, "serve", "--rest"],
            "borg-gate --no-fsync": [self.args.engine, "serve", "--rest", "--no-fsync"],
        }

    def start(self, which, store):
        self.counter += 1
        report = os.path.join(self.work, f"measure-{self.counter}.json")
        argv = self.servers()[which] + ["--backend", f"FILE:{store}"]
        return Server(self.args.meter, argv, report)

    def fresh_store(self, which):
        store = os.path.join(self.work, f"store-{self.counter + 1}")
        server = self.start(which, store)
        server.call(request("POST", "/?cmd=create"))
        for ns in ["archives", "config", "index", "keys", "locks", "cache", "packs"]:
            server.call(request("POST", f"/{ns}?cmd=mkdir"))
        server.call(store_request("config/config", b"[repository]\nversion = 4\n"))
        server.finish()
        return store

    def record(self, workload, which, value):
        self.results.setdefault(workload, {}).setdefault(which, []).append(value)

    def alternate(self, names, run):
        rounds = self.args.rounds
        for which in names:
            run(which, warmup=True)
        for _ in range(rounds):
            for which in names:
                run(which, warmup=False)

    # --- workloads -------------------------------------------------------------------

    def session(self):
        stores = {which: self.fresh_store(which) for which in ["borg-gate", "borg serve"]}

        def run(which, warmup):
            started = time.perf_counter()
            server = self.start(which, stores[which])
            server.call(request("HEAD", "/config"), head=True)
            server.call(request("GET", "/config/config"))
            server.call(request("GET", "//"))
            server.call(request("GET", "/locks/"))
            measured = server.finish()
            if not warmup:
                self.record("session wall (ms)", which, (time.perf_counter() - started) * 1000)
                self.record("session peak RSS (MiB)", which, measured["maxrss_kib"] / 1024)

        self.alternate(["borg-gate", "borg serve"], run)

    def payload(self):
        if not hasattr(self, "_objects"):
            size = self.args.object_mib << 20
            count = max(1, (self.args.store_mib << 20) // size)
            seed = os.urandom(size)
            self._objects = []
            for index in range(count):
                # distinct contents without generating a GiB of randomness
                data = index.to_bytes(8, "little") + seed[8:]
                name = f"packs/{index % 256:02x}/{hashlib.sha256(data).hexdigest()}"
                self._objects.append((name, store_request(name, data), len(data)))
        return self._objects

    def store_and_load(self):
        objects = self.payload()
        gib = sum(length for _, _, length in objects) / (1 << 30)
        names = ["borg-gate", "borg serve", "borg-gate --no-fsync"]

        def run(which, warmup):
            store = self.fresh_store(which)
            started = time.perf_counter()
            server = self.start(which, store)
            for _, wire, _ in objects:
                server.call(wire)
            measured = server.finish()
            wall = time.perf_counter() - started
            if not warmup:
                self.record("store CPU (s/GiB)", which, (measured["user"] + measured["sys"]) / gib)
                self.record("store wall (s/GiB)", which, wall / gib)
                self.record("store peak RSS (MiB)", which, measured["maxrss_kib"] / 1024)
            if which == "borg-gate --no-fsync":
                shutil.rmtree(store)
                return
            subprocess.run(["sync"], check=True)
            started = time.perf_counter()
            server = self.start(which, store)
            for name, _, _ in objects:
                server.call(request("GET", f"/{name}"))
            measured = server.finish()
            wall = time.perf_counter() - started
            if not warmup:
                self.record("load CPU (s/GiB)", which, (measured["user"] + measured["sys"]) / gib)
                self.record("load wall (s/GiB)", which, wall / gib)
                self.record("load peak RSS (MiB)", which, measured["maxrss_kib"] / 1024)
            shutil.rmtree(store)

        self.alternate(names, run)

    def small(self):
        count = self.args.small
        wires = []
        for index in range(count):
            data = index.to_bytes(8, "little") * 512
            wires.append(store_request(f"packs/{index % 256:02x}/{index:064x}", data))
        names = ["borg-gate", "borg serve", "borg-gate --no-fsync"]

        def run(which, warmup):
            store = self.fresh_store(which)
            server = self.start(which, store)
            started = time.perf_counter()
            for wire in wires:
                server.call(wire)
            wall = time.perf_counter() - started
            measured = server.finish()
            if not warmup:
                self.record("4 KiB store, wall per object (ms)", which, wall / count * 1000)
                self.record(
                    "4 KiB store, server CPU per object (us)",
                    which,
                    (measured["user"] + measured["sys"]) / count * 1e6,
                )
            shutil.rmtree(store)

        self.alternate(names, run)

    def listing(self):
        count = self.args.list_objects
        stores = {}
        for which in ["borg-gate", "borg serve"]:
            store = self.fresh_store(which)
            directory = os.path.join(store, "packs", "00")
            os.makedirs(directory, exist_ok=True)
            for index in range(count):
                fd = os.open(os.path.join(directory, f"{index:064x}"), os.O_CREAT | os.O_WRONLY, 0o600)
                os.write(fd, b"x" * (index % 100))
                os.close(fd)
            stores[which] = store

        def run(which, warmup):
            server = self.start(which, stores[which])
            started = time.perf_counter()
            body = server.call(request("GET", "/packs/00/"))
            wall = time.perf_counter() - started
            measured = server.finish()
            if len(json.loads(body)) != count:
                raise RuntimeError("listing is incomplete")
            if not warmup:
                self.record(f"list of {count // 1000}k objects, wall (s)", which, wall)
                self.record(
                    f"list of {count // 1000}k objects, server CPU (s)",
                    which,
                    measured["user"] + measured["sys"],
                )
                self.record(
                    f"list of {count // 1000}k objects, peak RSS (MiB)",
                    which,
                    measured["maxrss_kib"] / 1024,
                )

        self.alternate(["borg-gate", "borg serve"], run)

    # --- report ----------------------------------------------------------------------

    def table(self):
        lines = [
            "| figure | borg-gate | borg serve --rest (b23) | ratio | borg-gate --no-fsync |",
            "|---|---|---|---|---|",
        ]

        def cell(values):
            if not values:
                return "", None
            median = statistics.median(values)
            return f"{median:.3g} ({min(values):.3g}–{max(values):.3g})", median

        for workload, by_server in self.results.items():
            ours, ours_median = cell(by_server.get("borg-gate", []))
            theirs, theirs_median = cell(by_server.get("borg serve", []))
            nofsync, _ = cell(by_server.get("borg-gate --no-fsync", []))
            ratio = ""
            if ours_median and theirs_median:
                ratio = f"{ours_median / theirs_median:.2f}"
            lines.append(f"| {workload} | {ours} | {theirs} | {ratio} | {nofsync} |")
        return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", required=True)
    parser.add_argument("--borg2", required=True)
    parser.add_argument("--meter", required=True)
    parser.add_argument("--workdir", default="/tmp")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store-mib", type=int, default=1024)
    parser.add_argument("--object-mib", type=int, default=8)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--list-objects", type=int, default=100_000)
    parser.add_argument("--only", default="session,store,small,list")
    args = parser.parse_args()
    bench = Bench(args)
    try:
        only = set(args.only.split(","))
        if "session" in only:
            bench.session()
        if "store" in only:
            bench.store_and_load()
        if "small" in only:
            bench.small()
        if "list" in only:
            bench.listing()
    finally:
        shutil.rmtree(bench.work, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    table = bench.table()
    with open(os.path.join(args.out, "rest-results.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "rest-results.json"), "w") as f:
        json.dump(bench.results, f, indent=2)
    print(table)


if __name__ == "__main__":
    sys.exit(main())
