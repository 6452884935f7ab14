"""A reviewer deciding over raw HTTP, the way the Go CLI does.

    decide_http.py INTENT_ID OUTCOME [--comment TEXT] [field=value ...]

Waits until the task is in the reviewer's task list (REVIEWER_KEY), then sends
`{"task_result": {"outcome": ..., "comment": ..., "field": "value"}}` with every
field flattened as a string. Exits 0 only on HTTP 200.
"""

from __future__ import annotations

import argparse
import sys

from compat_support import decide, reviewer_http, wait_until_task_visible


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("intent_id")
    parser.add_argument("outcome")
    parser.add_argument("--comment")
    parser.add_argument("fields", nargs="*", metavar="field=value")
    args = parser.parse_intermixed_args()
    fields = dict(field.split("=", 1) for field in args.fields)

    with reviewer_http() as http:
        wait_until_task_visible(http, args.intent_id)
        response = decide(http, args.intent_id, args.outcome, args.comment, **fields)
    print(f"reviewer: {args.outcome} on {args.intent_id} -> HTTP {response.status_code} {response.text}", flush=True)
    return 0 if response.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
