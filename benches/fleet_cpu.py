#!/usr/bin/env python3
"""Where a fleet's CPU goes: CPU time and context switches per round trip, by role.

Runs `signoff bench roundtrip` on PostgreSQL with one instance and with three, in
interleaved pairs, and samples every thread on the machine from /proc over the
middle of each run. Threads are put in roles: the load generator, the servers'
request threads, their writer threads, and PostgreSQL's backends by the
`application_name` signoff gives them (`signoff writer`, `signoff listener`,
and `signoff` for the pools). Prints each role's averages over the pairs.

Usage: SIGNOFF_BENCH_PG_URL=postgres://user@host:port/db?sslmode=disable \\
       benches/fleet_cpu.py [PAIRS]   (PAIRS defaults to 3)
Needs Linux (/proc), psql, and PostgreSQL on this machine, reached with a URL
that names no application_name (the roles are read from the sessions' names).
Every thread on the machine is sampled, so keep it otherwise idle. The round
trips counted are the tasks the benchmark created within the sampled window.
"""

import collections
import os
import subprocess
import sys
import time

SIGNOFF = "./target/release/signoff"
RUN_SECONDS = 14
WARMUP_SECONDS = 2
# Start-up and warm-up are over well before this; the window ends before the run does.
SAMPLE_AFTER = 7
SAMPLE_SECONDS = 5
# The schema `signoff bench roundtrip --db` recreates for each run.
BENCH_SCHEMA = "signoff_bench"
ROLES = ("load generator", "servers' request threads", "servers' writer threads",
         "PostgreSQL writers", "PostgreSQL pools", "PostgreSQL listeners", "the rest")
BACKEND_ROLES = {"signoff writer": "PostgreSQL writers",
                 "signoff listener": "PostgreSQL listeners",
                 "signoff": "PostgreSQL pools"}


def psql(url, sql):
    """The rows `sql` returns, as lines of `|`-separated text."""
    return subprocess.run(["psql", "-X", "-w", "-At", url, "-c", sql],
                          capture_output=True, text=True, check=True).stdout.splitlines()


def backend_roles(url):
    """PostgreSQL backend pid -> role, by the session's application_name."""
    roles = {}
    for line in psql(url, "SELECT pid, application_name FROM pg_stat_activity"):
        pid, _, name = line.partition("|")
        if name in BACKEND_ROLES:
            roles[int(pid)] = BACKEND_ROLES[name]
    if not roles:
        sys.exit("no PostgreSQL session is named like signoff's: is the database on another "
                 "machine, or does the URL give an application_name?")
    return roles


def tasks_created(url):
    return int(psql(url, f"SELECT count(*) FROM {BENCH_SCHEMA}.intents")[0])


def threads():
    """Every thread: (process id, parent process id, command name) and
    (context switches, CPU ticks) so far."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            base = f"/proc/{pid}/task/{tid}"
            try:
                status = dict(line.split(":\t", 1) for line in open(f"{base}/status")
                              if ":\t" in line)
                fields = open(f"{base}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            switches = int(status["voluntary_ctxt_switches"]) + int(
                status["nonvoluntary_ctxt_switches"])
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
            identity = (int(pid), int(status["PPid"]), status["Name"].strip())
            found[(int(pid), int(tid))] = (identity, (switches, ticks))
    return found


def role_of(identity, bench_pid, backends):
    pid, parent, name = identity
    if pid == bench_pid:
        return "load generator"
    if pid in backends:
        return backends[pid]
    if parent == bench_pid:  # the `signoff serve` processes the benchmark started
        return "servers' writer threads" if name.startswith("signoff-pg") else \
            "servers' request threads"
    return "the rest"


def measure(url, instances):
    """One run: round trips per second, busy CPU per round trip (µs), and per
    role (context switches, µs of CPU) per round trip, over the sampled window."""
    run = subprocess.Popen(
        [SIGNOFF, "bench", "roundtrip", "--agents", "32", "--seconds", str(RUN_SECONDS),
         "--warmup", str(WARMUP_SECONDS), "--waiting", "0", "--runs", "1",
         "--durability", "full", "--db", url, "--instances", str(instances)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(SAMPLE_AFTER)
        backends = backend_roles(url)
        started, tasks_before = time.monotonic(), tasks_created(url)
        machine_before = open("/proc/stat").readline().split()[1:9]
        before = threads()
        time.sleep(SAMPLE_SECONDS)
        after = threads()
        machine_after = open("/proc/stat").readline().split()[1:9]
        round_trips = tasks_created(url) - tasks_before
        per_second = round_trips / (time.monotonic() - started)
    finally:
        # Even when giving up: killing the benchmark would leave its servers running.
        run.wait()
    if run.returncode != 0:
        sys.exit(f"signoff bench roundtrip failed (exit {run.returncode})")
    if round_trips == 0:
        sys.exit("the benchmark created no task within the sampled window")
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    usage = collections.defaultdict(lambda: [0.0, 0.0])
    for key, (identity, (switches, ticks)) in after.items():
        if key not in before:
            continue
        switches_before, ticks_before = before[key][1]
        role = usage[role_of(identity, run.pid, backends)]
        role[0] += (switches - switches_before) / round_trips
        role[1] += (ticks - ticks_before) * 1e6 / ticks_per_second / round_trips
    # user, nice, system, idle, iowait, irq, softirq, steal (guest time is in user).
    spent = [int(b) - int(a) for a, b in zip(machine_before, machine_after)]
    idle = spent[3] + spent[4]  # idle and iowait
    busy = (sum(spent) - idle) * 1e6 / ticks_per_second / round_trips
    return per_second, busy, usage


def main():
    url = os.environ.get("SIGNOFF_BENCH_PG_URL")
    if not url:
        sys.exit("set SIGNOFF_BENCH_PG_URL to a postgres:// URL")
    given = sys.argv[1] if len(sys.argv) > 1 else "3"
    pairs = int(given) if given.isdigit() else 0
    if pairs < 1:
        sys.exit(f"PAIRS must be a whole number of at least 1, not {given!r}")
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True)
    runs = {1: [], 3: []}
    for pair in range(1, pairs + 1):
        for instances in (1, 3):
            per_second, busy, _ = result = measure(url, instances)
            runs[instances].append(result)
            print(f"pair {pair}, {instances} instance(s): {per_second:.0f} round trips/s, "
                  f"{busy:.0f} µs busy CPU per round trip", flush=True)

    def mean(instances, pick):
        return sum(pick(run) for run in runs[instances]) / len(runs[instances])

    print(f"\nper round trip, mean of {pairs} pair(s)      one instance          three")
    print(f"{'':34}{'switches':>9}{'CPU µs':>9}{'switches':>12}{'CPU µs':>9}")
    for role in ROLES:
        cells = [mean(n, lambda run, i=i: run[2][role][i]) for n in (1, 3) for i in (0, 1)]
        print(f"{role:34}{cells[0]:9.2f}{cells[1]:9.0f}{cells[2]:12.2f}{cells[3]:9.0f}")
    one_busy, three_busy = mean(1, lambda run: run[1]), mean(3, lambda run: run[1])
    print(f"{'busy CPU, whole machine':34}{'':9}{one_busy:9.0f}{'':12}{three_busy:9.0f}"
          f"   ({three_busy / one_busy - 1:+.0%})")
    one_rate, three_rate = mean(1, lambda run: run[0]), mean(3, lambda run: run[0])
    print(f"round trips/s: one {one_rate:.0f}, three {three_rate:.0f} "
          f"({1 - three_rate / one_rate:.1%} lost)")


if __name__ == "__main__":
    main()
