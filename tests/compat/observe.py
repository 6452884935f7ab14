"""`observe` yields every lifecycle event of a human task, in seq order, ending
with the decision; the reviewer decides (in another process) while the stream is open."""

from compat_support import (
    WAIT_TIMEOUT_SECONDS,
    check,
    finish_decider,
    human_task_intent,
    sdk_client,
    start_decider,
)

EXPECTED = [
    ("intent.created", "CREATED"),
    ("intent.submitted", "SUBMITTED"),
    ("intent.human_task_assigned", "WAITING"),
    ("intent.completed", "COMPLETED"),
]

with sdk_client() as client:
    intent_id = client.send_intent(human_task_intent({"title": "Rotate the database credentials?"}))
    print(f"agent: sent {intent_id}", flush=True)

    events = []
    decider = None
    for event in client.observe(intent_id, timeout_seconds=WAIT_TIMEOUT_SECONDS):
        print(f"event: seq={event['seq']} {event['event_type']} {event['status']}", flush=True)
        events.append(event)
        if event["event_type"] == "intent.human_task_assigned":
            # Decide only now, so the completion arrives live on the open stream.
            decider = start_decider(intent_id, "rejected", "not during the freeze")
    check(decider is not None, "the task was assigned before observe ended")
    finish_decider(decider)

    check([(e["event_type"], e["status"]) for e in events] == EXPECTED, f"observed exactly {EXPECTED}")
    check([e["seq"] for e in events] == [1, 2, 3, 4], "seq starts at 1 with no gaps")
    check(all(e["intent_id"] == intent_id for e in events), "every event names the intent")
    check(events[2]["waiting_reason"] == "WAITING_FOR_HUMAN", "the assigned event waits for a human")
    check(events[-1]["data"]["approved"] is False, "the rejection reads as approved == False")

    listed = client.list_intent_events(intent_id)["events"]
    check(listed == events, "list_intent_events returns the same events as the stream")
