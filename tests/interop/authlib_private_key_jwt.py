"""Authlib's stock private_key_jwt client against a running keyward.

Fetches a client_credentials token with authlib's OAuth2Session
(authlib.integrations.requests_client) authenticating with
authlib.oauth2.rfc7523.PrivateKeyJWT, then introspects it with the same
client authentication (a second assertion, with its own jti), as a resource
server using private_key_jwt would. Nothing of Authlib is patched or
subclassed: the assertion is the one Authlib makes (iss = sub = client_id,
aud = the token endpoint URL, exp one hour after iat, a random jti).

Prints the token response as one line of JSON on stdout; everything else
goes to stderr. Exits non-zero, saying why, on any failure.

Used by tests/api/interop.rs; by hand:

    python authlib_private_key_jwt.py --issuer http://127.0.0.1:8080 \
        --client-id cl_... --key key.pem [--alg ES256] [--kid k1] [--scope read]

The private key is a PEM (PKCS#8) file, or "-" for the PEM in the
environment variable KEYWARD_INTEROP_PRIVATE_KEY.
"""

import argparse
import json
import os
import sys


def fail(message):
    print(f"authlib interop: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issuer", required=True, help="keyward's issuer URL")
    parser.add_argument("--client-id", required=True)
    parser.add_argument(
        "--key",
        required=True,
        help='PEM file of the private key, or "-" for $KEYWARD_INTEROP_PRIVATE_KEY',
    )
    parser.add_argument(
        "--alg",
        default=None,
        help="JWS alg of the assertion (default: Authlib's own, RS256)",
    )
    parser.add_argument("--kid", default=None, help="kid to put in the header")
    parser.add_argument("--scope", default=None)
    parser.add_argument(
        "--no-introspect",
        action="store_true",
        help="skip introspecting the token with the same client authentication",
    )
    args = parser.parse_args()

    try:
        import authlib
        from authlib.integrations.requests_client import OAuth2Session
        from authlib.oauth2.rfc7523 import PrivateKeyJWT
        from joserfc.jwk import ECKey, OKPKey
    except ImportError as e:
        fail(f"authlib is not installed ({e}); pip install authlib requests")
    print(f"authlib interop: Authlib {authlib.__version__}", file=sys.stderr)

    if args.key == "-":
        pem = os.environ.get("KEYWARD_INTEROP_PRIVATE_KEY", "")
        if not pem:
            fail("--key - but KEYWARD_INTEROP_PRIVATE_KEY is empty")
    else:
        with open(args.key, encoding="ascii") as f:
            pem = f.read()

    issuer = args.issuer.rstrip("/")
    token_endpoint = f"{issuer}/oauth/token"
    introspection_endpoint = f"{issuer}/oauth/introspect"

    # Authlib takes the private key where a secret would go. A PEM string is
    # read as an RSA key (its default alg is RS256); EC and OKP keys are
    # handed over as joserfc keys, as Authlib's documentation says.
    alg = args.alg
    try:
        if alg in ("ES256", "ES384"):
            key = ECKey.import_key(pem)
        elif alg in ("EdDSA", "Ed25519"):
            key = OKPKey.import_key(pem)
        else:
            key = pem
    except ValueError as e:
        fail(f"the private key cannot be read (a PKCS#8 PEM is expected): {e}")
    auth = PrivateKeyJWT(
        token_endpoint,
        headers={"kid": args.kid} if args.kid else None,
        alg=alg,
    )
    session = OAuth2Session(args.client_id, key, token_endpoint_auth_method=auth)

    try:
        token = session.fetch_token(
            token_endpoint,
            grant_type="client_credentials",
            scope=args.scope,
            timeout=30,
        )
    except Exception as e:  # authlib raises OAuthError, requests its own
        fail(f"the token request was refused: {type(e).__name__}: {e}")
    token = dict(token)
    if token.get("token_type", "").lower() != "bearer" or not token.get("access_token"):
        fail(f"not a bearer token response: {json.dumps(token)}")

    if not args.no_introspect:
        # The same client authentication at the introspection endpoint: a
        # fresh assertion (new jti), its aud still the token endpoint URL.
        response = session.introspect_token(
            introspection_endpoint,
            token=token["access_token"],
            token_type_hint="access_token",
            timeout=30,
        )
        if response.status_code != 200:
            fail(
                f"introspection answered {response.status_code}: {response.text}"
            )
        info = response.json()
        if info.get("active") is not True:
            fail(f"the token introspects as inactive: {response.text}")
        if info.get("client_id") != args.client_id:
            fail(f"the token introspects as another client's: {response.text}")
        print(
            f"authlib interop: introspection says active, client_id {info['client_id']}",
            file=sys.stderr,
        )

    print(json.dumps(token))


if __name__ == "__main__":
    main()
