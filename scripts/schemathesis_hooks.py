"""Schemathesis hooks for scripts/schemathesis.sh.

Each hook encodes one rule of API.md that an OpenAPI document cannot state,
and nothing else: every check stays on, and every other request and failure
goes through as generated.
"""

import json
import os
import re

import schemathesis

OWN_CLIENT_ID = os.environ["KEYWARD_SCHEMATHESIS_CLIENT_ID"]
REVOKE = "/admin/v1/clients/{id}/revoke"
OAUTH_FORMS = {"/oauth/token", "/oauth/introspect", "/oauth/revoke"}

# 400s that depend on the clock or on what is stored, which no JSON Schema
# can express: a schema-valid request may still name an expiry in the past
# (API.md 3: "not in the past and at most 10 years ahead"), a role that does
# not exist, or scopes its role does not hold, or ask a client of one kind
# for what only the other kind has (a new secret of an api_token client, a
# reissued token of a client_credentials one: the README's choice). The server is right to refuse
# these; any other 400 to a schema-valid request stays a failure.
STATE_DEPENDENT_REJECTIONS = [
    re.compile(p)
    for p in (
        r"^expires_at is in the past$",
        r"^expires_(at|in) .*at most 10 years",
        r'^role ".*" does not exist$',
        r"^scopes not in role ",
        r"^parent_id: a caller cannot move its own tenant$",
        r"^parent_id would make a cycle",
        r"^an api_token client has no secret",
        r"^a client_credentials client has no API token",
    )
]

# Client assertions and trusted issuers (API.md 2 and 3): a key URL is
# fetched before it is registered, and one that cannot be fetched or holds
# no usable key is a 400 naming why; a schema-valid https URL the run makes
# up is almost never one that answers with a JWK Set. The document cannot
# state either that, or the rules across fields: private_key_jwt needs keys
# or subjects and has no secret, jwks and jwks_uri go only with it and not
# together, a federated subject names a trusted issuer in reach (stored
# state), a JWK Set's keys must be usable public keys, and an issuer that
# is not a URL needs a jwks_uri.
KEYS_AND_CROSS_FIELD_REJECTIONS = [
    re.compile(p)
    for p in (
        r"^jwks_uri could not be used: ",
        r"^jwks_uri: ",
        r"^jwks: ",
        r"^the issuer's keys (could not|cannot) be fetched",
        r"^private_key_jwt needs jwks, jwks_uri or at least one federated subject$",
        r"^give jwks or jwks_uri, not both$",
        r"^jwks and jwks_uri are for private_key_jwt clients",
        r"^an api_token client uses its token: ",
        r"^federated_subjects: ",
        r"^an issuer that is not a URL needs a jwks_uri",
        r"^a private_key_jwt client has no secret",
        # One assertion field without the other: "both or neither".
        r"^client_assertion and client_assertion_type go together$",
    )
]

# API.md 2: credentials in the Authorization header and in the body must not
# disagree ("a secret in both places: invalid_request"; a client_id beside
# Basic must name the same client). The document declares both places but
# cannot say "not both"; the server answers 400 before it looks at whether
# the credentials are any good, so these are also right where Schemathesis
# sends deliberately bad credentials (ignored_auth) and expects 401.
HEADER_AND_BODY_REJECTIONS = [
    re.compile(p)
    for p in (
        r"^client_secret given both in the Authorization header and in the body$",
        r"^a bearer token and a client_secret cannot be used together$",
        r"^client_id in the body does not match the Authorization header$",
        r"^a client assertion cannot be used together with another client authentication$",
    )
]


@schemathesis.hook
def before_call(context, case, **kwargs):
    # The run acts as the bootstrap admin, and API.md 3 lets a caller revoke
    # its own client. Schemathesis learns client ids from responses, so it
    # would revoke the client whose token it sends, and every later request
    # would be a 401 that tests nothing. That one request goes to an id that
    # does not exist instead; every other revocation is sent as generated.
    if case.operation.path == REVOKE and case.method.upper() == "POST":
        params = case.path_parameters or {}
        if str(params.get("id", "")).strip() == OWN_CLIENT_ID:
            params["id"] = "kwc_not_the_callers_own"
    # API.md 2: a client secret in the Authorization header and in the body
    # is invalid_request (and a bearer token beside a body secret likewise).
    # The document declares both ways, but cannot say "not both at once".
    if case.operation.path in OAUTH_FORMS and isinstance(case.body, dict):
        headers = {k.lower() for k in (case.headers or {})}
        if "authorization" in headers and "client_secret" in case.body:
            del case.body["client_secret"]


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if failure.code not in ("ST202", "ST401") or response.status_code != 400:
        return True
    try:
        description = json.loads(response.content)["error_description"]
    except (ValueError, KeyError, TypeError):
        return True
    rules = HEADER_AND_BODY_REJECTIONS
    if failure.code == "ST202":
        rules = rules + STATE_DEPENDENT_REJECTIONS + KEYS_AND_CROSS_FIELD_REJECTIONS
    return not any(p.search(description) for p in rules)
