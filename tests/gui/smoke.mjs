// GUI smoke test: the real tunnel service (as root) and the real tray app (as an unprivileged
// member of the `ember` group) under Xvfb with a D-Bus session and a StatusNotifier watcher,
// driven through WebDriver (tauri-driver + WebKitWebDriver).
//
// Usage (as root): node tests/gui/smoke.mjs --app PATH --service PATH --driver PATH
//                  [--user embertest] [--artifacts DIR]
// Prints figures (reaction times, RSS) and ends with "N passed, N failed".

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { checks, createHarness, sleep, until } from "./harness.mjs";

const { values: args } = parseArgs({
  options: {
    app: { type: "string" },
    service: { type: "string" },
    driver: { type: "string" },
    user: { type: "string", default: "embertest" },
    artifacts: { type: "string", default: "artifacts/gui" },
  },
});
for (const required of ["app", "service", "driver"]) {
  if (!args[required]) throw new Error(`--${required} is required`);
}
if (process.getuid() !== 0) {
  console.log("SKIPPED: the GUI smoke test starts the tunnel service and must run as root");
  process.exit(0);
}

const h = createHarness(args);
const { artifacts, uid, userEnv } = h;
const { wd, newSession, find, click, waitForText, screenshot, trayMenuLabels, appMemory, serviceStatus, startService, stop } = h;
const { check, fail, finish } = checks();
const figures = {};

try {
  await h.startDesktop();
  await startService();
  let session = null;

  await check("the window shows the service's state", async () => {
    session = await newSession();
    await waitForText(session, "[data-testid=session-state]", "Signed out", 60000);
    const state = serviceStatus();
    if (state.session.state !== "signed_out") throw new Error(`service says ${state.session.state}`);
    await screenshot(session, "1-signed-out");
    await sleep(2000);
    figures.rssAfterStart = appMemory();
  });

  await check("the tray icon is registered and its menu follows the state", async () => {
    const labels = await until("a tray menu with the signed-out line", () => {
      const labels = trayMenuLabels();
      return labels.includes("Signed out") && labels;
    }, 10000);
    for (const expected of ["Sign in…", "Open Ember", "Settings", "Quit Ember"]) {
      if (!labels.includes(expected)) throw new Error(`menu lacks "${expected}": ${labels}`);
    }
  });

  await check("an ember:// link reaches the running app, which logs it without its secrets", async () => {
    // The app registered itself as the handler at start; a second instance forwards the link.
    const link = "ember://sign-in-callback?state=forged&code=very-secret-code&actor=x&account=y";
    h.asUser("gio", ["open", link]);
    const logDir = join(userEnv.XDG_DATA_HOME, "dev.ember.client", "logs");
    const appLog = () => execFileSync("sh", ["-c", `cat "${logDir}"/app*.log`]).toString();
    await until("the app to log the link", () => appLog().includes("Ignoring a deep link: no sign-in is pending"), 15000);
    if (appLog().includes("very-secret-code")) throw new Error("the app logged the link's secret");
  });

  await check("a group member sees the machine's settings read-only, with who may change them", async () => {
    await click(session, "[data-testid=nav-settings]");
    await waitForText(session, "#settings-admin-only", "Only an administrator can change them", 10000);
    const url = await find(session, "#portal-url");
    const readOnly = await wd("GET", `/session/${session}/element/${url}/attribute/readonly`);
    if (readOnly === null) throw new Error("the portal URL field is editable");
    const filter = await find(session, "#log-filter");
    if (await wd("GET", `/session/${session}/element/${filter}/enabled`)) throw new Error("the log level is editable");
    const saves = await wd("POST", `/session/${session}/elements`, { using: "css selector", value: "form.settings button[type=submit]" });
    if (saves.length !== 0) throw new Error("a Save button is shown");
    const state = serviceStatus();
    if (state.settings.log_filter !== "info") throw new Error(`service has ${state.settings.log_filter}`);
    await screenshot(session, "2-settings-read-only");
    await click(session, "[data-testid=nav-resources]");
  });

  await check("a killed service is noticed (window, tray, notification) and its restart picked up within 2 s", async () => {
    let t0 = Date.now();
    await stop(h.service, "SIGKILL");
    await waitForText(session, "[data-testid=service-not-running]", "Tunnel service is not running", 10000);
    figures.killNoticedMs = Date.now() - t0;
    await until("the tray to say so", () => trayMenuLabels().includes("Tunnel service is not running"), 5000);
    await until("a notification", () => readFileSync(join(artifacts, "notifications.log"), "utf8").includes("The tunnel service stopped"), 5000);
    await screenshot(session, "3-service-killed");
    t0 = Date.now();
    await startService();
    await waitForText(session, "[data-testid=session-state]", "Signed out", 10000);
    figures.restartNoticedMs = Date.now() - t0;
    for (const [what, ms] of [["kill", figures.killNoticedMs], ["restart", figures.restartNoticedMs]]) {
      if (ms > 2000) throw new Error(`${what} took ${ms} ms to show`);
    }
  });

  if (session) await wd("DELETE", `/session/${session}`).catch(() => {});
  await until("the app to exit", () => execFileSync("sh", ["-c", `pgrep -u ${uid} -x ember || true`]).toString().trim() === "", 10000);

  await check("started without a service, the app says so and recovers when it starts", async () => {
    await stop(h.service, "SIGTERM");
    if (h.service.exitCode !== 0) throw new Error(`the service exited with ${h.service.exitCode} on SIGTERM`);
    session = await newSession();
    await waitForText(session, "[data-testid=service-not-running]", "Tunnel service is not running", 60000);
    await screenshot(session, "4-not-running");
    await startService();
    await waitForText(session, "[data-testid=session-state]", "Signed out", 10000);
    await wd("DELETE", `/session/${session}`).catch(() => {});
  });
} catch (e) {
  fail("setup", e);
} finally {
  await h.cleanup();
}

if (figures.rssAfterStart) {
  const { app, webkit } = figures.rssAfterStart;
  console.log(`figure: app RSS after start ${(app / 1024).toFixed(1)} MiB (ember process), ${((app + webkit) / 1024).toFixed(1)} MiB with its WebKit processes`);
}
if (figures.killNoticedMs !== undefined) console.log(`figure: service kill shown after ${figures.killNoticedMs} ms`);
if (figures.restartNoticedMs !== undefined) console.log(`figure: service restart shown after ${figures.restartNoticedMs} ms (includes service start-up)`);
finish("gui", artifacts);
