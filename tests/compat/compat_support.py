"""Shared pieces of the SDK compatibility scripts.

The agent side always goes through the official `axme` SDK, unchanged. The
reviewer side talks raw HTTP with httpx, shaped exactly like the Go CLI's
`tasks approve|reject|... ID -c comment --data k=v`: one
`POST /v1/intents/ID/resume` whose `task_result` carries the outcome, the
comment and every form field flattened next to them as a string.

Configuration comes from the environment, set by the Rust harness
(tests/sdk_compat.rs):
    SIGNOFF_URL      base URL of the signoff server
    AGENT_KEY        key of the agent that sends intents (AGENT_ADDRESS)
    REVIEWER_KEY     key of the reviewer the human tasks go to (REVIEWER_ID)
    WORKER_KEY       key of the agent that intents are addressed to (WORKER_ADDRESS)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from axme_sdk import AxmeClient, AxmeClientConfig

HUMAN_TASK_INTENT = "intent.human_task.v1"
# How long a reviewer waits for a task to show up before giving up; a safety net only.
TASK_VISIBLE_TIMEOUT_SECONDS = 20.0
# Upper bound on any single wait_for in these scripts, so a broken server fails the
# test instead of hanging it.
WAIT_TIMEOUT_SECONDS = 60.0


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"missing environment variable {name}")
    return value


def sdk_client(key_variable: str = "AGENT_KEY") -> AxmeClient:
    """An official SDK client, configured the way the SDK's README shows."""
    return AxmeClient(AxmeClientConfig(base_url=env("SIGNOFF_URL"), api_key=env(key_variable)))


def human_task_intent(task: dict[str, Any], **payload: Any) -> dict[str, Any]:
    """The body an agent passes to `send_intent` to ask the reviewer for a decision."""
    return {
        "intent_type": HUMAN_TASK_INTENT,
        "to_agent": env("AGENT_ADDRESS"),
        "payload": payload or {"service": "api", "version": "2.3.0"},
        "human_task": {"assignees": [env("REVIEWER_ID")], **task},
    }


def check(condition: bool, message: str) -> None:
    """Fails the script with a readable line instead of a bare AssertionError."""
    if not condition:
        print(f"FAIL: {message}", flush=True)
        sys.exit(1)
    print(f"ok: {message}", flush=True)


def reviewer_http() -> httpx.Client:
    # Bearer on purpose: the SDK sends x-api-key, so the reviewer side covers the other header.
    return httpx.Client(
        base_url=env("SIGNOFF_URL"),
        headers={"Authorization": f"Bearer {env('REVIEWER_KEY')}"},
        timeout=15.0,
    )


def wait_until_task_visible(http: httpx.Client, intent_id: str) -> None:
    """Polls `GET /v1/me/tasks` like `tasks list` until the task is there to decide."""
    deadline = time.monotonic() + TASK_VISIBLE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        response = http.get("/v1/me/tasks")
        response.raise_for_status()
        if any(task["intent_id"] == intent_id for task in response.json()["tasks"]):
            return
        time.sleep(0.1)
    sys.exit(f"task {intent_id} never appeared in the reviewer's task list")


def decide(
    http: httpx.Client, intent_id: str, outcome: str, comment: str | None = None, **fields: str
) -> httpx.Response:
    """One Go-CLI-shaped decision; returns the raw response for the caller to judge."""
    task_result: dict[str, str] = {"outcome": outcome}
    if comment is not None:
        task_result["comment"] = comment
    task_result.update(fields)
    return http.post(f"/v1/intents/{intent_id}/resume", json={"task_result": task_result})


def start_decider(intent_id: str, outcome: str, comment: str | None = None, **fields: str) -> subprocess.Popen:
    """Launches decide_http.py as a separate process: the reviewer is not the agent."""
    command = [sys.executable, str(Path(__file__).with_name("decide_http.py")), intent_id, outcome]
    if comment is not None:
        command += ["--comment", comment]
    command += [f"{name}={value}" for name, value in fields.items()]
    return subprocess.Popen(command)


def finish_decider(decider: subprocess.Popen) -> None:
    check(decider.wait(timeout=WAIT_TIMEOUT_SECONDS) == 0, "the reviewer process decided successfully")


def new_correlation_id() -> str:
    return str(uuid.uuid4())
