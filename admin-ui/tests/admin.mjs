// The admin page in headless Chromium against a real portal (issue 17, item 3): the
// `ember-portal` binary on SQLite in a temp folder serving admin-ui/dist, an admin token from
// the CLI, a service account connected over the client WebSocket API as a member of `eng`. The
// admin signs in by pasting the token, creates a resource and a policy through the page, and
// the connected client receives the resource; the page then shows the client online.
//
// Usage: node admin-ui/tests/admin.mjs --portal PATH [--page admin-ui/dist]
//        [--chromium /usr/bin/chromium] [--driver /usr/bin/chromedriver] [--artifacts DIR]
// Without Chromium it prints SKIPPED, unless EMBER_CI is set (then it fails).

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import WebSocket from "ws";

const { values: args } = parseArgs({
  options: {
    portal: { type: "string" },
    page: { type: "string", default: resolve(import.meta.dirname, "../dist") },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    driver: { type: "string", default: "/usr/bin/chromedriver" },
    artifacts: { type: "string", default: "artifacts/admin-page" },
  },
});
if (!args.portal) throw new Error("--portal is required (the ember-portal binary)");
for (const [what, path] of [["chromium", args.chromium], ["chromedriver", args.driver]]) {
  if (!existsSync(path)) {
    const why = `${what} is not at ${path} (apt-get install chromium chromium-driver)`;
    if (process.env.EMBER_CI) throw new Error(why);
    console.log(`SKIPPED: ${why}`);
    process.exit(0);
  }
}
if (!existsSync(join(args.page, "index.html"))) throw new Error(`no build in ${args.page}: run npm run build:admin`);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, probe, ms = 10000, every = 200) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    await sleep(every);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}
function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
    server.on("error", fail);
  });
}

const work = mkdtempSync(join(tmpdir(), "ember-admin-page-"));
mkdirSync(args.artifacts, { recursive: true });
const children = [];
const cleanup = () => {
  for (const child of children) child.kill("SIGTERM");
};
process.on("exit", cleanup);

// -- the portal ---------------------------------------------------------------------------------
const portalPort = await freePort();
const base = `http://127.0.0.1:${portalPort}`;
const configPath = join(work, "portal.toml");
writeFileSync(
  configPath,
  `[server]
listen = "127.0.0.1:${portalPort}"
database = "sqlite://${join(work, "portal.db")}"
change_poll_interval_ms = 100
admin_page_dir = ${JSON.stringify(resolve(args.page))}

[[accounts]]
slug = "acme"
name = "Acme"
sites = ["Berlin"]
users = [{ email = "ada@acme.example", name = "Ada" }]
groups = [{ name = "eng", members = ["ada@acme.example"] }]
gateways = [{ site = "Berlin", name = "berlin-1" }]
`,
);
const portalEnv = { ...process.env, EMBER_PORTAL_CONFIG: configPath, EMBER_LOG: "info" };
const cli = (...rest) => execFileSync(args.portal, ["admin", ...rest], { env: portalEnv, encoding: "utf8" });
const portalLog = join(args.artifacts, "portal.log");
const portal = spawn("sh", ["-c", `exec "$0" serve >"$1" 2>&1`, args.portal, portalLog], { env: portalEnv });
children.push(portal);
await until("the portal to answer", async () => (await fetch(`${base}/healthz`)).ok, 20000);

cli("user", "grant-admin", "--account", "acme", "--email", "ada@acme.example");
const adminToken = cli("token", "create-admin", "--account", "acme", "--email", "ada@acme.example").trim().split(/\s+/).pop();
if (!/^[0-9a-f]{64}$/.test(adminToken)) throw new Error("the CLI printed no admin token");

// -- a client: a service account in `eng`, connected over the client API -------------------------
async function adminApi(method, path, body) {
  const response = await fetch(`${base}/api/admin/v1/accounts/acme${path}`, {
    method,
    headers: { Authorization: `Bearer ${adminToken}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
const robot = await adminApi("POST", "/service-accounts", { name: "ci robot" });
const eng = (await adminApi("GET", "/groups")).find((g) => g.name === "eng");
await adminApi("PUT", `/groups/${eng.id}/members/${robot.service_account.id}`);

/** A WebSocket peer of the portal that says hello and collects what it receives. */
async function connect(path, token, into, hello) {
  const peer = new WebSocket(`ws://127.0.0.1:${portalPort}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  peer.on("message", (data) => into.push(JSON.parse(String(data))));
  await new Promise((ok, fail) => {
    peer.once("open", ok);
    peer.once("error", fail);
  });
  peer.send(
    JSON.stringify({ type: "hello", protocol_version: 2, public_key: "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=", version: "0.1.0", ...hello }),
  );
  // Answer heartbeats so the portal keeps the peer.
  setInterval(() => peer.readyState === WebSocket.OPEN && peer.send(JSON.stringify({ type: "heartbeat" })), 1000).unref();
  return peer;
}
const received = [];
const client = await connect("/api/client", robot.token.token, received, { device_id: "admin-page-test", name: "ci", os: "linux" });
const init = await until("the client's init", () => received.find((m) => m.type === "init"));
if (init.resources.some((r) => r.name === "Grafana")) throw new Error("the client has Grafana before the admin made it");

// -- the browser --------------------------------------------------------------------------------
const driverPort = await freePort();
const driver = spawn(args.driver, [`--port=${driverPort}`], { stdio: "ignore" });
children.push(driver);
async function wd(method, path, body) {
  const response = await fetch(`http://127.0.0.1:${driverPort}${path}`, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(`WebDriver ${method} ${path}: ${JSON.stringify(answer.value)}`);
  return answer.value;
}
await until("chromedriver", async () => (await wd("GET", "/status")).ready, 10000);
const { sessionId: session } = await wd("POST", "/session", {
  capabilities: {
    alwaysMatch: {
      browserName: "chrome",
      "goog:chromeOptions": {
        binary: args.chromium,
        args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", `--user-data-dir=${join(work, "chromium")}`],
      },
      "goog:loggingPrefs": { browser: "ALL" },
    },
  },
});
const s = (path) => `/session/${session}${path}`;
const find = async (css) => Object.values(await wd("POST", s("/element"), { using: "css selector", value: css }))[0];
const findAll = async (css) => (await wd("POST", s("/elements"), { using: "css selector", value: css })).map((e) => Object.values(e)[0]);
const textOf = async (css) => wd("GET", s(`/element/${await find(css)}/text`));
const type = async (css, text) => wd("POST", s(`/element/${await find(css)}/value`), { text });
const click = async (css) => wd("POST", s(`/element/${await find(css)}/click`), {});
async function choose(selectCss, label) {
  for (const option of await findAll(`${selectCss} option`)) {
    if ((await wd("GET", s(`/element/${option}/text`))) === label) return wd("POST", s(`/element/${option}/click`), {});
  }
  throw new Error(`no option ${label} in ${selectCss}`);
}
async function screenshot(name) {
  const png = await wd("GET", s("/screenshot"));
  writeFileSync(join(args.artifacts, `${name}.png`), Buffer.from(png, "base64"));
}

let failed = false;
async function check(name, body) {
  try {
    await body();
    console.log(`ok: ${name}`);
  } catch (e) {
    failed = true;
    console.log(`FAILED: ${name}: ${e.stack ?? e}`);
    await screenshot(`failed-${name.replace(/\W+/g, "-")}`).catch(() => {});
  }
}

try {
  await check("the page loads under its CSP and the admin signs in with a pasted token", async () => {
    await wd("POST", s("/url"), { url: `${base}/admin` });
    await until("the sign-in form", () => find("[data-testid=token]"));
    await type("[data-testid=token]", adminToken);
    await click("form.sign-in button[type=submit]");
    await until("the signed-in header", async () => (await textOf("[data-testid=signed-in-as]")).includes("ada@acme.example"));
    const url = await wd("GET", s("/url"));
    if (url.includes(adminToken)) throw new Error("the token is in the URL");
    await screenshot("1-signed-in");
  });

  await check("the client shows online and berlin-1 offline", async () => {
    await until("one device online", async () => (await textOf("main .note")).includes("Devices online: 1"));
    await click("[data-testid=nav-users]");
    await until("the robot's device online", async () => (await textOf("[data-testid='devices-ci robot']")).startsWith("dev_"));
    if ((await textOf("[data-testid='devices-Ada']")) !== "none") throw new Error("Ada shows a device she never connected");
    await click("[data-testid=nav-sites]");
    await until("berlin-1 offline", async () => (await textOf("[data-testid=gateway-berlin-1]")).includes("offline"));
    await click("[data-testid=nav-resources]");
  });

  await check("the admin creates a resource and a policy; the connected client receives the resource", async () => {
    await until("the resource form", () => find("[data-testid=resource-form] input[name=name]"));
    await choose("[data-testid=resource-form] select[name=site]", "Berlin");
    await type("[data-testid=resource-form] input[name=name]", "Grafana");
    await type("[data-testid=resource-form] input[name=address]", "grafana.corp.example");
    await type("[data-testid=resource-form] input[name=filters]", "tcp/443");
    await click("[data-testid=resource-form] button[type=submit]");
    await until("the Grafana row", async () => (await textOf("[data-testid=resource-Grafana]")).includes("tcp/443"));
    await screenshot("2-resource");

    await click("[data-testid=nav-policies]");
    await until("the policy form's resources", async () => (await findAll("[data-testid=policy-form] select[name=resource] option")).length > 1);
    await choose("[data-testid=policy-form] select[name=group]", "eng");
    await choose("[data-testid=policy-form] select[name=resource]", "Grafana");
    await click("[data-testid=policy-form] button[type=submit]");
    await until("the policy row", () => find("[data-testid=policy-eng-Grafana]"));
    await screenshot("3-policy");

    const update = await until(
      "the client to receive Grafana",
      () => received.find((m) => m.type === "resources_updated" && m.resources.some((r) => r.name === "Grafana")),
      5000,
    );
    const grafana = update.resources.find((r) => r.name === "Grafana");
    if (grafana.address?.pattern !== "grafana.corp.example" || grafana.filters?.[0]?.ports?.start !== 443) throw new Error(`the client got ${JSON.stringify(grafana)}`);
  });

  await check("a gateway comes online and the client's grant to Grafana shows on the page", async () => {
    const berlin1 = (await adminApi("GET", "/gateways")).find((g) => g.name === "berlin-1");
    const issued = await adminApi("POST", `/gateways/${berlin1.id}/tokens`, {});
    const gatewayReceived = [];
    const gateway = await connect("/api/gateway", issued.token, gatewayReceived, { name: "berlin-1" });
    await until("the gateway's init", () => gatewayReceived.find((m) => m.type === "init"));
    const grafana = received.findLast((m) => m.type === "resources_updated").resources.find((r) => r.name === "Grafana");
    client.send(JSON.stringify({ type: "request_access", request_id: 1, resource_id: grafana.id, domain: "grafana.corp.example", proxy_ips: ["100.96.0.1"] }));
    await until("the gateway to get the grant", () => gatewayReceived.find((m) => m.type === "grant")).catch((e) => {
      throw new Error(`${e.message}; the client got ${JSON.stringify(received.slice(-3))}; the gateway ${JSON.stringify(gatewayReceived.slice(-3))}`);
    });
    await click("[data-testid=nav-resources]");
    await until("the grant on Grafana's row", async () => (await textOf("[data-testid=resource-Grafana]")).includes("ci robot (service account) (dev_") && (await textOf("[data-testid=resource-Grafana]")).includes("via berlin-1"), 8000);
    await screenshot("4-grant");
    await click("[data-testid=nav-sites]");
    await until("berlin-1 online", async () => (await textOf("[data-testid=gateway-berlin-1]")).includes("online"), 8000);
    await screenshot("5-gateway-online");
    gateway.close();
  });

  await check("the browser reported no CSP violation or script error", async () => {
    const log = await wd("POST", s("/se/log"), { type: "browser" }).catch(() => []);
    const bad = log.filter((entry) => entry.level === "SEVERE" || /Content Security Policy/i.test(entry.message));
    if (bad.length) throw new Error(bad.map((e) => e.message).join("\n"));
  });

  await check("signing out forgets the token", async () => {
    await click("header button");
    await until("the sign-in form", () => find("[data-testid=token]"));
    const kept = await wd("POST", s("/execute/sync"), { script: "return sessionStorage.length", args: [] });
    if (kept !== 0) throw new Error(`sessionStorage still holds ${kept} item(s)`);
  });
} finally {
  await wd("DELETE", s("")).catch(() => {});
  client.close();
  cleanup();
  await sleep(300);
  rmSync(work, { recursive: true, force: true });
}
if (failed) {
  console.log(`admin page test FAILED (portal log and screenshots in ${args.artifacts})`);
  process.exit(1);
}
console.log("admin page test passed");
