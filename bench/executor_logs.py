"""Log throughput: a task writing 50 MB/s of numbered lines, rotated every 10 MB, gzipped, archived.

Checks that every line is in the archived segments exactly once, in order, and reports the
executor's CPU per MB (the log pump and the archive workers, measured per thread) and the rate the
task reached. Baseline, in the same run: the same writer with its output sent straight to a file.
Lines look like application logs; --random-lines makes them nearly incompressible (gzip's worst case).
Usage: python -m bench.executor_logs [--rate-mb 50] [--seconds 6] [--rotate-mb 10] [--random-lines]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

from sing_backend.executor.logstore import parse_segment
from sing_backend.executor.settings import ExecutorSettings

from .executor_cluster import cluster, task

LINE = 100  # bytes per line, newline included

# Paced writer: a batch every 10 ms; prints (to stderr) how long it took and how much it wrote.
WRITER = """
import base64, os, sys, time
rate, seconds, width = {rate}, {seconds}, {width}
out = sys.stdout.buffer
per_batch = int(rate / 100)
lines_per_batch = max(1, per_batch // width)
if {random_lines}:
    # Random bodies: about the worst case for gzip (2000 of them, 200 KB, past its 32 KB window).
    pool = [base64.b64encode(os.urandom(width))[:width - 12] for _ in range(2000)]
else:
    # Application-log-like bodies: fixed words, varying numbers.
    pool = [(b"INFO  c.e.ItemService request id=%08d user=%06d GET /api/items/%d took %d ms "
             % (k * 7919, k * 31, k, k % 97) + b"." * width)[:width - 12] for k in range(2000)]
n = 0
start = time.perf_counter()
deadline = start
while time.perf_counter() - start < seconds:
    batch = b"".join(b"%010d %s\\n" % (i, pool[i % 2000]) for i in range(n, n + lines_per_batch))
    out.write(batch)
    n += lines_per_batch
    deadline += 0.01
    pause = deadline - time.perf_counter()
    if pause > 0:
        out.flush()
        time.sleep(pause)
out.flush()
sys.stderr.write("%d %.3f\\n" % (n, time.perf_counter() - start))
"""


def _thread_cpu(prefixes: tuple[str, ...]) -> float:
    """CPU seconds used so far by this process's threads whose names start with ``prefixes``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for thread in threading.enumerate():
        if not thread.name.startswith(prefixes) or thread.native_id is None:
            continue
        try:
            raw = Path(f"/proc/self/task/{thread.native_id}/stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _check(segments: list[Path], expected_lines: int) -> tuple[int, int]:
    """(lines found in order, problems): every number once, in order, nothing else."""
    following, problems = 0, 0
    for path in segments:
        for line in gzip.decompress(path.read_bytes()).splitlines():
            if int(line[:10]) != following:
                problems += 1
                following = int(line[:10])
            following += 1
    return following, problems + abs(following - expected_lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate-mb", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rotate-mb", type=float, default=10)
    parser.add_argument("--random-lines", action="store_true", help="incompressible lines (gzip's worst case)")
    args = parser.parse_args()
    script = WRITER.format(rate=int(args.rate_mb * 1024 * 1024), seconds=args.seconds, width=LINE,
                           random_lines=args.random_lines)
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"
    settings = ExecutorSettings(rotate_size_mb=args.rotate_mb, rotate_keep=100_000)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = subprocess.run([sys.executable, "-c", script], stdout=open(Path(tmp) / "direct.log", "wb"),
                                  stderr=subprocess.PIPE, check=True)
        base_lines, base_seconds = baseline.stderr.split()
        with cluster(Path(tmp), settings) as (driver, sched):
            offer = sched.take_offer()
            info = task("writer", command, mem=512)
            info["agent_id"] = offer["agent_id"]
            pump_before, archive_before = _thread_cpu(("sing-log-pump",)), _thread_cpu(("sing-log-archive",))
            wall_before = time.perf_counter()
            driver.launchTasks(offer["id"], [info])
            state, _ = sched.wait("writer", ("TASK_FINISHED", "TASK_FAILED"), timeout=args.seconds * 10 + 60)
            task_dir = Path(tmp) / "cluster/agents/agent-1/sandboxes/writer/writer"
            finished = task_dir / "finished.json"
            deadline = time.monotonic() + 120
            while not (finished.exists() and orjson.loads(finished.read_bytes()).get("archived")):
                if time.monotonic() > deadline:
                    raise TimeoutError("the logs were not archived within 120 s")
                time.sleep(0.05)
            pump = _thread_cpu(("sing-log-pump",)) - pump_before
            archive = _thread_cpu(("sing-log-archive",)) - archive_before
            cpu = pump + archive
            wall = time.perf_counter() - wall_before
            lines, seconds = (task_dir / "stderr.log").read_text().split()
            named = ((parse_segment(p.name), p) for p in (task_dir / "logs").glob("stdout-*.gz"))
            segments = [p for seg, p in sorted((s.seq, p) for s, p in named if s is not None)]
            in_order, problems = _check(segments, int(lines))
            stored = list((Path(tmp) / "logs/bench/v1/writer").glob("stdout-*.gz"))
    megabytes = int(lines) * LINE / (1024 * 1024)
    print(f"Log throughput (target {args.rate_mb:g} MB/s for {args.seconds:g} s, rotation every {args.rotate_mb:g} MB)")
    print(f"  task                {state}; wrote {megabytes:.0f} MB at {megabytes / float(seconds):.1f} MB/s")
    print(f"  baseline (to file)  {int(base_lines) * LINE / (1024 * 1024) / float(base_seconds):.1f} MB/s")
    print(f"  segments            {len(segments)} rotated and archived ({len(stored)} in the store)")
    print(f"  lines               {in_order} in order, {problems} lost/duplicated/out of order")
    print(f"  executor CPU        {cpu:.2f} s for {megabytes:.0f} MB = {cpu * 1000 / megabytes:.1f} ms per MB "
          f"({cpu / wall * 100:.0f}% of one core over {wall:.1f} s)")
    print(f"    pipe -> file      {pump * 1000 / megabytes:.1f} ms per MB (the log pump thread)")
    print(f"    gzip + archive    {archive * 1000 / megabytes:.1f} ms per MB (gzip level {settings.compress_level})")


if __name__ == "__main__":
    main()
