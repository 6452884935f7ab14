"""`create_intent` with an idempotency key: a retry returns the original intent;
the same key with a different body is a 409 the SDK raises as AxmeValidationError."""

import uuid

from axme_sdk import AxmeValidationError

from compat_support import check, human_task_intent, new_correlation_id, sdk_client

with sdk_client() as client:
    key = f"deploy-{uuid.uuid4()}"
    correlation_id = new_correlation_id()
    body = human_task_intent({"title": "Deploy api 2.3.0?"})

    first = client.create_intent(body, correlation_id=correlation_id, idempotency_key=key)
    retried = client.create_intent(body, correlation_id=correlation_id, idempotency_key=key)
    print(f"first: {first}\nretried: {retried}", flush=True)
    check(first.get("ok") is True and first.get("intent_id"), "the create answered ok with an intent_id")
    check(retried["intent_id"] == first["intent_id"], "the retry returns the same intent_id")

    intent = client.get_intent(first["intent_id"])["intent"]
    check(intent["correlation_id"] == correlation_id, "the intent keeps the correlation_id")

    changed = human_task_intent({"title": "Deploy api 2.4.0?"})
    try:
        client.create_intent(changed, correlation_id=correlation_id, idempotency_key=key)
    except AxmeValidationError as error:
        print(f"reused key: {error} body={error.body}", flush=True)
        check(error.status_code == 409, "reusing the key with another body is HTTP 409")
        check(isinstance(error.body, dict) and isinstance(error.body.get("detail"), str), "the 409 body has detail")
        check(error.message == error.body["error"]["message"], "the SDK reads error.message")
    else:
        check(False, "reusing the key with another body must fail")

    fresh = client.create_intent(changed, correlation_id=new_correlation_id(), idempotency_key=f"{key}-2")
    check(fresh["intent_id"] != first["intent_id"], "a new key creates a new intent")
