"""Agent-to-agent work: the sender addresses an intent to a worker (no human task);
the worker finds it with `listen` and finishes it with `resume_intent`; the
sender's `wait_for` returns the worker's result."""

import threading

from compat_support import WAIT_TIMEOUT_SECONDS, check, env, sdk_client

DELIVERY_FIELDS = {"intent_id", "seq", "event_type", "status", "at"}
WORK_RESULT = {"deployed": True, "version": "2.3.0", "replicas": 3}

worker_address = env("WORKER_ADDRESS")
worker_outcome = {}


def work(intent_id: str) -> None:
    """The worker agent: listens on its own address until the intent shows up."""
    with sdk_client("WORKER_KEY") as worker:
        for delivery in worker.listen(worker_address, wait_seconds=5, timeout_seconds=WAIT_TIMEOUT_SECONDS):
            print(f"worker: delivery {delivery}", flush=True)
            worker_outcome.setdefault("deliveries", []).append(delivery)
            if delivery.get("intent_id") == intent_id:
                worker_outcome["resumed"] = worker.resume_intent(
                    intent_id, {"action": "complete", "result": WORK_RESULT}, owner_agent=worker_address
                )
                return


with sdk_client() as sender:
    intent_id = sender.send_intent(
        {
            "intent_type": "intent.deploy.request.v1",
            "to_agent": worker_address,
            "payload": {"service": "api", "version": "2.3.0"},
        }
    )
    print(f"sender: sent {intent_id} to {worker_address}", flush=True)

    worker_thread = threading.Thread(target=work, args=(intent_id,))
    worker_thread.start()
    result = sender.wait_for(intent_id, timeout_seconds=WAIT_TIMEOUT_SECONDS)
    worker_thread.join(timeout=WAIT_TIMEOUT_SECONDS)
    print(f"sender: wait_for returned {result}", flush=True)

check(not worker_thread.is_alive() and "resumed" in worker_outcome, "the worker got the delivery and resumed")
delivery = worker_outcome["deliveries"][-1]
check(DELIVERY_FIELDS <= delivery.keys(), f"a delivery carries {sorted(DELIVERY_FIELDS)}")
check(isinstance(delivery["seq"], int) and delivery["seq"] >= 1, "the delivery seq is a positive cursor")
check(worker_outcome["resumed"].get("applied") is True, "resume_intent answered applied: true")
check(result["status"] == "COMPLETED", 'the sender sees status "COMPLETED"')
check(result["event_type"] == "intent.completed", "the terminal event is intent.completed")
check(result["result"] == WORK_RESULT, "the sender receives the worker's result")
check(result["actor"] == worker_address, "the completion is recorded as the worker's")
