"""schemathesis hooks for scripts/fuzz-apis.sh (loaded through SCHEMATHESIS_HOOKS=hooks).

Every operation that moves money declares a required Idempotency-Key header. Generated keys
repeat across examples, and the same key with another body is a documented 422, which would
hide everything behind it; so each request that carries the header gets a fresh key. A case
that leaves the header out (negative testing) keeps it out and gets the documented 400.
"""

import uuid

import schemathesis


@schemathesis.hook
def before_call(context, case, **kwargs):
    headers = case.headers
    if headers is None:
        return
    for name in list(headers):
        if name.lower() == "idempotency-key":
            headers[name] = f"fuzz-{uuid.uuid4()}"
