// What the GUI tests share: a private desktop session for one unprivileged user (Xvfb, a D-Bus
// session, a StatusNotifier watcher, a notification monitor, optionally an unlocked
// gnome-keyring), tauri-driver, WebDriver over plain HTTP, the tray menu over D-Bus, and
// memory figures.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, chmodSync, chownSync, writeFileSync, readFileSync, existsSync, rmSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

export async function until(what, probe, timeoutMs = 30000, everyMs = 50) {
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

/** `args`: { app, service, driver, user, artifacts }; `socket`: where the app finds the service. */
/** `browserLog`: a file that a fake `xdg-open` (first in the user's PATH) appends the URLs it
 * is asked to open to, in place of a browser. */
export function createHarness(args, { socket: socketOverride, browserLog } = {}) {
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
  const socket = socketOverride ?? join(runtimeDir, "tunnel.sock");
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
    ...(browserLog ? fakeBrowser(work, browserLog) : {}),
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
  /** The tray item's D-Bus name and the object path of its menu, or null before it registered. */
  function trayMenu() {
    const [item] = registeredTrayItems();
    if (!item) return null;
    // An entry is either "bus-name" (item at /StatusNotifierItem) or "bus-name/object/path".
    const slash = item.indexOf("/");
    const bus = slash < 0 ? item : item.slice(0, slash);
    const path = slash < 0 ? findItemPath(bus) : item.slice(slash);
    const menuReply = gdbus("--dest", bus, "--object-path", path, "--method", "org.freedesktop.DBus.Properties.Get",
      "org.kde.StatusNotifierItem", "Menu");
    return { bus, menuPath: menuReply.match(/objectpath '([^']+)'/)[1] };
  }
  /** The whole menu with the given properties of each item, as gdbus prints it. */
  function trayLayout(menu = trayMenu(), properties = ["label"]) {
    if (!menu) return "";
    return gdbus("--dest", menu.bus, "--object-path", menu.menuPath, "--method", "com.canonical.dbusmenu.GetLayout",
      "--", "0", "-1", `[${properties.map((p) => `'${p}'`).join(", ")}]`);
  }
  function trayMenuLabels() {
    return [...trayLayout().matchAll(/'label': <'([^']*)'>/g)].map((m) => m[1]);
  }
  /** The properties of the tray menu item labelled `label` (e.g. its `toggle-state`), as text. */
  function trayItemProperties(label) {
    const layout = trayLayout(trayMenu(), ["label", "toggle-type", "toggle-state"]);
    return [...layout.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]).find((props) => props.includes(`'label': <'${label}'>`)) ?? null;
  }
  /** Clicks the tray menu item labelled `label`, the way the tray host does. */
  function trayClick(label) {
    const menu = trayMenu();
    const id = menu && [...trayLayout(menu).matchAll(/\((\d+), \{'label': <'([^']*)'>\}/g)].find((m) => m[2] === label)?.[1];
    if (!id) throw new Error(`no tray item "${label}" in ${JSON.stringify(trayMenuLabels())}`);
    gdbus("--dest", menu.bus, "--object-path", menu.menuPath, "--method", "com.canonical.dbusmenu.Event", "--", id, "clicked", '<"">', "0");
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
  function memoryKiB(pid) {
    const rss = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
    // PSS shares each shared page among the processes that map it: the libraries the app and
    // its WebKit processes have in common are counted once in the sum.
    const pss = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8").match(/^Pss:\s+(\d+) kB/m);
    return { rss: rss ? Number(rss[1]) : 0, pss: pss ? Number(pss[1]) : 0 };
  }
  /** RSS and PSS in KiB of the `ember` process and of its WebKit processes. */
  function appMemory() {
    const appPid = Number(execFileSync("pgrep", ["-u", String(uid), "-x", "ember"]).toString().split("\n")[0]);
    const webPids = execFileSync("sh", ["-c", `pgrep -u ${uid} -f WebKit || true`]).toString().split("\n").filter(Boolean).map(Number);
    const app = memoryKiB(appPid);
    const web = webPids.map(memoryKiB);
    return {
      app: app.rss,
      webkit: web.reduce((sum, m) => sum + m.rss, 0),
      appPss: app.pss,
      webkitPss: web.reduce((sum, m) => sum + m.pss, 0),
      webkitProcesses: webPids.length,
    };
  }

  /** Starts Xvfb, a D-Bus session, the tray host, a notification monitor and (unless
   * `webdriver` is false) tauri-driver. */
  async function startDesktop({ keyring = false, webdriver = true } = {}) {
    mkdirSync("/tmp/.X11-unix", { recursive: true, mode: 0o1777 });
    chmodSync("/tmp/.X11-unix", 0o1777);
    start("dbus", "dbus-daemon", ["--session", "--nofork", `--address=${busAddress}`]);
    start("xvfb", "Xvfb", [display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"]);
    await until("the X display", () => existsSync(`/tmp/.X11-unix/X${display.slice(1)}`), 10000);
    await until("the D-Bus session", () => existsSync(join(home, "run", "bus")), 10000);
    start("status-notifier-watcher", "status-notifier-watcher", []);
    // Every notification the app sends, whether or not a daemon shows it.
    start("notifications", "dbus-monitor", ["--session", "type='method_call',interface='org.freedesktop.Notifications',member='Notify'"]);
    if (keyring) {
      // An unlocked login keyring, as a desktop session has after login.
      execFileSync("setpriv", [`--reuid=${uid}`, `--regid=${gid}`, "--init-groups", "env", "-i",
        ...Object.entries(userEnv).map(([k, v]) => `${k}=${v}`), "sh", "-c",
        "printf ci | gnome-keyring-daemon --unlock --components=secrets >/dev/null && gnome-keyring-daemon --start --components=secrets >/dev/null"]);
    }
    await sleep(300);
    if (!webdriver) return;
    start("tauri-driver", args.driver, ["--port", String(driverPort), "--native-port", String(driverPort + 1)]);
    await until("tauri-driver", async () => (await fetch(`http://127.0.0.1:${driverPort}/status`)).ok, 15000);
  }

  /** Runs a command as the desktop user in the session's environment. */
  function asUser(command, argv, options = {}) {
    return execFileSync("setpriv", [`--reuid=${uid}`, `--regid=${gid}`, "--init-groups", "env", "-i",
      ...Object.entries({ ...userEnv, ...(options.env ?? {}) }).map(([k, v]) => `${k}=${v}`), command, ...argv], { timeout: 20000, ...options }).toString();
  }

  return {
    artifacts, uid, gid, work, home, runtimeDir, socket, display, userEnv,
    start, stop, cleanup, startService, serviceStatus, startDesktop, asUser,
    get service() { return service; },
    wd, newSession, find, textOf, click, waitForText, screenshot,
    trayMenuLabels, trayItemProperties, trayClick, appMemory,
  };
}

function fakeBrowser(work, log) {
  const bin = join(work, "bin");
  mkdirSync(bin, { recursive: true });
  writeFileSync(log, "");
  chmodSync(log, 0o666);
  const script = `#!/bin/sh\nprintf '%s\\n' "$1" >> '${log}'\n`;
  for (const name of ["xdg-open", "x-www-browser", "sensible-browser"]) {
    writeFileSync(join(bin, name), script);
    chmodSync(join(bin, name), 0o755);
  }
  return { PATH: `${bin}:/usr/local/bin:/usr/bin:/bin`, BROWSER: join(bin, "xdg-open") };
}

/** Runs named checks, prints PASS/FAIL lines, and reports at the end. */
export function checks() {
  const results = [];
  return {
    results,
    async check(name, body) {
      const started = Date.now();
      try {
        await body();
        results.push({ name, ok: true });
        console.log(`PASS ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      } catch (e) {
        results.push({ name, ok: false });
        console.log(`FAIL ${name}: ${e.stack ?? e}`);
      }
    },
    fail(name, e) {
      results.push({ name, ok: false });
      console.log(`FAIL ${name}: ${e.stack ?? e}`);
    },
    finish(label, artifacts) {
      const passed = results.filter((r) => r.ok).length;
      const failed = results.length - passed;
      console.log(`artifacts: ${artifacts}`);
      console.log(`${label}: ${passed} passed, ${failed} failed`);
      process.exit(failed === 0 ? 0 : 1);
    },
  };
}
