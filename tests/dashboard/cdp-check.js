// Drive headless Chromium over the DevTools protocol (no npm packages: the
// WebSocket client is Node's own) against pivotd's dashboard: load the page,
// read its numbers twice, hot-swap a model version, wait for the swap marker,
// save a screenshot, and print what was seen as JSON on stdout. The caller
// (test-dashboard.py) judges it.
//
// usage: node --experimental-websocket cdp-check.js URL SCREENSHOT.png SWAP_MODEL SWAP_VERSION SWAP_FILE
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const [url, shot, swapModel, swapVersion, swapFile] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || "chromium";
const sleep = ms => new Promise(r => setTimeout(r, ms));

function fail(msg) {
  process.stderr.write("cdp-check: " + msg + "\n");
  process.exitCode = 1;
}

async function main() {
  if (typeof WebSocket === "undefined") throw new Error("this node has no WebSocket (run with --experimental-websocket)");
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "pivotd-chromium-"));
  const chrome = spawn(CHROMIUM, ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
    "--remote-debugging-port=0", "--user-data-dir=" + profile, "--window-size=1280,1000", "about:blank"],
    { stdio: ["ignore", "ignore", "pipe"] });
  let chromeErr = "";
  chrome.stderr.on("data", b => { chromeErr += b; });
  const exited = new Promise(res => chrome.on("exit", res));
  // Chromium writes into its profile until it is gone: wait, then remove.
  const cleanup = async () => {
    if (chrome.exitCode === null && chrome.signalCode === null) chrome.kill("SIGKILL");
    await Promise.race([exited, sleep(5000)]);
    try { fs.rmSync(profile, { recursive: true, force: true, maxRetries: 5 }); }
    catch (e) { process.stderr.write("cdp-check: could not remove " + profile + ": " + e.message + "\n"); }
  };
  try {
    // Chromium writes its port and browser path here once it listens.
    let ws = null;
    for (let i = 0; i < 300 && !ws; i++) {
      try {
        const [port, p] = fs.readFileSync(path.join(profile, "DevToolsActivePort"), "utf8").split("\n");
        if (port && p) ws = "ws://127.0.0.1:" + port.trim() + p.trim();
      } catch (e) { /* not yet */ }
      if (!ws) {
        if (chrome.exitCode !== null) throw new Error("chromium exited: " + chromeErr.slice(-2000));
        await sleep(100);
      }
    }
    if (!ws) throw new Error("chromium did not open its DevTools port in 30 s: " + chromeErr.slice(-2000));
    await run(ws);
  } finally {
    await cleanup();
  }
}

async function run(wsUrl) {
  const sock = new WebSocket(wsUrl);
  await new Promise((res, rej) => { sock.onopen = res; sock.onerror = () => rej(new Error("cannot connect to " + wsUrl)); });
  let nextId = 1;
  const waiting = new Map(), listeners = [];
  sock.onmessage = ev => {
    const m = JSON.parse(ev.data);
    if (m.id && waiting.has(m.id)) {
      const { res, rej } = waiting.get(m.id);
      waiting.delete(m.id);
      if (m.error) rej(new Error(JSON.stringify(m.error)));
      else res(m.result);
    } else if (m.method) {
      for (const l of listeners) l(m);
    }
  };
  const send = (method, params, sessionId) => new Promise((res, rej) => {
    const id = nextId++;
    waiting.set(id, { res, rej });
    sock.send(JSON.stringify({ id, method, params: params || {}, sessionId }));
  });

  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const cmd = (m, p) => send(m, p, sessionId);
  const errors = [], requests = [];
  let loaded = false;
  listeners.push(m => {
    if (m.sessionId !== sessionId) return;
    if (m.method === "Runtime.consoleAPICalled" && ["error", "assert", "warning"].includes(m.params.type))
      errors.push("console." + m.params.type + ": " + m.params.args.map(a => a.value ?? a.description).join(" "));
    else if (m.method === "Runtime.exceptionThrown")
      errors.push("exception: " + (m.params.exceptionDetails.exception?.description || m.params.exceptionDetails.text));
    else if (m.method === "Log.entryAdded" && ["error", "warning"].includes(m.params.entry.level))
      errors.push("log." + m.params.entry.level + ": " + m.params.entry.text + " " + (m.params.entry.url || ""));
    else if (m.method === "Network.requestWillBeSent") requests.push(m.params.request.url);
    else if (m.method === "Page.loadEventFired") loaded = true;
  });
  await cmd("Runtime.enable");
  await cmd("Log.enable");
  await cmd("Page.enable");
  await cmd("Network.enable");
  await cmd("Emulation.setDeviceMetricsOverride", { width: 1280, height: 1000, deviceScaleFactor: 1, mobile: false });
  await cmd("Page.navigate", { url });
  for (let i = 0; i < 200 && !loaded; i++) await sleep(50);
  if (!loaded) throw new Error("the page did not finish loading in 10 s");

  // What the page shows, read from its DOM as a user would see it.
  const snapshot = async () => {
    const r = await cmd("Runtime.evaluate", { returnByValue: true, expression: `(() => {
      const f = (m, k) => { const e = document.querySelector('[data-model="' + m + '"][data-field="' + k + '"]');
                            return e ? e.textContent : null; };
      const models = {};
      for (const c of document.querySelectorAll('#models .card')) {
        const m = c.dataset.model;
        models[m] = { rate: f(m, "rate"), count: f(m, "count"), p50: f(m, "p50"), p90: f(m, "p90"),
                      p99: f(m, "p99"), fails: f(m, "fails"), versions: f(m, "versions"), state: f(m, "state") };
      }
      const path = m => { const p = document.querySelector('#rate-chart path.line[data-model="' + m + '"]');
                          return p ? (p.getAttribute("d").match(/[ML]/g) || []).length : 0; };
      const ratePoints = {};
      for (const m in models) ratePoints[m] = path(m);
      return { title: document.title, status: document.getElementById("status").textContent, models, ratePoints,
               swapMarkers: [...document.querySelectorAll('#rate-chart .marker.swap')].map(g => g.textContent),
               histBars: document.querySelectorAll('#hist-chart rect.bar').length,
               histTitle: document.getElementById("hist-title").textContent,
               eventRows: document.querySelectorAll('#events tr').length };
    })()` });
    if (r.exceptionDetails) throw new Error("evaluate: " + JSON.stringify(r.exceptionDetails));
    return r.result.value;
  };
  const until = async (what, pred, ms) => {
    let s;
    for (const t0 = Date.now(); Date.now() - t0 < ms;) {
      s = await snapshot();
      if (pred(s)) return s;
      await sleep(200);
    }
    throw new Error("timed out waiting for " + what + "; the page shows " + JSON.stringify(s));
  };
  const countOf = (s, m) => s.models[m] ? Number((s.models[m].count || "").replace(/,/g, "")) : NaN;

  const first = await until("a request count on the " + swapModel + " card", s => countOf(s, swapModel) > 0, 15000);
  await sleep(2500);
  const second = await until("a higher count", s => countOf(s, swapModel) > countOf(first, swapModel), 10000);

  const body = fs.readFileSync(swapFile);
  const origin = new URL(url).origin;
  const r = await fetch(origin + "/v2/models/" + swapModel + "/versions/" + swapVersion + "/model",
    { method: "PUT", body });
  const swapStatus = r.status;
  await r.text();
  const swapped = await until("the swap marker", s => s.swapMarkers.length > 0 &&
    (s.models[swapModel]?.versions || "").includes("v" + swapVersion), 10000);
  // Let the new version serve a few seconds so the chart shows both sides.
  await sleep(3000);
  const last = await snapshot();
  const png = await cmd("Page.captureScreenshot", { format: "png", captureBeyondViewport: false });
  fs.writeFileSync(shot, Buffer.from(png.data, "base64"));
  process.stdout.write(JSON.stringify({ first, second, swapStatus, swapped, last, errors,
    requests: [...new Set(requests.map(u => u.replace(/\?.*/, "")))] }) + "\n");
  sock.close();
}

main().catch(e => fail(e.stack || String(e)));
