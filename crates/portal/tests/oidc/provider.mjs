// A real OpenID Connect provider (the certified `oidc-provider` package) for the portal's OIDC
// sign-in test. Usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
// Accounts: any login is accepted as an account whose email is the login (verified).
// Prints "ready" on stdout once listening.
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  scopes: ['openid', 'email', 'profile'],
  features: { devInteractions: { enabled: false } },
  cookies: { keys: ['ember-test-cookie-key'] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, email: sub, email_verified: true, name: `OIDC ${sub}` };
      },
    };
  },
  // A first-party client: consent is implied, so only the login step is shown.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
});

// The login page: a form with one field; posting it finishes the login interaction.
provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = `<!doctype html><html lang="en"><body><form method="post" action="/interaction/${details.uid}">` +
      `<label for="login">Login</label><input id="login" name="login"><button>Sign in</button></form></body></html>`;
    return;
  }
  let raw = '';
  for await (const chunk of ctx.req) raw += chunk;
  const login = new URLSearchParams(raw).get('login');
  if (!login) {
    ctx.status = 400;
    ctx.body = 'login required';
    return;
  }
  const target = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(target);
});

provider.listen(Number(port), '127.0.0.1', () => {
  console.log('ready');
});
