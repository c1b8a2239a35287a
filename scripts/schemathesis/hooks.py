"""Schemathesis hooks for twinledger (loaded with SCHEMATHESIS_HOOKS=hooks).

`GET /v1/events` is a Server-Sent Events stream that stays open for new events; a fuzzer that
reads each answer to its end would wait forever. Its `follow=false` ends the stream once it has
caught up, so every generated request to it gets it, unless the case tests an invalid value
of `follow` itself (which must be refused with 400).
"""

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path != "/v1/events":
        return
    query = dict(case.query or {})
    if query.get("follow") in (None, True, "true"):
        query["follow"] = "false"
    case.query = query
