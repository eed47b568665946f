// openid-client's stock private_key_jwt client (v6) against a running keyward.
//
// Discovers keyward from its issuer URL, fetches a client_credentials token
// with client.PrivateKeyJwt, then introspects it with the same client
// authentication (a second assertion, with its own jti), as a resource
// server using private_key_jwt would. Nothing of openid-client is patched:
// the assertion is the one it makes (iss = sub = client_id, aud = the
// issuer, exp 60 s ahead, nbf and iat now, a random jti).
//
// Prints the token response as one line of JSON on stdout; everything else
// goes to stderr. Exits non-zero, saying why, on any failure.
//
// Used by tests/api/interop.rs; by hand:
//
//   KEYWARD_INTEROP_NODE_DIR=target/interop-node \
//   node openid_client_private_key_jwt.mjs --issuer http://127.0.0.1:8080 \
//       --client-id cl_... --key key.pem [--alg PS256] [--kid k1] [--scope read]
//
// The private key is a PEM (PKCS#8) file, or "-" for the PEM in the
// environment variable KEYWARD_INTEROP_PRIVATE_KEY. Its type says the alg
// (P-256: ES256, P-384: ES384, Ed25519: Ed25519, RSA: RS256 unless --alg
// PS256). openid-client is imported from KEYWARD_INTEROP_NODE_DIR (an npm
// prefix holding node_modules/openid-client) when set, else as usual.

import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

function fail(message) {
  process.stderr.write(`openid-client interop: FAILED: ${message}\n`);
  process.exit(1);
}

// An error, its code and what caused it (openid-client puts the server's
// answer or the network error in `cause`).
function describe(e) {
  let text = `${e?.name ?? 'Error'}: ${e?.message ?? e}`;
  if (e?.code) text += ` [${e.code}]`;
  if (e?.error) text += ` error=${e.error}`;
  if (e?.error_description) text += ` error_description=${JSON.stringify(e.error_description)}`;
  if (e?.status) text += ` status=${e.status}`;
  const cause = e?.cause;
  if (cause instanceof Error) text += ` (cause: ${describe(cause)})`;
  else if (cause !== undefined) text += ` (cause: ${JSON.stringify(cause)})`;
  return text;
}

// As `describe`, with the server's answer when the error carries it (a 401
// with a WWW-Authenticate challenge keeps the body in `response`).
async function explain(e) {
  let text = describe(e);
  const response = e?.response;
  if (response && typeof response.text === 'function' && !response.bodyUsed) {
    try {
      text += ` body=${await response.text()}`;
    } catch {
      // the body was consumed already
    }
  }
  return text;
}

const { values: args } = parseArgs({
  options: {
    issuer: { type: 'string' },
    'client-id': { type: 'string' },
    key: { type: 'string' },
    alg: { type: 'string' },
    kid: { type: 'string' },
    scope: { type: 'string' },
    'no-introspect': { type: 'boolean', default: false },
  },
});
for (const name of ['issuer', 'client-id', 'key']) {
  if (!args[name]) fail(`--${name} is required`);
}

async function loadOpenidClient() {
  const dir = process.env.KEYWARD_INTEROP_NODE_DIR;
  let specifier = 'openid-client';
  if (dir) {
    // ES modules ignore NODE_PATH: resolve from the given prefix instead.
    try {
      const require = createRequire(join(resolve(dir), 'package.json'));
      specifier = pathToFileURL(require.resolve('openid-client')).href;
    } catch (e) {
      fail(`openid-client is not installed under ${dir} (npm install --prefix ${dir} openid-client@6): ${e.message}`);
    }
  }
  try {
    return await import(specifier);
  } catch (e) {
    fail(`openid-client cannot be loaded (npm install openid-client@6): ${e.message}`);
  }
}

const client = await loadOpenidClient();
const version = (() => {
  try {
    const dir = process.env.KEYWARD_INTEROP_NODE_DIR;
    const require = createRequire(join(resolve(dir ?? '.'), 'package.json'));
    return require('openid-client/package.json').version;
  } catch {
    return 'unknown';
  }
})();
process.stderr.write(`openid-client interop: openid-client ${version} on node ${process.version}\n`);

let pem;
if (args.key === '-') {
  pem = process.env.KEYWARD_INTEROP_PRIVATE_KEY;
  if (!pem) fail('--key - but KEYWARD_INTEROP_PRIVATE_KEY is empty');
} else {
  pem = readFileSync(args.key, 'ascii');
}

// The PEM as a non-extractable WebCrypto key, which is what
// client.PrivateKeyJwt takes; the key's algorithm decides the JWS alg.
async function importPrivateKey(pem, alg) {
  const keyObject = createPrivateKey(pem);
  const der = keyObject.export({ type: 'pkcs8', format: 'der' });
  let algorithm;
  switch (keyObject.asymmetricKeyType) {
    case 'ec': {
      const curve = { prime256v1: 'P-256', secp384r1: 'P-384' }[
        keyObject.asymmetricKeyDetails.namedCurve
      ];
      if (!curve) fail(`unsupported EC curve ${keyObject.asymmetricKeyDetails.namedCurve}`);
      algorithm = { name: 'ECDSA', namedCurve: curve };
      break;
    }
    case 'ed25519':
      algorithm = { name: 'Ed25519' };
      break;
    case 'rsa':
      algorithm = {
        name: alg === 'PS256' ? 'RSA-PSS' : 'RSASSA-PKCS1-v1_5',
        hash: 'SHA-256',
      };
      break;
    default:
      fail(`unsupported key type ${keyObject.asymmetricKeyType}`);
  }
  return crypto.subtle.importKey('pkcs8', der, algorithm, false, ['sign']);
}

let key;
try {
  key = await importPrivateKey(pem, args.alg);
} catch (e) {
  fail(`the private key cannot be read (a PKCS#8 PEM is expected): ${describe(e)}`);
}
const clientId = args['client-id'];

let config;
try {
  config = await client.discovery(
    new URL(args.issuer),
    clientId,
    undefined,
    client.PrivateKeyJwt(args.kid ? { key, kid: args.kid } : key),
    // The test server listens on plain http on loopback.
    { execute: [client.allowInsecureRequests], timeout: 30 },
  );
} catch (e) {
  fail(`discovery failed: ${await explain(e)}`);
}

let token;
try {
  token = await client.clientCredentialsGrant(
    config,
    args.scope ? { scope: args.scope } : {},
  );
} catch (e) {
  fail(`the token request was refused: ${await explain(e)}`);
}
if (String(token.token_type).toLowerCase() !== 'bearer' || !token.access_token) {
  fail(`not a bearer token response: ${JSON.stringify(token)}`);
}

if (!args['no-introspect']) {
  // The same client authentication at the introspection endpoint: a fresh
  // assertion (new jti) with the issuer as its audience.
  let info;
  try {
    info = await client.tokenIntrospection(config, token.access_token, {
      token_type_hint: 'access_token',
    });
  } catch (e) {
    fail(`introspection failed: ${await explain(e)}`);
  }
  if (info.active !== true) fail(`the token introspects as inactive: ${JSON.stringify(info)}`);
  if (info.client_id !== clientId) {
    fail(`the token introspects as another client's: ${JSON.stringify(info)}`);
  }
  process.stderr.write(`openid-client interop: introspection says active, client_id ${info.client_id}\n`);
}

// The response's own fields (the helper methods do not serialize).
process.stdout.write(`${JSON.stringify({ ...token })}\n`);
