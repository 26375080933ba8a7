// The demo world for GUI tests and benchmarks: `ember-e2e demo --no-sign-in` brings up the
// portal, relay, gateway and resource in network namespaces and the real tunnel service in
// the client namespace; and what a browser does with the portal's sign-in page.

import { spawn, execFileSync } from "node:child_process";
import { existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sleep, until } from "./harness.mjs";

/** `h`: a harness (its runtime folder gets the service's socket); `demoBin`: `ember-e2e`;
 * `serviceBin`: the `ember-tunnel` whose folder holds the other binaries. */
export function createDemo(h, demoBin, serviceBin) {
  let demo = null;
  const log = join(h.artifacts, "demo.log");

  async function start() {
    const ready = join(h.work, "demo-ready");
    const out = openSync(log, "w");
    demo = spawn(demoBin, ["demo", "--no-sign-in", "--runtime-dir", h.runtimeDir, "--ready-file", ready], {
      stdio: ["ignore", out, out],
      detached: true,
      env: { PATH: process.env.PATH, EMBER_BIN_DIR: join(serviceBin, "..") },
    });
    await until("the demo world", () => existsSync(ready) || demo.exitCode !== null, 240000, 200);
    if (demo.exitCode !== null) throw new Error(`the demo exited with ${demo.exitCode}:\n${readFileSync(log, "utf8")}`);
    const problems = readFileSync(ready, "utf8").trim();
    if (problems) throw new Error(`the demo came up with problems: ${problems}`);
    const text = readFileSync(log, "utf8");
    const field = (name) => text.match(new RegExp(`^\\s*${name}:\\s+(\\S+)`, "m"))?.[1];
    const clientNs = text.match(/ip netns exec (\S+) curl/)?.[1];
    return {
      portal: field("portal"), user: field("user"), password: field("password"), account: field("account"), clientNs,
      logDir: text.match(/logs in (\S+)\)/)?.[1],
    };
  }

  async function stop() {
    if (!demo || demo.exitCode !== null) return;
    const exited = new Promise((done) => demo.once("exit", done));
    process.kill(-demo.pid, "SIGTERM");
    await Promise.race([exited, sleep(30000)]);
  }

  /** What a browser does with the portal's sign-in page: GET it, POST the password form with
   * its CSRF token and cookie, and answer the `ember://` URL it redirects to. */
  function signInAtPortal(pageUrl, world) {
    const jar = join(h.work, "cookies");
    const html = execFileSync("curl", ["-sS", "--max-time", "10", "-c", jar, pageUrl]).toString();
    const hidden = (name) => html.match(new RegExp(`name="${name}"[^>]*value="([^"]*)"`))?.[1]
      ?? html.match(new RegExp(`value="([^"]*)"[^>]*name="${name}"`))?.[1];
    const form = ["attempt", "csrf"].flatMap((name) => ["--data-urlencode", `${name}=${hidden(name)}`]);
    const headers = execFileSync("curl", ["-sS", "--max-time", "30", "-b", jar, "-o", "/dev/null", "-D", "-",
      ...form,
      "--data-urlencode", `account=${world.account}`,
      "--data-urlencode", `email=${world.user}`,
      "--data-urlencode", `password=${world.password}`,
      new URL("/sign-in", pageUrl).toString()]).toString();
    const location = headers.match(/^location:\s*(\S+)/im)?.[1];
    if (!location?.startsWith("ember://sign-in-callback?")) throw new Error(`no ember:// redirect:\n${headers}`);
    return location;
  }

  /** `curl` from the client namespace, through the tunnel. */
  function clientCurl(world, url) {
    return execFileSync("ip", ["netns", "exec", world.clientNs, "curl", "-sS", "--max-time", "20", url]).toString();
  }

  return { log, start, stop, signInAtPortal, clientCurl };
}
