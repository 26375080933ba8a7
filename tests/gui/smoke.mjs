// GUI smoke test: the real tunnel service (as root) and the real tray app (as an unprivileged
// member of the `ember` group) under Xvfb with a D-Bus session and a StatusNotifier watcher,
// driven through WebDriver (tauri-driver + WebKitWebDriver).
//
// Usage (as root): node tests/gui/smoke.mjs --app PATH --service PATH --driver PATH
//                  [--user embertest] [--artifacts DIR]
// Prints figures (reaction times, RSS) and ends with "N passed, N failed".

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, chmodSync, chownSync, writeFileSync, readFileSync, existsSync, rmSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

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

const artifacts = resolve(args.artifacts);
mkdirSync(artifacts, { recursive: true });
const uid = Number(execFileSync("id", ["-u", args.user]).toString().trim());
const gid = Number(execFileSync("id", ["-g", args.user]).toString().trim());
const work = mkdtempSync(join(tmpdir(), "ember-gui-"));
chmodSync(work, 0o755);
const home = join(work, "home");
const runtimeDir = join(work, "run"); // the service's socket folder
for (const dir of [home, join(home, "run"), join(home, "data"), join(home, "config"), join(home, "cache")]) {
  mkdirSync(dir, { recursive: true });
  chownSync(dir, uid, gid);
}
chmodSync(join(home, "run"), 0o700);
const socket = join(runtimeDir, "tunnel.sock");
const display = `:${90 + (process.pid % 9)}`;
const driverPort = 4444 + (process.pid % 50) * 2;
const busAddress = `unix:path=${join(home, "run", "bus")}`;

// The environment of everything that runs as the desktop user.
const userEnv = {
  PATH: "/usr/local/bin:/usr/bin:/bin",
  HOME: home,
  XDG_DATA_HOME: join(home, "data"),
  XDG_CONFIG_HOME: join(home, "config"),
  XDG_CACHE_HOME: join(home, "cache"),
  XDG_RUNTIME_DIR: join(home, "run"),
  DISPLAY: display,
  DBUS_SESSION_BUS_ADDRESS: busAddress,
  EMBER_TUNNEL_SOCKET: socket,
  EMBER_LOG: "debug",
  NO_AT_BRIDGE: "1",
  LANG: "C.UTF-8",
};

const children = [];
function start(name, command, argv, { asUser = true, env = userEnv } = {}) {
  const out = openLog(join(artifacts, `${name}.log`));
  const [cmd, cmdArgs] = asUser
    ? ["setpriv", [`--reuid=${uid}`, `--regid=${gid}`, "--init-groups", "env", "-i", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), command, ...argv]]
    : [command, argv];
  const child = spawn(cmd, cmdArgs, { stdio: ["ignore", out, out], detached: true, env: asUser ? {} : env });
  child.name = name;
  children.push(child);
  return child;
}
function openLog(path) {
  return openSync(path, "w");
}
function stop(child, signal = "SIGTERM") {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise((done) => child.once("exit", done));
  try {
    process.kill(-child.pid, signal);
  } catch {
    return Promise.resolve();
  }
  return exited;
}
async function cleanup() {
  for (const child of children.reverse()) await stop(child, "SIGKILL");
  rmSync(work, { recursive: true, force: true });
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
async function until(what, probe, timeoutMs = 30000, everyMs = 50) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await sleep(everyMs);
  }
}

// --- the tunnel service -------------------------------------------------------------------
let service = null;
async function startService() {
  service = start("service", args.service, [
    "run",
    "--runtime-dir", runtimeDir,
    "--state-dir", join(work, "state"),
    "--log-dir", join(work, "log"),
  ], { asUser: false, env: { PATH: process.env.PATH, EMBER_LOG: "debug" } });
  await until("the service socket", () => existsSync(socket), 10000);
}
function serviceStatus() {
  return JSON.parse(execFileSync(args.service, ["status", "--socket", socket]).toString());
}

// --- WebDriver over plain HTTP ------------------------------------------------------------
const ELEMENT = "element-6066-11e4-a52f-4a5c1b9e2bf7";
async function wd(method, path, body) {
  const response = await fetch(`http://127.0.0.1:${driverPort}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value)}`);
  return json.value;
}
async function newSession() {
  const value = await wd("POST", "/session", {
    capabilities: { alwaysMatch: { "tauri:options": { application: resolve(args.app) } } },
  });
  return value.sessionId;
}
async function find(session, css) {
  const element = await wd("POST", `/session/${session}/element`, { using: "css selector", value: css });
  return element[ELEMENT] ?? element.ELEMENT ?? Object.values(element)[0];
}
async function textOf(session, css) {
  return wd("GET", `/session/${session}/element/${await find(session, css)}/text`);
}
async function click(session, css) {
  await wd("POST", `/session/${session}/element/${await find(session, css)}/click`, {});
}
async function waitForText(session, css, expected, timeoutMs) {
  return until(`"${expected}" in ${css}`, async () => (await textOf(session, css)).includes(expected), timeoutMs);
}
async function screenshot(session, name) {
  // WebKit paints asynchronously under Xvfb; give the last change a moment to reach the screen.
  await sleep(500);
  writeFileSync(join(artifacts, `${name}.png`), Buffer.from(await wd("GET", `/session/${session}/screenshot`), "base64"));
  // The whole X screen too: the window as a person would see it.
  execFileSync("import", ["-display", display, "-window", "root", join(artifacts, `${name}-screen.png`)]);
}

// --- the tray, over D-Bus -----------------------------------------------------------------
function gdbus(...argv) {
  return execFileSync("setpriv", [`--reuid=${uid}`, `--regid=${gid}`, "--init-groups", "env", "-i",
    ...Object.entries(userEnv).map(([k, v]) => `${k}=${v}`), "gdbus", "call", "--session", ...argv]).toString();
}
function registeredTrayItems() {
  const reply = gdbus("--dest", "org.kde.StatusNotifierWatcher", "--object-path", "/StatusNotifierWatcher",
    "--method", "org.freedesktop.DBus.Properties.Get", "org.kde.StatusNotifierWatcher", "RegisteredStatusNotifierItems");
  return [...reply.matchAll(/'([^']+)'/g)].map((m) => m[1]);
}
function trayMenuLabels() {
  const [item] = registeredTrayItems();
  if (!item) return [];
  // An entry is either "bus-name" (item at /StatusNotifierItem) or "bus-name/object/path".
  const slash = item.indexOf("/");
  const bus = slash < 0 ? item : item.slice(0, slash);
  const path = slash < 0 ? findItemPath(bus) : item.slice(slash);
  const menuReply = gdbus("--dest", bus, "--object-path", path, "--method", "org.freedesktop.DBus.Properties.Get",
    "org.kde.StatusNotifierItem", "Menu");
  const menuPath = menuReply.match(/objectpath '([^']+)'/)[1];
  const layout = gdbus("--dest", bus, "--object-path", menuPath, "--method", "com.canonical.dbusmenu.GetLayout", "--", "0", "-1", "['label']");
  return [...layout.matchAll(/'label': <'([^']*)'>/g)].map((m) => m[1]);
}
function findItemPath(bus) {
  const tree = execFileSync("setpriv", [`--reuid=${uid}`, `--regid=${gid}`, "--init-groups", "env", "-i",
    ...Object.entries(userEnv).map(([k, v]) => `${k}=${v}`), "gdbus", "introspect", "--session", "--dest", bus, "--object-path", "/", "--recurse"]).toString();
  let current = null;
  for (const line of tree.split("\n")) {
    const node = line.match(/^\s*node (\S+)/);
    if (node) current = node[1];
    if (line.includes("interface org.kde.StatusNotifierItem")) return current;
  }
  return "/StatusNotifierItem";
}

// --- memory -------------------------------------------------------------------------------
function rssKiB(pid) {
  const match = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return match ? Number(match[1]) : 0;
}
function appMemory() {
  const appPid = Number(execFileSync("pgrep", ["-u", String(uid), "-x", "ember"]).toString().split("\n")[0]);
  const webPids = execFileSync("sh", ["-c", `pgrep -u ${uid} -f WebKit || true`]).toString().split("\n").filter(Boolean).map(Number);
  return { app: rssKiB(appPid), webkit: webPids.reduce((sum, pid) => sum + rssKiB(pid), 0) };
}

// --- the checks ---------------------------------------------------------------------------
const results = [];
async function check(name, body) {
  const started = Date.now();
  try {
    await body();
    results.push({ name, ok: true });
    console.log(`PASS ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}: ${e.stack ?? e}`);
  }
}
const figures = {};

try {
  mkdirSync("/tmp/.X11-unix", { recursive: true, mode: 0o1777 });
  chmodSync("/tmp/.X11-unix", 0o1777);
  start("dbus", "dbus-daemon", ["--session", "--nofork", `--address=${busAddress}`]);
  start("xvfb", "Xvfb", [display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"]);
  await until("the X display", () => existsSync(`/tmp/.X11-unix/X${display.slice(1)}`), 10000);
  await until("the D-Bus session", () => existsSync(join(home, "run", "bus")), 10000);
  start("status-notifier-watcher", "status-notifier-watcher", []);
  // Every notification the app sends, whether or not a daemon shows it.
  start("notifications", "dbus-monitor", ["--session", "type='method_call',interface='org.freedesktop.Notifications',member='Notify'"]);
  await sleep(300);
  start("tauri-driver", args.driver, ["--port", String(driverPort), "--native-port", String(driverPort + 1)]);
  await until("tauri-driver", async () => (await fetch(`http://127.0.0.1:${driverPort}/status`)).ok, 15000);

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
    const link = "ember://sign-in-callback?state=forged&fragment=very-secret-fragment&actor=x&account=y";
    execFileSync("setpriv", [`--reuid=${uid}`, `--regid=${gid}`, "--init-groups", "env", "-i",
      ...Object.entries(userEnv).map(([k, v]) => `${k}=${v}`), "gio", "open", link], { timeout: 20000 });
    const logDir = join(userEnv.XDG_DATA_HOME, "dev.ember.client", "logs");
    const appLog = () => execFileSync("sh", ["-c", `cat "${logDir}"/app*.log`]).toString();
    await until("the app to log the link", () => appLog().includes("Received a deep link"), 15000);
    const log = appLog();
    if (log.includes("very-secret-fragment")) throw new Error("the app logged the link's secret");
    if (!log.includes("matches_pending_sign_in=false")) throw new Error("a link without a pending sign-in was not ignored");
  });

  await check("settings changed in the window reach the service", async () => {
    await click(session, "nav button:nth-of-type(2)");
    await click(session, "#log-filter option[value=debug]");
    await click(session, "form.settings button[type=submit]");
    await waitForText(session, "form.settings [role=status]", "Saved.", 10000);
    const state = serviceStatus();
    if (state.settings.log_filter !== "debug") throw new Error(`service has ${state.settings.log_filter}`);
    // The service's new state came back to the window: nothing is left to save.
    const save = await find(session, "form.settings button[type=submit]");
    await until("Save to be disabled", async () => !(await wd("GET", `/session/${session}/element/${save}/enabled`)), 5000);
    await screenshot(session, "2-settings-saved");
    await click(session, "nav button:nth-of-type(1)");
  });

  await check("a killed service is noticed (window, tray, notification) and its restart picked up within 2 s", async () => {
    let t0 = Date.now();
    await stop(service, "SIGKILL");
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
    await stop(service, "SIGTERM");
    if (service.exitCode !== 0) throw new Error(`the service exited with ${service.exitCode} on SIGTERM`);
    session = await newSession();
    await waitForText(session, "[data-testid=service-not-running]", "Tunnel service is not running", 60000);
    await screenshot(session, "4-not-running");
    await startService();
    await waitForText(session, "[data-testid=session-state]", "Signed out", 10000);
    await wd("DELETE", `/session/${session}`).catch(() => {});
  });
} catch (e) {
  results.push({ name: "setup", ok: false });
  console.log(`FAIL setup: ${e.stack ?? e}`);
} finally {
  await cleanup();
}

if (figures.rssAfterStart) {
  const { app, webkit } = figures.rssAfterStart;
  console.log(`figure: app RSS after start ${(app / 1024).toFixed(1)} MiB (ember process), ${((app + webkit) / 1024).toFixed(1)} MiB with its WebKit processes`);
}
if (figures.killNoticedMs !== undefined) console.log(`figure: service kill shown after ${figures.killNoticedMs} ms`);
if (figures.restartNoticedMs !== undefined) console.log(`figure: service restart shown after ${figures.restartNoticedMs} ms (includes service start-up)`);
const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
console.log(`artifacts: ${artifacts}`);
console.log(`gui: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
