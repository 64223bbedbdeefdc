// oidc-provider 9 doing the work authserver does for Backend Services, for token_issuance.py:
// one client that authenticates with private_key_jwt (RS384 assertions, its public JWK inline,
// jti replays refused by oidc-provider's own replay detection), grant client_credentials,
// opaque access tokens in the built-in in-memory adapter. One process.
//
// Env: PORT, BENCH_CLIENT_ID, BENCH_CLIENT_JWK (the client's public JWK, JSON), SCOPE.
// Must sit next to a node_modules that holds oidc-provider (../shared/bench/package.json).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const PORT = Number(process.env.PORT || 8003);
const SCOPE = process.env.SCOPE || 'system/Patient.rs';
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(`http://127.0.0.1:${PORT}`, {
  clients: [{
    client_id: process.env.BENCH_CLIENT_ID,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS384',
    jwks: { keys: [JSON.parse(process.env.BENCH_CLIENT_JWK)] },
    scope: SCOPE,
  }],
  scopes: ['openid', ...SCOPE.split(' ')],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  findAccount: async () => undefined,
  ttl: { ClientCredentials: 300 },
  // SMART's RS384 and ES384 beside the default algorithms.
  enabledJWA: { clientAuthSigningAlgValues: ['RS256', 'RS384', 'PS256', 'ES256', 'ES384', 'EdDSA'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.listen(PORT, '127.0.0.1');
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
