"""The approval pattern exactly as the SDK documentation writes it:

    result = client.wait_for(intent_id)
    if result["status"] == "COMPLETED" and result.get("data", {}).get("approved"):
        ...

once for an approval and once for a rejection, which must read approved == False
(present and False, not merely missing)."""

from compat_support import check, finish_decider, human_task_intent, sdk_client, start_decider

with sdk_client() as client:
    for outcome, expected_approved in [("approved", True), ("rejected", False)]:
        intent_id = client.send_intent(
            human_task_intent({"title": "Apply the terraform plan?"}, plan="prod-42", resources=17)
        )
        decider = start_decider(intent_id, outcome, f"{outcome} by the on-call reviewer")

        result = client.wait_for(intent_id)
        finish_decider(decider)
        print(f"{outcome}: status={result['status']} approved={result.get('data', {}).get('approved')!r}", flush=True)

        check(result["status"] == "COMPLETED", f"{outcome}: result['status'] == 'COMPLETED'")
        approved = result.get("data", {}).get("approved")
        check(approved is expected_approved, f"{outcome}: result.get('data', {{}}).get('approved') is {expected_approved}")
        if result["status"] == "COMPLETED" and result.get("data", {}).get("approved"):
            check(outcome == "approved", "only the approval takes the documented 'go ahead' branch")
        else:
            check(outcome == "rejected", "only the rejection takes the documented 'stop' branch")
