"""One task of each of the eight task types, sent with the SDK and decided over
HTTP the Go CLI way (flattened string fields). Where a type has a rule, a
decision breaking it is refused with 422 first and the task stays open."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compat_support import (
    WAIT_TIMEOUT_SECONDS,
    check,
    decide,
    human_task_intent,
    reviewer_http,
    sdk_client,
    wait_until_task_visible,
)


@dataclass
class Decision:
    outcome: str
    comment: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class Case:
    task_type: str
    task: dict[str, Any]
    decision: Decision
    # What the agent must see in the terminal event's flat `data` (besides the outcome).
    expected_data: dict[str, Any]
    # A decision the task's rule forbids, if the type has one.
    refused: Decision | None = None


DEPLOY_FORM = {
    "type": "object",
    "properties": {
        "replicas": {"type": "integer", "minimum": 1},
        "canary": {"type": "boolean"},
        "region": {"type": "string", "enum": ["eu", "us"]},
    },
    "required": ["replicas", "canary"],
}

CASES = [
    Case("approval", {}, Decision("approved", "lgtm"), {"approved": True}),
    Case(
        "review",
        {},
        Decision("changes_requested", "split the migration"),
        {"approved": False, "comment": "split the migration"},
        refused=Decision("changes_requested"),
    ),
    Case(
        "form",
        {"form_schema": DEPLOY_FORM},
        # Strings, as the Go CLI sends them: the server coerces them to the schema's types.
        Decision("submitted", fields={"replicas": "3", "canary": "true", "region": "eu"}),
        {"approved": True, "replicas": 3, "canary": True, "region": "eu"},
        refused=Decision("submitted", fields={"replicas": "zero", "canary": "true"}),
    ),
    Case(
        "override",
        {},
        Decision("override_approved", "hotfix for INC-7"),
        {"approved": True, "comment": "hotfix for INC-7"},
        refused=Decision("override_approved"),
    ),
    Case("confirmation", {}, Decision("denied"), {"approved": False}),
    Case(
        "assignment",
        {},
        Decision("assigned", fields={"assignee": "bob@example.com"}),
        {"approved": True, "assignee": "bob@example.com"},
        refused=Decision("assigned"),
    ),
    Case(
        "clarification",
        {},
        Decision("provided", "the EU cluster"),
        {"approved": True, "comment": "the EU cluster"},
        refused=Decision("provided"),
    ),
    Case(
        "manual_action",
        {"evidence_required": True},
        Decision("completed", fields={"evidence": "https://ci.example.com/runs/42"}),
        {"approved": True, "evidence": "https://ci.example.com/runs/42"},
        refused=Decision("completed"),
    ),
]


def run(client, http, case: Case) -> None:
    print(f"--- {case.task_type}", flush=True)
    task = {"title": f"A {case.task_type} task", "task_type": case.task_type, **case.task}
    intent_id = client.send_intent(human_task_intent(task))
    wait_until_task_visible(http, intent_id)

    if case.refused is not None:
        refused = decide(http, intent_id, case.refused.outcome, case.refused.comment, **case.refused.fields)
        print(f"refused attempt -> HTTP {refused.status_code} {refused.text}", flush=True)
        check(refused.status_code == 422, f"{case.task_type}: a decision breaking the rule is 422")
        still_open = client.get_intent(intent_id)["intent"]
        check(still_open["status"] == "WAITING", f"{case.task_type}: the refused decision left the task WAITING")

    accepted = decide(http, intent_id, case.decision.outcome, case.decision.comment, **case.decision.fields)
    check(accepted.status_code == 200, f"{case.task_type}: the valid decision is accepted ({accepted.text})")

    result = client.wait_for(intent_id, timeout_seconds=WAIT_TIMEOUT_SECONDS)
    print(f"wait_for -> {result}", flush=True)
    check(result["status"] == "COMPLETED", f"{case.task_type}: status COMPLETED")
    check(result["result"]["outcome"] == case.decision.outcome, f"{case.task_type}: outcome {case.decision.outcome}")
    check(result["data"]["outcome"] == case.decision.outcome, f"{case.task_type}: data.outcome agrees")
    for name, value in case.expected_data.items():
        # `is`-strict for booleans so "true" or 1 would not pass for True.
        actual = result["data"].get(name)
        same = (actual is value) if isinstance(value, bool) else (actual == value and type(actual) is type(value))
        check(same, f"{case.task_type}: data.{name} == {value!r} (got {actual!r})")


with sdk_client() as client, reviewer_http() as http:
    for case in CASES:
        run(client, http, case)
check(len({case.task_type for case in CASES}) == 8, "all eight task types were covered")
