// The tray app's figures (issue 6), printed as a table: cold start to the window visible, the
// tray menu following a state change of the service, and memory idle after sign-in (with the
// window open, and in the tray only as after a login start). Real parts throughout: the demo
// world in namespaces, the real tunnel service, the real app under Xvfb with a D-Bus session,
// a StatusNotifier watcher and an unlocked gnome-keyring; no WebDriver (it would add its own
// latency and memory).
//
// Usage (as root; `scripts/bench-app.sh` builds release binaries and runs this):
//   node tests/gui/bench.mjs --app PATH --service PATH --demo PATH [--starts 5] [--changes 4]

import { spawn, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { createHarness, sleep, until } from "./harness.mjs";
import { createDemo } from "./demo.mjs";

const { values: args } = parseArgs({
  options: {
    app: { type: "string" },
    service: { type: "string" },
    demo: { type: "string" },
    user: { type: "string", default: "embertest" },
    starts: { type: "string", default: "5" },
    changes: { type: "string", default: "4" },
    artifacts: { type: "string", default: "artifacts/bench-app" },
  },
});
for (const required of ["app", "service", "demo"]) {
  if (!args[required]) throw new Error(`--${required} is required`);
}
if (process.getuid() !== 0) {
  console.error("bench-app: needs root (network namespaces)");
  process.exit(1);
}

const browserLog = "/tmp/ember-bench-browser.log";
const h = createHarness(args, { browserLog });
const world = createDemo(h, args.demo, args.service);
const now = () => performance.timeOrigin + performance.now();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mib = (kib) => (kib / 1024).toFixed(1);

/** Whether the X server shows a viewable top-level window named "Ember". */
function windowViewable() {
  try {
    return execFileSync("xwininfo", ["-display", h.display, "-name", "Ember"], { stdio: ["ignore", "pipe", "ignore"] })
      .toString().includes("Map State: IsViewable");
  } catch {
    return false;
  }
}

async function startApp(name, argv = []) {
  const app = h.start(name, args.app, argv);
  await until("the tray icon", () => h.trayMenuLabels().length > 0, 20000);
  return app;
}

/** The states `ember-tunnel status --watch` prints: when the resource changed state. The
 * timing itself comes from the app's log and the bus, not from here. */
function watchService() {
  const child = spawn(args.service, ["status", "--watch", "--socket", h.socket], { stdio: ["ignore", "pipe", "inherit"] });
  const states = [];
  createInterface({ input: child.stdout }).on("line", (line) => states.push(JSON.parse(line)));
  return { child, states };
}

/** Every dbusmenu signal of the app's tray menu (label changes, new layouts), with the bus's time. */
function watchTraySignals() {
  const child = spawn("setpriv", [`--reuid=${h.uid}`, `--regid=${h.gid}`, "--init-groups", "env", "-i",
    ...Object.entries(h.userEnv).map(([k, v]) => `${k}=${v}`),
    "dbus-monitor", "--session", "type='signal',interface='com.canonical.dbusmenu'"], { stdio: ["ignore", "pipe", "inherit"] });
  const signals = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    const match = line.match(/^signal time=(\d+\.\d+) .* member=(\w+)/);
    if (match) signals.push({ at: Number(match[1]) * 1000, member: match[2] });
  });
  return { child, signals };
}

/** A log line's time ("2026-11-26T01:31:56.446206Z") in milliseconds, microseconds kept. */
function logTimeMs(time) {
  const [whole, fraction = "0"] = time.slice(0, -1).split(".");
  return Date.parse(`${whole}Z`) + Number(`0.${fraction}`) * 1000;
}

function webState(state) {
  return state.resources?.find((r) => r.name === "Web")?.state;
}

const figures = {};
try {
  const demo = await world.start();
  await h.startDesktop({ keyring: true, webdriver: false });

  // --- cold start → window visible ---------------------------------------------------------
  const starts = [];
  for (let i = 0; i < Number(args.starts); i++) {
    const started = now();
    const app = h.start(`app-start-${i}`, args.app, []);
    await until("the window", windowViewable, 20000, 5);
    starts.push(now() - started);
    await h.stop(app);
    await sleep(500);
  }
  figures.coldStartMs = starts;

  // --- sign in through the tray, the browser and the deep link -----------------------------
  const app = await startApp("app");
  await until("the window", windowViewable, 20000);
  await until("the service's state in the tray", () => h.trayMenuLabels().includes("Signed out"), 20000);
  h.trayClick("Sign in…");
  const opened = await until("the browser to be opened", () => readFileSync(browserLog, "utf8").trim().split("\n").filter(Boolean).pop(), 10000);
  h.asUser("gio", ["open", world.signInAtPortal(opened, demo)]);
  await until("signed in, in the tray", () => h.trayMenuLabels().includes("Signed in"), 30000);
  await until("the resource in the tray", () => h.trayMenuLabels().some((l) => l.startsWith("Web — ")), 10000);

  // --- service state change → tray menu updated --------------------------------------------
  const service = watchService();
  const tray = watchTraySignals();
  await sleep(1000);
  const measuringFrom = Date.now();
  // Waits on the service's own reports, so nothing polls the tray while it is measured.
  const webIs = (wanted) => () => webState(service.states.at(-1) ?? {}) === wanted;
  for (let i = 0; i < Number(args.changes); i++) {
    world.clientCurl(demo, "http://web.corp.example/");
    await until("Web to be active", webIs("active"), 10000);
    await until("Web to turn idle", webIs("idle"), 60000, 250);
    await sleep(1000);
  }
  service.child.kill();
  await sleep(500);
  tray.child.kill();
  // The app logs each tray update with what it took; the view reached it `took_us` before the
  // line's time. The D-Bus signal that follows is when a tray host learns of the change.
  const updates = readFileSync(join(h.artifacts, "app.log"), "utf8").replace(/\x1b\[[0-9;]*m/g, "").split("\n")
    .map((line) => line.match(/^(\S+Z)\s+DEBUG.*Tray updated.*took_us=(\d+)/))
    .filter(Boolean)
    .map(([, time, took]) => ({ received: logTimeMs(time) - Number(took) / 1000, tookMs: Number(took) / 1000 }))
    .filter((u) => u.received >= measuringFrom);
  const delays = [];
  for (const update of updates) {
    const shown = tray.signals.find((s) => s.at >= update.received);
    console.log(`tray update: ${update.tookMs.toFixed(1)} ms in the app; ${shown ? `${shown.member} on the bus after ${(shown.at - update.received).toFixed(1)} ms` : "no D-Bus signal"}`);
    if (shown) delays.push(shown.at - update.received);
  }
  figures.trayInAppMs = updates.map((u) => u.tookMs);
  figures.trayMs = delays;

  // --- memory, idle after sign-in ------------------------------------------------------------
  await sleep(10000);
  figures.memoryWindowOpen = h.appMemory();
  await h.stop(app);
  await sleep(500);
  // As after a login start with the default preferences: in the tray, no window.
  await startApp("app-tray-only", ["--autostart"]);
  await until("signed in again from the keyring", () => h.trayMenuLabels().includes("Signed in"), 30000);
  await sleep(10000);
  if (windowViewable()) throw new Error("the login start opened the window");
  figures.memoryTrayOnly = h.appMemory();
} catch (e) {
  console.error(`bench-app failed: ${e.stack ?? e}`);
  process.exitCode = 1;
} finally {
  await h.cleanup();
  await world.stop();
  execFileSync("sh", ["-c", `pkill -u ${h.uid} -f gnome-keyring-daemon || true`]);
}

const row = (name, value, goal) => console.log(`| ${name} | ${value} | ${goal} |`);
console.log("\n| figure | Ember | goal |\n|---|---|---|");
if (figures.coldStartMs) {
  const first = figures.coldStartMs[0];
  row(`cold start → window visible with the first view (first of ${figures.coldStartMs.length} / median / max)`,
    `${first.toFixed(0)} / ${median(figures.coldStartMs).toFixed(0)} / ${Math.max(...figures.coldStartMs).toFixed(0)} ms`, "≤ 1 s");
}
if (figures.trayMs?.length) {
  row(`service state reaches the app → tray menu on D-Bus (${figures.trayMs.length} changes: median / max; in the app alone ${median(figures.trayInAppMs).toFixed(1)} / ${Math.max(...figures.trayInAppMs).toFixed(1)} ms)`,
    `${median(figures.trayMs).toFixed(0)} / ${Math.max(...figures.trayMs).toFixed(0)} ms`, "≤ 200 ms");
}
for (const [label, m] of [["window open", figures.memoryWindowOpen], ["tray only (login start)", figures.memoryTrayOnly]]) {
  if (!m) continue;
  row(`memory idle after sign-in, ${label}: RSS app + ${m.webkitProcesses} WebKit processes`,
    `${mib(m.app)} + ${mib(m.webkit)} = ${mib(m.app + m.webkit)} MiB (PSS ${mib(m.appPss + m.webkitPss)} MiB)`, "≤ 150 MB");
}
