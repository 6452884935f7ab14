"""Nobody answers: each timeout fallback reaches an agent blocked in the SDK's
`wait_for`, with the right status and a *system* decision (`decided_by:
"system:timeout"`), never dressed up as a person's.

- fallback "fail"               -> TIMED_OUT
- fallback "cancel"             -> CANCELED
- fallback {"outcome": X}       -> COMPLETED with outcome X, decided by the system
- AXP `deadline_at` (no fallback given) -> TIMED_OUT at that instant
"""

from datetime import datetime, timedelta, timezone

from compat_support import WAIT_TIMEOUT_SECONDS, check, human_task_intent, sdk_client

TIMEOUT_SECONDS = 2

CASES = [
    ("fail", "TIMED_OUT", None),
    ("cancel", "CANCELED", None),
    ({"outcome": "rejected"}, "COMPLETED", False),
    ({"outcome": "approved"}, "COMPLETED", True),
]

with sdk_client() as client:
    for fallback, expected_status, expected_approved in CASES:
        label = f"fallback {fallback}"
        body = human_task_intent({"title": f"Ship it? ({label})"})
        body["lifecycle"] = {"timeout": {"after_seconds": TIMEOUT_SECONDS, "fallback": fallback}}
        intent_id = client.send_intent(body)

        result = client.wait_for(intent_id, timeout_seconds=WAIT_TIMEOUT_SECONDS)
        print(f"{label}: status={result['status']} decided_by={result['details'].get('decided_by')}", flush=True)

        check(result["status"] == expected_status, f"{label}: wait_for returns {expected_status}")
        check(result["details"]["decided_by"] == "system:timeout", f"{label}: decided_by is system:timeout")
        check(result["actor"] == "system:timeout", f"{label}: the terminal event's actor is the system")
        record = result["result"]
        check(record["via"] == "timeout" and record["system"] is True, f"{label}: the record says it was the timeout")
        if expected_approved is None:
            check("outcome" not in record, f"{label}: no outcome is invented")
        else:
            check(record["outcome"] == fallback["outcome"], f"{label}: the fallback outcome is the result")
            check(result["data"]["approved"] is expected_approved, f"{label}: data.approved is {expected_approved}")

        stored = client.get_intent(intent_id)["intent"]
        check(stored["status"] == expected_status, f"{label}: GET /v1/intents agrees")
        check(stored["result"]["decided_by"] == "system:timeout", f"{label}: the stored decision is the system's")

    # The AXP field alone: an absolute deadline, and the built-in fallback "fail".
    deadline = datetime.now(timezone.utc) + timedelta(seconds=TIMEOUT_SECONDS)
    body = human_task_intent({"title": "Approve before the deadline?"})
    body["deadline_at"] = deadline.isoformat()
    intent_id = client.send_intent(body)
    result = client.wait_for(intent_id, timeout_seconds=WAIT_TIMEOUT_SECONDS)
    check(result["status"] == "TIMED_OUT", "deadline_at: wait_for returns TIMED_OUT")
    check(result["details"]["decided_by"] == "system:timeout", "deadline_at: decided by the system")
    fired_at = datetime.fromisoformat(result["at"].replace("Z", "+00:00"))
    check(fired_at >= deadline, "deadline_at: it did not time out early")
