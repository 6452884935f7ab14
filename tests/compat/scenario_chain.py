"""An approval chain through the SDK's own scenario calls: `validate_scenario`
lists every error with its path, `apply_scenario` starts a two-step chain, the
reviewer (another process, over HTTP) approves each step as it arrives, and
`wait_for` on the scenario's intent returns when the chain completes."""

import time

from compat_support import check, env, finish_decider, reviewer_http, sdk_client, start_decider

REVIEWER = env("REVIEWER_ID")
BUNDLE = {
    "scenario_id": "sdk-chain",
    "humans": [{"role": "lead", "assignees": [REVIEWER]}, {"role": "oncall", "assignees": ["team:oncall"]}],
    "workflow": {"steps": [
        {"step_id": "lead", "assigned_to": "lead", "human_task": {"title": "Lead: ship?", "task_type": "approval"}},
        {"step_id": "oncall", "assigned_to": "oncall", "human_task": {"title": "On-call: ship?", "task_type": "approval"}},
    ]},
    "intent": {"type": "intent.release.approval.v1", "payload": {"version": "2.3.0"}},
}


def next_task(http) -> str:
    """The id of the next task waiting for the reviewer."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        tasks = http.get("/v1/me/tasks").json()["tasks"]
        if tasks:
            return tasks[0]["intent_id"]
        time.sleep(0.1)
    raise SystemExit("no step arrived in the reviewer's task list")


with sdk_client() as client, reviewer_http() as http:
    broken = dict(BUNDLE, workflow={"steps": [{"step_id": "lead", "assigned_to": "cfo"}]})
    report = client.validate_scenario(broken)
    check(report["valid"] is False, "validate_scenario: an unknown role is invalid")
    check([e["path"] for e in report["errors"]] == ["$.workflow.steps[0].assigned_to"], "the error names its JSON path")
    check(client.validate_scenario(BUNDLE)["valid"] is True, "validate_scenario: the chain is valid")

    applied = client.apply_scenario(BUNDLE, idempotency_key="sdk-chain-1")
    check(isinstance(applied.get("intent_id"), str), "apply_scenario returns the scenario's intent_id")
    again = client.apply_scenario(BUNDLE, idempotency_key="sdk-chain-1")
    check(again["intent_id"] == applied["intent_id"], "the same idempotency key starts the scenario once")

    for step in ("lead", "oncall"):
        task = next_task(http)
        finish_decider(start_decider(task, "approved", f"{step} approves"))

    result = client.wait_for(applied["intent_id"])
    print(f"scenario ended: {result['status']}", flush=True)
    check(result["status"] == "COMPLETED", "wait_for returns the completed chain")
    steps = result["result"]["steps"]
    check([s["step_id"] for s in steps] == ["lead", "oncall"], "both steps ran, in order")
    check(all(s["decided_by"] == REVIEWER for s in steps), "each step was decided by the reviewer")
