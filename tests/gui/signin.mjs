// End to end in a real window (issue 6): the demo world in network namespaces (portal, relay,
// gateway, resource; `ember-e2e demo --no-sign-in`), the real tunnel service in the client
// namespace, and the real tray app as an unprivileged user with an unlocked gnome-keyring,
// driven through WebDriver. The test signs in the way a person does: the app opens the browser
// (a fake `xdg-open` records the URL), the test fetches the portal's sign-in page, posts the
// demo password, takes the `ember://` redirect and hands it to the system with `gio open`.
//
// Usage (as root): node tests/gui/signin.mjs --app PATH --service PATH --driver PATH --demo PATH
//                  [--user embertest] [--artifacts DIR]

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { checks, createHarness, sleep, until } from "./harness.mjs";
import { createDemo } from "./demo.mjs";

const { values: args } = parseArgs({
  options: {
    app: { type: "string" },
    service: { type: "string" },
    driver: { type: "string" },
    demo: { type: "string" },
    user: { type: "string", default: "embertest" },
    artifacts: { type: "string", default: "artifacts/gui-signin" },
  },
});
for (const required of ["app", "service", "driver", "demo"]) {
  if (!args[required]) throw new Error(`--${required} is required`);
}
if (process.getuid() !== 0) {
  console.log("SKIPPED: the sign-in test builds network namespaces and must run as root");
  process.exit(0);
}

const browserLog = "/tmp/ember-gui-browser.log";
const h = createHarness(args, { browserLog });
const { artifacts, uid, userEnv } = h;
const { wd, newSession, click, find, textOf, waitForText, screenshot, trayMenuLabels, appMemory } = h;
const { check, fail, finish } = checks();
const figures = {};
const appDataDir = join(userEnv.XDG_DATA_HOME, "dev.ember.client");

const demoWorld = createDemo(h, args.demo, args.service);
const { signInAtPortal, clientCurl } = demoWorld;

function filesUnder(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map((name) => join(dir, String(name)))
    .filter((path) => statSync(path).isFile());
}

function resourceBadge(session, name) {
  return until(`the row of ${name}`, async () => {
    const rows = await wd("POST", `/session/${session}/elements`, { using: "css selector", value: "table.resources tbody tr" });
    for (const row of rows) {
      const id = Object.values(row)[0];
      const text = await wd("GET", `/session/${session}/element/${id}/text`);
      if (text.includes(name)) return text;
    }
    return null;
  }, 20000);
}

try {
  const world = await demoWorld.start();
  console.log(`demo: portal ${world.portal}, client namespace ${world.clientNs}`);
  await h.startDesktop({ keyring: true });
  let session = null;
  let token = null;

  await check("a person signs in from the window through the browser and the deep link", async () => {
    session = await newSession();
    await waitForText(session, "[data-testid=session-state]", "Signed out", 60000);
    await screenshot(session, "1-signed-out");
    await click(session, ".session button.primary");
    const opened = await until("the browser to be opened", () => readFileSync(browserLog, "utf8").trim().split("\n").filter(Boolean).pop(), 10000);
    if (!opened.startsWith(`${world.portal}/sign-in?as=client&state=`)) throw new Error(`opened ${opened}`);
    // The browser's command line (readable by every local user) carries only the PKCE challenge.
    if (!/[?&]challenge=[A-Za-z0-9_-]{43}(&|$)/.test(opened) || /nonce=|verifier=/.test(opened)) throw new Error(`opened ${opened}`);
    await waitForText(session, "[data-testid=session-state]", "Waiting for the browser", 5000);
    await until("the tray to show the step", () => trayMenuLabels().includes("Waiting for the browser…"), 5000);
    await screenshot(session, "2-waiting-for-browser");

    // A forged link with another state changes nothing.
    const callback = signInAtPortal(opened, world);
    const forged = callback.replace(/state=[0-9a-f]{64}/, `state=${"0".repeat(64)}`);
    h.asUser("gio", ["open", forged]);
    await sleep(1500);
    if (!(await textOf(session, "[data-testid=session-state]")).includes("Waiting for the browser")) throw new Error("a forged link changed the state");

    const started = Date.now();
    h.asUser("gio", ["open", callback]);
    await waitForText(session, "[data-testid=session-state]", "Signed in as", 30000);
    figures.signInMs = Date.now() - started;
    await until("the notification", () => readFileSync(join(artifacts, "notifications.log"), "utf8").includes("Connected"), 10000);
    await screenshot(session, "3-signed-in");
  });

  await check("the token is in the keyring with its portal, and nowhere on disk or in the logs", async () => {
    const kept = JSON.parse(h.asUser("secret-tool", ["lookup", "service", "dev.ember.client", "username", "portal-token"]).trim() || "{}");
    token = kept.token;
    if (!/^[0-9a-f]{64}$/.test(token ?? "")) throw new Error("the keyring holds no token");
    if (kept.portal_url !== world.portal) throw new Error(`the token is kept for ${kept.portal_url}, not ${world.portal}`);
    const places = [...filesUnder(h.home), ...filesUnder(h.runtimeDir), ...filesUnder(join(h.work, "log"))];
    if (world.logDir) places.push(...filesUnder(world.logDir));
    const leaks = places.filter((path) => !path.includes("keyrings") && readFileSync(path).includes(token));
    if (leaks.length) throw new Error(`the token is written in ${leaks.join(", ")}`);
  });

  await check("the resources appear; using one turns it active, then idle, in the window and the tray", async () => {
    await resourceBadge(session, "Web");
    const page = clientCurl(world, "http://web.corp.example/");
    if (!page.includes("ember")) throw new Error(`unexpected page: ${page}`);
    const active = await until("Web to be active", async () => {
      const row = await resourceBadge(session, "Web");
      return row.includes("Active") && row;
    }, 10000);
    console.log(`row: ${active.replace(/\n/g, " | ")}`);
    await until("the tray to list it active", () => trayMenuLabels().some((l) => l.startsWith("Web — active")), 5000);
    await screenshot(session, "4-active");
    await until("Web to turn idle", async () => (await resourceBadge(session, "Web")).includes("Idle"), 60000, 500);
    await until("the tray to list it idle", () => trayMenuLabels().some((l) => l.startsWith("Web — idle")), 5000);
    await screenshot(session, "5-idle");
    await sleep(2000);
    figures.rssSignedIn = appMemory();
  });

  await check("the internet resource is switched in the window; the service and the tray follow", async () => {
    const internetEnabled = () => h.serviceStatus().resources.find((r) => r.name === "Internet")?.enabled;
    const trayChecked = () => h.trayItemProperties("Send all traffic through Ember")?.match(/'toggle-state': <(\d+)>/)?.[1];
    if (internetEnabled() !== false) throw new Error(`the internet resource is not offered switched off: ${internetEnabled()}`);
    if (trayChecked() !== "0") throw new Error(`the tray's switch: ${h.trayItemProperties("Send all traffic through Ember")}`);
    await click(session, "[data-testid=internet-switch]");
    await until("the service to switch it on", () => internetEnabled() === true, 10000);
    await until("the tray to tick it", () => trayChecked() === "1", 5000);
    await screenshot(session, "5b-internet-on");
    h.trayClick("Send all traffic through Ember");
    await until("the service to switch it off from the tray", () => internetEnabled() === false, 10000);
    await until("the window to follow", async () => !(await wd("GET", `/session/${session}/element/${await find(session, "[data-testid=internet-switch]")}/selected`)), 5000);
  });

  await check("signing out empties the list, forgets the token and cuts the resource off", async () => {
    await click(session, ".session button");
    await waitForText(session, "[data-testid=session-state]", "Signed out", 15000);
    await until("the empty list", async () => (await find(session, "[data-testid=resources-empty]")) !== undefined, 10000);
    let kept = "";
    try {
      kept = h.asUser("secret-tool", ["lookup", "service", "dev.ember.client", "username", "portal-token"]).trim();
    } catch {
      kept = "";
    }
    if (kept) throw new Error("the token is still in the keyring");
    let reached = true;
    try {
      clientCurl(world, "http://10.20.0.10/");
    } catch {
      reached = false;
    }
    if (reached) throw new Error("the resource is still reachable after sign-out");
    await screenshot(session, "6-signed-out");
  });
  if (session) await wd("DELETE", `/session/${session}`).catch(() => {});
} catch (e) {
  fail("setup", e);
} finally {
  await h.cleanup();
  await demoWorld.stop();
  execFileSync("sh", ["-c", `pkill -u ${uid} -f gnome-keyring-daemon || true`]);
}

if (figures.signInMs !== undefined) console.log(`figure: deep link → signed in shown after ${figures.signInMs} ms`);
if (figures.rssSignedIn) {
  const { app, webkit } = figures.rssSignedIn;
  console.log(`figure: app RSS idle after sign-in ${(app / 1024).toFixed(1)} MiB (ember process), ${((app + webkit) / 1024).toFixed(1)} MiB with its WebKit processes`);
}
finish("gui sign-in", artifacts);
