"""WAITERS agents (threads), each sending one human task and blocking in the
SDK's `wait_for` while the test kills the server with SIGKILL and restarts it.

An agent that loses its connection does what any agent does: it catches the
transport error and calls `wait_for` again (the SDK itself is unchanged and
replays the intent's events from the start). Driven by tests/durability.rs over
stdout, one line each:

    INTENT <index> <intent_id>      once per agent, after its intent was created
    READY                           every agent has sent and is about to wait
    RESULT {"index", "intent_id", "event", "reconnects"}   when an agent's wait ends

Exits non-zero if any agent failed or received an event for another intent.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import httpx

from compat_support import human_task_intent, sdk_client

WAITERS = int(os.environ.get("WAITERS", "100"))
# A safety net: the test decides every intent well before this.
GIVE_UP_AFTER_SECONDS = 180.0
RETRY_PAUSE_SECONDS = 0.2

print_lock = threading.Lock()
all_sent = threading.Barrier(WAITERS + 1)
failures: list[str] = []


def say(line: str) -> None:
    with print_lock:
        print(line, flush=True)


def wait_surviving_crashes(client, intent_id: str, deadline: float) -> tuple[dict, int]:
    """`wait_for`, retried after transport errors; returns the event and the retry count."""
    reconnects = 0
    while True:
        seconds_left = deadline - time.monotonic()
        if seconds_left <= 0:
            raise TimeoutError(f"no decision for {intent_id}")
        try:
            return client.wait_for(intent_id, timeout_seconds=seconds_left), reconnects
        except httpx.TransportError as error:
            # The server went away mid-stream or refused the connection while down.
            reconnects += 1
            say(f"WARN {intent_id}: {type(error).__name__}: {error}; waiting again")
            time.sleep(RETRY_PAUSE_SECONDS)


def agent(index: int, deadline: float) -> None:
    # One SDK client per agent: each is an independent process in real life, and
    # httpx's default pool (100 connections) must not be shared by 100 long streams.
    try:
        with sdk_client() as client:
            intent_id = client.send_intent(human_task_intent({"title": f"Deploy shard {index}?"}, shard=index))
            say(f"INTENT {index} {intent_id}")
            all_sent.wait()
            event, reconnects = wait_surviving_crashes(client, intent_id, deadline)
        if event.get("intent_id") != intent_id:
            failures.append(f"agent {index} waited on {intent_id} but got {event.get('intent_id')}")
        say("RESULT " + json.dumps({"index": index, "intent_id": intent_id, "event": event, "reconnects": reconnects}))
    except Exception as error:  # any failure must fail the script, not just end a thread
        failures.append(f"agent {index}: {type(error).__name__}: {error}")
        all_sent.abort()


deadline = time.monotonic() + GIVE_UP_AFTER_SECONDS
threads = [threading.Thread(target=agent, args=(index, deadline)) for index in range(WAITERS)]
for thread in threads:
    thread.start()
try:
    all_sent.wait()
    say("READY")
except threading.BrokenBarrierError:
    say("NOT READY: an agent failed before waiting")
for thread in threads:
    thread.join()

for failure in failures:
    print(f"FAIL: {failure}", file=sys.stderr, flush=True)
sys.exit(1 if failures else 0)
