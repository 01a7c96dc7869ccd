// Token checks at the edge: the gateway verifies an API request's bearer token before the request
// reaches a service, so a forged, expired or misdirected token costs a service nothing. The
// services verify every token again (defence in depth); this is the outer wall, not the only one.
//
// A location hands its request to `authorize` (js_content) with these variables set:
//   $edge_audience  the `aud` the token must carry (the service's client id)
//   $edge_upstream  the named location that proxies to the service once the token is good
//   $edge_session   "allow" when a browser session cookie may stand in for a token (the web
//                   apps' backend-for-frontend checks the session; the cookie is opaque here)
// and $edge_issuer (http level) naming the realm. On success the request is redirected to
// $edge_upstream with $edge_user set to "sub:<subject>" or "session:<cookie>", the key of the
// per-user rate limit there. On failure the answer is a 401 problem document.
//
// nginx applies limit_req once per request, in the first location that has it: so the locations
// that call `authorize` have none, and both outcomes are redirected to named locations that do.
//
// njs 0.7.9 (Debian 12) has WebCrypto without the "jwk" key format, so the realm's RSA keys are
// turned into SubjectPublicKeyInfo DER here, from their modulus and exponent.

const LEEWAY_S = 5;
// A token is a few kilobytes at most; anything longer is refused before any parsing.
const MAX_TOKEN_BYTES = 8192;
const SESSION_COOKIE = '__Host-paytool-session';
const PROBLEM_TYPE = 'https://paytool.local.test/problems/unauthorized';

// Refusals go through @unauthorized, which rate-limits them per address before `refuse` answers:
// limit_req runs once per request and only after the redirect, never in the first location.
function problem(r, detail) {
    r.variables.edge_failure = detail;
    r.internalRedirect('@unauthorized');
}

function refuse(r) {
    r.headersOut['Content-Type'] = 'application/problem+json';
    r.headersOut['WWW-Authenticate'] = 'Bearer error="invalid_token"';
    r.headersOut['Cache-Control'] = 'no-store';
    r.return(401, JSON.stringify({
        type: PROBLEM_TYPE,
        title: 'Unauthorized',
        status: 401,
        detail: r.variables.edge_failure || 'This API needs a bearer token.',
    }) + '\n');
}

function derLength(length) {
    if (length < 0x80) {
        return [length];
    }
    const bytes = [];
    while (length > 0) {
        bytes.unshift(length & 0xff);
        length = length >> 8;
    }
    return [0x80 | bytes.length].concat(bytes);
}

function der(tag, content) {
    return [tag].concat(derLength(content.length), content);
}

function derInteger(bytes) {
    // DER integers are signed: a leading bit of one needs a zero byte in front.
    const content = bytes[0] & 0x80 ? [0].concat(bytes) : bytes;
    return der(0x02, content);
}

// SubjectPublicKeyInfo for an RSA key: SEQUENCE { SEQUENCE { rsaEncryption, NULL },
// BIT STRING { SEQUENCE { INTEGER n, INTEGER e } } }.
function rsaSpki(n, e) {
    const rsaEncryption = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const algorithm = der(0x30, rsaEncryption.concat([0x05, 0x00]));
    const key = der(0x30, derInteger(n).concat(derInteger(e)));
    const bitString = der(0x03, [0x00].concat(key));
    return new Uint8Array(der(0x30, algorithm.concat(bitString)));
}

function bytesOf(base64url) {
    // njs 0.7.9 has no Array.from.
    const buffer = Buffer.from(base64url, 'base64url');
    const bytes = [];
    for (let i = 0; i < buffer.length; i++) {
        bytes.push(buffer[i]);
    }
    return bytes;
}

function jsonOf(base64url) {
    try {
        const value = JSON.parse(Buffer.from(base64url, 'base64url').toString());
        return typeof value === 'object' && value !== null ? value : null;
    } catch (e) {
        return null;
    }
}

async function realmKey(r, kid) {
    // The realm's keys come through a cached internal location (5 minutes); an unknown `kid`
    // (the realm rotated its keys) is looked up once more through a cache of 10 seconds, so that
    // tokens with made-up key ids cannot make the gateway hammer Keycloak.
    const sources = ['/_edge/jwks', '/_edge/jwks-fresh'];
    for (let i = 0; i < sources.length; i++) {
        const reply = await r.subrequest(sources[i], { method: 'GET' });
        if (reply.status !== 200) {
            continue;
        }
        let jwks;
        try {
            jwks = JSON.parse(reply.responseText);
        } catch (e) {
            continue;
        }
        const keys = Array.isArray(jwks.keys) ? jwks.keys : [];
        const jwk = keys.find((k) => k.kid === kid && k.kty === 'RSA' && k.use !== 'enc');
        if (jwk) {
            return jwk;
        }
    }
    return null;
}

function audienceMatches(aud, wanted) {
    return Array.isArray(aud) ? aud.indexOf(wanted) >= 0 : aud === wanted;
}

function sessionCookie(r) {
    const header = r.headersIn.Cookie || '';
    const parts = header.split(';');
    for (let i = 0; i < parts.length; i++) {
        const part = parts[i].trim();
        if (part.startsWith(SESSION_COOKIE + '=')) {
            return part.slice(SESSION_COOKIE.length + 1);
        }
    }
    return '';
}

// Returns null when the token is good (and sets $edge_user), otherwise why it is not.
async function check(r, token) {
    if (token.length > MAX_TOKEN_BYTES) {
        return 'The bearer token is too long.';
    }
    const parts = token.split('.');
    if (parts.length !== 3) {
        return 'The bearer token is not a signed JWT.';
    }
    const header = jsonOf(parts[0]);
    const claims = jsonOf(parts[1]);
    if (!header || !claims) {
        return 'The bearer token does not decode.';
    }
    // Only the realm's algorithm: `none` and HMAC (a public key used as a secret) never pass.
    if (header.alg !== 'RS256') {
        return 'The bearer token is not signed with RS256.';
    }
    if (typeof header.kid !== 'string') {
        return 'The bearer token names no signing key.';
    }
    const jwk = await realmKey(r, header.kid);
    if (!jwk) {
        return 'The bearer token is signed by a key this realm does not have.';
    }
    const modulus = bytesOf(jwk.n);
    const signature = Buffer.from(parts[2], 'base64url');
    // RS256 signatures are exactly as long as the modulus; checked here so that OpenSSL is not
    // asked (njs 0.7.9 leaves its error queue behind, which nginx then logs as an alert).
    if (signature.length !== modulus.length - (modulus[0] === 0 ? 1 : 0)) {
        return 'The bearer token\'s signature does not verify.';
    }
    const key = await crypto.subtle.importKey(
        'spki',
        rsaSpki(modulus, bytesOf(jwk.e)),
        { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
        false,
        ['verify'],
    );
    const signed = Buffer.from(parts[0] + '.' + parts[1]);
    const good = await crypto.subtle.verify('RSASSA-PKCS1-v1_5', key, signature, signed);
    if (!good) {
        return 'The bearer token\'s signature does not verify.';
    }
    const now_s = Math.floor(Date.now() / 1000);
    if (claims.iss !== r.variables.edge_issuer) {
        return 'The bearer token was issued by another realm.';
    }
    if (!audienceMatches(claims.aud, r.variables.edge_audience)) {
        return 'The bearer token is not meant for this API.';
    }
    if (typeof claims.exp !== 'number' || claims.exp + LEEWAY_S < now_s) {
        return 'The bearer token has expired.';
    }
    if (typeof claims.nbf === 'number' && claims.nbf - LEEWAY_S > now_s) {
        return 'The bearer token is not valid yet.';
    }
    if (typeof claims.sub !== 'string' || claims.sub.length === 0) {
        return 'The bearer token names no subject.';
    }
    r.variables.edge_user = 'sub:' + claims.sub;
    return null;
}

async function authorize(r) {
    const authorization = r.headersIn.Authorization;
    if (!authorization) {
        const session = r.variables.edge_session === 'allow' ? sessionCookie(r) : '';
        if (!session) {
            problem(r, 'This API needs a bearer token (Authorization: Bearer ...).');
            return;
        }
        r.variables.edge_user = 'session:' + session;
        r.internalRedirect(r.variables.edge_upstream);
        return;
    }
    const match = /^Bearer ([A-Za-z0-9_.~+\/=-]+)$/.exec(authorization);
    if (!match) {
        problem(r, 'The Authorization header is not a bearer token.');
        return;
    }
    let failure;
    try {
        failure = await check(r, match[1]);
    } catch (e) {
        // A malformed key or signature is an invalid token, not a gateway fault.
        r.warn('edge: token check failed: ' + e);
        failure = 'The bearer token does not verify.';
    }
    if (failure) {
        problem(r, failure);
        return;
    }
    r.internalRedirect(r.variables.edge_upstream);
}

// The delivery servers (git.local.test, ci.local.test), through auth_request: nothing there is
// anonymous. It takes the installation's Basic credentials for that server (the user in
// $basic_user, the SHA-256 of the password in $basic_password_sha256, so that the configuration
// never holds the password), or a token of the realm meant for that server ($edge_audience), as
// a bearer token or as the Basic password under any user name (git's credential helpers store
// passwords, not headers). Answers 204 with the authenticated name in X-Paytool-User (the git
// server's REMOTE_USER, which lets a push in; the CI server's user), or 401, which the
// location's error page turns into a request for Basic credentials.
async function authorizeBasic(r) {
    const authorization = r.headersIn.Authorization || '';
    let token = null;
    let name = null;
    const bearer = /^Bearer ([A-Za-z0-9_.~+\/=-]+)$/.exec(authorization);
    const basic = /^Basic ([A-Za-z0-9+\/=]+)$/i.exec(authorization);
    if (bearer) {
        token = bearer[1];
    } else if (basic && basic[1].length <= MAX_TOKEN_BYTES * 2) {
        const pair = Buffer.from(basic[1], 'base64').toString();
        const colon = pair.indexOf(':');
        const user = colon > 0 ? pair.slice(0, colon) : '';
        const password = colon > 0 ? pair.slice(colon + 1) : '';
        if (password.split('.').length === 3) {
            token = password;
        } else if (user === r.variables.basic_user && password.length > 0) {
            const digest = require('crypto').createHash('sha256').update(password).digest('hex');
            if (digest === r.variables.basic_password_sha256) {
                name = user;
            }
        }
    }
    if (token) {
        let failure;
        try {
            failure = await check(r, token);
        } catch (e) {
            failure = 'The token does not verify.';
        }
        if (!failure) {
            const claims = jsonOf(token.split('.')[1]);
            name = claims.preferred_username || claims.azp || claims.sub;
        } else {
            r.warn('delivery: token refused: ' + failure);
        }
    }
    if (!name) {
        // The location's error page answers, asking for Basic credentials.
        r.return(401);
        return;
    }
    r.headersOut['X-Paytool-User'] = name;
    r.return(204);
}

// The gateway's span in the request's W3C trace. A client's valid `traceparent` is continued (its
// span becomes the gateway span's parent); otherwise the request id (32 random hex digits)
// starts a new trace. The gateway's span id is taken from the request id too, so these variables
// agree with one another however often nginx evaluates them.
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function incomingTrace(r) {
    const match = TRACEPARENT.exec(r.headersIn.traceparent || '');
    if (!match || /^0+$/.test(match[1]) || /^0+$/.test(match[2])) {
        return null;
    }
    return { traceId: match[1], parentSpanId: match[2], flags: match[3] };
}

// Whether the trace is sampled ('01') or not ('00'), for the services (which follow it) and the
// agent (which sends on the gateway's spans of sampled traces, and of failed requests). A
// caller's valid traceparent decides for its trace; a new trace is sampled when its id's first
// 32 bits fall in the installation's share ($edge_sample_percent), so the same id is always
// decided the same way.
function traceFlags(r) {
    const incoming = incomingTrace(r);
    if (incoming) {
        return (parseInt(incoming.flags, 16) & 1) ? '01' : '00';
    }
    const percent = Number(r.variables.edge_sample_percent || '100');
    const draw = parseInt(r.variables.request_id.slice(0, 8), 16) / 4294967296;
    return draw * 100 < percent ? '01' : '00';
}

function traceId(r) {
    const incoming = incomingTrace(r);
    return incoming ? incoming.traceId : r.variables.request_id;
}

function spanId(r) {
    const id = r.variables.request_id;
    return incomingTrace(r) ? id.slice(0, 16) : id.slice(16, 32);
}

function parentSpanId(r) {
    const incoming = incomingTrace(r);
    return incoming ? incoming.parentSpanId : '';
}

// For the access log: a token's subject, or just "session" (the cookie itself is a secret).
function userKind(r) {
    const user = r.variables.edge_user || '';
    return user.startsWith('session:') ? 'session' : user;
}

export default { authorize, authorizeBasic, refuse, traceId, spanId, parentSpanId, traceFlags, userKind };
