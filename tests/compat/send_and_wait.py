"""An agent sends a human task and blocks in `wait_for` while a reviewer, in
another process, approves it over HTTP with a flattened form field."""

from compat_support import (
    WAIT_TIMEOUT_SECONDS,
    check,
    env,
    finish_decider,
    human_task_intent,
    sdk_client,
    start_decider,
)

with sdk_client() as client:
    intent_id = client.send_intent(
        human_task_intent({"title": "Deploy api 2.3.0 to production?", "task_type": "approval"})
    )
    print(f"agent: sent {intent_id}", flush=True)

    decider = start_decider(intent_id, "approved", "ship it", ticket="OPS-42")
    result = client.wait_for(intent_id, timeout_seconds=WAIT_TIMEOUT_SECONDS)
    finish_decider(decider)
    print(f"agent: wait_for returned {result}", flush=True)

    check(result["intent_id"] == intent_id, "the terminal event is for the intent we sent")
    check(result["event_type"] == "intent.completed", "the terminal event is intent.completed")
    check(result["status"] == "COMPLETED", 'result["status"] == "COMPLETED"')
    check(result.get("data", {}).get("approved") is True, 'result["data"]["approved"] is True')
    check(result["result"]["outcome"] == "approved", 'result["result"]["outcome"] == "approved"')
    check(result["result"]["comment"] == "ship it", "the reviewer's comment reaches the agent")
    check(result["result"]["decided_by"] == env("REVIEWER_ID"), 'result["result"]["decided_by"] is the reviewer')
    check(result["data"].get("ticket") == "OPS-42", "a flattened field arrives in data")

    intent = client.get_intent(intent_id)["intent"]
    check(intent["status"] == "COMPLETED", "get_intent agrees the intent is COMPLETED")
