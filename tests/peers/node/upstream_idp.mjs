// An upstream OpenID provider for broker-mode tests: the real `oidc-provider` (panva) from npm.
//
// Environment: PORT (listen on 127.0.0.1:PORT; the issuer is http://127.0.0.1:PORT),
// CLIENT_ID, CLIENT_SECRET, REDIRECT_URI (the gateway's callback), ACCOUNT_ID (who "logs in").
// Interactions are answered without a UI: the login prompt logs ACCOUNT_ID in and the consent
// prompt grants the requested scopes, except for the client "deny-client", which gets
// error=access_denied. Prints "ready <issuer>" on stdout once listening.
import http from "node:http";
import Provider from "oidc-provider";

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const accountId = process.env.ACCOUNT_ID || "alice";
const redirect = process.env.REDIRECT_URI;

const client = (id) => ({
  client_id: id,
  client_secret: process.env.CLIENT_SECRET,
  redirect_uris: [redirect],
  grant_types: ["authorization_code"],
  response_types: ["code"],
  token_endpoint_auth_method: "client_secret_basic",
  id_token_signed_response_alg: "RS256",
});

const provider = new Provider(issuer, {
  clients: [client(process.env.CLIENT_ID), client("deny-client")],
  cookies: { keys: ["peer-test-cookie-key"] },
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => true },
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["preferred_username", "name"],
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: `${id}@upstream.example`,
          email_verified: true,
          preferred_username: id,
          name: `Test ${id}`,
        };
      },
    };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith("/interaction/")) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  let result;
  if (details.params.client_id === "deny-client") {
    result = { error: "access_denied", error_description: "refused by the test IdP" };
  } else if (details.prompt.name === "login") {
    result = { login: { accountId } };
  } else {
    const grant = new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
});

http.createServer(provider.callback()).listen(port, "127.0.0.1", () => {
  process.stdout.write(`ready ${issuer}\n`);
});
