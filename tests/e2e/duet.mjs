// Helpers for driving Duet's web client in Debian's Chromium with playwright-core.
//
// The app reports its state as `duet-event {json}` console lines when the page is opened with
// `?automation`; everything the tests do to it is a real input event (mouse, keyboard, a DOM
// drag and drop with a DataTransfer), never a call into the app.
import { chromium } from "playwright-core";
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";

// Flags from ../shared/RECIPES.md: headless WebGL2 through SwiftShader, WebRTC on loopback (the
// browser runs in an lo-only network namespace), no background traffic.
export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--enable-unsafe-swiftshader",
  "--use-angle=swiftshader",
  "--allow-loopback-in-peer-connection",
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
];

/** A headless Chromium; `without` drops some of [`CHROMIUM_FLAGS`] (e.g. the fake devices),
 * `extra` adds flags; `executable` runs another binary (e.g. a wrapper that starts Chromium in a
 * network namespace). */
export async function launch({ without = [], extra = [], executable } = {}) {
  return chromium.launch({
    executablePath: executable || process.env.DUET_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [...CHROMIUM_FLAGS.filter((flag) => !without.includes(flag)), ...extra],
  });
}

/** A headless Chromium whose tabs hide like a person's: Playwright's own pages keep focus
 * emulation on, which keeps every tab "visible" (a captured page), so this one is started here
 * and driven through DevTools without Playwright's defaults. Returns its default context (one
 * window of tabs) and a `close`. */
export async function launchWithTabs() {
  const { spawn } = await import("node:child_process");
  const { mkdirSync, mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  // Under the test run's scratch folder when there is one (removed with it).
  const parent = process.env.DUET_TEST_TMP || tmpdir();
  mkdirSync(parent, { recursive: true });
  const profile = mkdtempSync(`${parent}/duet-tabs-`);
  const child = spawn(process.env.DUET_CHROMIUM || "/usr/bin/chromium", [
    ...CHROMIUM_FLAGS,
    "--remote-debugging-port=0",
    `--user-data-dir=${profile}`,
    "--window-size=1280,720",
    "about:blank",
  ], { stdio: ["ignore", "ignore", "pipe"] });
  const endpoint = await new Promise((resolve, reject) => {
    let seen = "";
    let found = null;
    const timer = setTimeout(() => reject(new Error(`Chromium printed no DevTools address: ${seen}`)), 30_000);
    // Read to the end (a full pipe would stall Chromium), keeping only what comes before the address.
    child.stderr.on("data", (chunk) => {
      if (found) return;
      seen += chunk;
      found = /DevTools listening on (ws:\/\/\S+)/.exec(seen);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`Chromium exited (${code}): ${seen}`)));
  });
  const browser = await chromium.connectOverCDP(endpoint, { noDefaults: true });
  const context = browser.contexts()[0];
  return {
    browser,
    context,
    close: async () => {
      await browser.close().catch(() => {});
      const exited = new Promise((resolve) => child.once("exit", resolve));
      if (child.exitCode === null) child.kill();
      await Promise.race([exited, sleep(5_000)]);
      // Chromium's helper processes may still write into the profile for a moment after the
      // browser is gone; a leftover temporary profile is no failure of the test.
      for (let tries = 0; tries < 10; tries++) {
        try {
          rmSync(profile, { recursive: true, force: true });
          break;
        } catch {
          await sleep(300);
        }
      }
    },
  };
}

/** What each person's browser context looks like. */
export const CONTEXT_OPTIONS = {
  viewport: { width: 1280, height: 720 },
  acceptDownloads: true,
};

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function sha256Hex(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Clicks the call control `key` once the page's newest `layout` event shows it (an older
 * layout may show a button that is gone by now, e.g. "Call" from before the peer left). */
export async function press(person, key, { timeout = 60_000 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const latest = [...person.events].reverse().find((e) => e.event === "layout");
    const at = latest?.call_buttons?.[key];
    if (at) {
      await person.page.mouse.click(...at);
      return;
    }
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`${person.name}: no ${key} button within ${timeout} ms`);
    await person.waitFor(`a new layout`, (e) => e.event === "layout", { since: person.events.length, timeout: left });
  }
}

/** Waits for the question about a large incoming file and clicks its "Accept" once the newest
 * layout shows the button, as the person would. Returns the `transfer_asked` event. */
export async function acceptOffer(person, { since = 0, timeout = 60_000 } = {}) {
  const asked = await person.waitFor("a question about a file", (e) => e.event === "transfer_asked", { since, timeout });
  const deadline = Date.now() + timeout;
  for (;;) {
    const latest = [...person.events].reverse().find((e) => e.event === "layout");
    const at = latest?.offer_buttons?.accept;
    if (at) {
      await person.page.mouse.click(...at);
      return asked;
    }
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`${person.name}: no Accept button within ${timeout} ms`);
    await person.waitFor(`a new layout`, (e) => e.event === "layout", { since: person.events.length, timeout: left });
  }
}

/** The first `call_stats` event reported after `after` (ms since the epoch; default now). */
export async function freshStats(person, after = Date.now()) {
  return person.waitFor("fresh call stats", (e) => e.event === "call_stats" && e.at_ms > after, { timeout: 30_000 });
}

/** `person`'s page creates a room from the lobby; returns the room's link. */
export async function createRoom(person) {
  await person.waitFor("first frame", (e) => e.event === "first_frame");
  await person.click("create_button");
  return (await person.waitFor("the room", (e) => e.event === "screen" && e.screen === "room")).link;
}

/** Waits until `a` and `b` have each had the other's hello (their data connection is up). */
export async function greeted(a, b) {
  await a.waitFor(`${b.name}'s hello`, (e) => e.event === "peer_hello");
  await b.waitFor(`${a.name}'s hello`, (e) => e.event === "peer_hello");
}

/** Puts the file at `path` (on disk) into a hidden file input of `page`, made if missing:
 * disk-backed, as when a person picks it, so the page does not start with it in memory. */
export async function pickFile(page, path) {
  await page.evaluate(() => {
    if (document.getElementById("file")) return;
    const input = Object.assign(document.createElement("input"), { type: "file", id: "file" });
    input.style.display = "none";
    document.body.appendChild(input);
  });
  await page.setInputFiles("#file", path);
}

/** A mid-range Android phone held upright: Chromium's mobile emulation (a phone's viewport and
 * user agent, touch, `isMobile`). */
export const PHONE_CONTEXT = {
  viewport: { width: 393, height: 851 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  userAgent:
    "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36",
  acceptDownloads: true,
};

/** A phone's connection and CPU, for [`throttledStart`]: 4× slower than this machine, 10 Mbit/s
 * down, 5 up, 40 ms round trip. */
export const PHONE_LINK = { cpu: 4, mbit_s: 10, up_mbit_s: 5, rtt_ms: 40 };

/**
 * A first visit to `url` (nothing cached: a new context) under a phone's connection and CPU
 * (Chromium's own throttling through DevTools): how many bytes the wasm took on the wire, how
 * long it took to arrive, and when the first frame was drawn (ms from the start of navigation).
 */
export async function throttledStart(browser, url, contextOptions = {}, link = PHONE_LINK) {
  const context = await browser.newContext({ ...CONTEXT_OPTIONS, ...contextOptions });
  try {
    const page = await context.newPage();
    const person = new Person("Throttled", context, page);
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false,
      latency: link.rtt_ms,
      downloadThroughput: (link.mbit_s * 1e6) / 8,
      uploadThroughput: (link.up_mbit_s * 1e6) / 8,
    });
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: link.cpu });
    await page.goto(url, { timeout: 300_000 });
    const first = await person.waitFor("the first frame, throttled", (e) => e.event === "first_frame", { timeout: 300_000 });
    const wasm = await page.evaluate(() => {
      const entry = performance.getEntriesByType("resource").find((e) => e.name.includes("/pkg/duet-client_bg.wasm"));
      return entry && { bytes: entry.transferSize || entry.encodedBodySize, ms: entry.responseEnd - entry.startTime };
    });
    return {
      ...link,
      wasm_wire_bytes: wasm?.bytes ?? null,
      wasm_download_ms: wasm ? Math.round(wasm.ms) : null,
      first_frame_ms: Math.round(first.ms),
    };
  } finally {
    await context.close();
  }
}

/** One person: a browser context (its own storage) with one page, and the events it printed. */
export class Person {
  constructor(name, context, page) {
    this.name = name;
    this.context = context;
    this.page = page;
    this.events = [];
    this.waiters = new Set();
    this.errors = [];
    // The app's own log lines (Bevy's log on the console), the last 500.
    this.logs = [];
    page.on("console", (message) => {
      const text = message.text();
      if (text.startsWith("duet-event ")) {
        let event;
        try {
          event = JSON.parse(text.slice("duet-event ".length));
        } catch {
          return;
        }
        event.at_ms = Date.now();
        this.events.push(event);
        for (const waiter of [...this.waiters]) waiter();
      } else {
        if (message.type() === "error") this.errors.push(text);
        this.logs.push(text);
        if (this.logs.length > 500) this.logs.shift();
      }
    });
    page.on("pageerror", (error) => this.errors.push(String(error)));
  }

  static async open(browser, name, url, { grant = true } = {}) {
    return Person.inContext(await browser.newContext(CONTEXT_OPTIONS), name, url, { grant });
  }

  /** One person in an existing context (e.g. a persistent profile, see `launchPersistentContext`).
   * `grant`: the microphone and camera are allowed (otherwise the browser asks, and headless
   * Chromium without `--use-fake-ui-for-media-stream` says no). */
  static async inContext(context, name, url, { grant = true } = {}) {
    if (grant) await context.grantPermissions(["camera", "microphone"]);
    const page = context.pages()[0] || (await context.newPage());
    const person = new Person(name, context, page);
    await page.goto(url);
    return person;
  }

  /** Waits for an event matching `test` (among all seen since `since`, an index). */
  async waitFor(what, test, { timeout = 60_000, since = 0 } = {}) {
    const find = () => this.events.slice(since).find(test);
    const found = find();
    if (found) return found;
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = find();
        if (hit) {
          clearTimeout(timer);
          this.waiters.delete(check);
          resolve(hit);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        const recent = this.events.slice(-8).map((e) => JSON.stringify(e)).join("\n  ");
        const errors = this.errors.slice(-5).join("\n  ");
        reject(new Error(`${this.name}: no ${what} within ${timeout} ms; last events:\n  ${recent}\n errors:\n  ${errors}`));
      }, timeout);
      this.waiters.add(check);
    });
  }

  /** The newest event of this kind. */
  latest(kind) {
    return [...this.events].reverse().find((e) => e.event === kind);
  }

  /** The newest layout report where `key` is on screen. */
  async spot(key, options) {
    const layout = await this.waitFor(`layout with ${key}`, (e) => e.event === "layout" && e[key], options);
    const last = [...this.events].reverse().find((e) => e.event === "layout" && e[key]);
    return (last || layout)[key];
  }

  async click(key) {
    const [x, y] = await this.spot(key);
    await this.page.mouse.click(x, y);
  }

  /** Types like a person: focus the chat input with a click, then key presses and Enter. */
  async say(text) {
    // A click into an input that already has the keyboard can be handled a frame after the
    // first key presses (frames are sparse in a test browser) and move the cursor among them.
    if (!this.latest("layout")?.chat_focused) await this.click("chat_input");
    // Key presses before egui has given the input the keyboard would be lost.
    for (let waited = 0; !this.latest("layout")?.chat_focused; waited += 50) {
      if (waited > 20_000) {
        // What the person saw, for whoever reads the failure.
        await this.page.screenshot({ path: `target/e2e/no-focus-${this.name}.png` }).catch(() => {});
        console.error(JSON.stringify(this.latest("layout")));
        throw new Error(`${this.name}: the chat input never took the keyboard`);
      }
      await sleep(50);
    }
    await this.page.keyboard.type(text, { delay: 15 });
    await this.page.keyboard.press("Enter");
  }

  /** Pastes `text` into the chat input (a paste event, as Ctrl+V gives) and sends it with Enter. */
  async paste(text) {
    await this.click("chat_input");
    for (let waited = 0; !this.latest("layout")?.chat_focused; waited += 50) {
      if (waited > 20_000) throw new Error(`${this.name}: the chat input never took the keyboard`);
      await sleep(50);
    }
    await this.page.evaluate((text) => {
      const data = new DataTransfer();
      data.setData("text/plain", text);
      document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true }));
    }, text);
    // The paste is no window event: it waits for the next frame, which a key press draws at
    // once. Enter comes a frame later, once the text is in the input.
    await this.page.keyboard.press("End");
    await sleep(300);
    await this.page.keyboard.press("End");
    await sleep(300);
    await this.page.keyboard.press("Enter");
  }

  /** What the page keeps in `localStorage`: its keys and their total length in characters. */
  async localStorageUse() {
    return this.page.evaluate(() => {
      const keys = Object.keys(localStorage);
      const chars = keys.reduce((sum, key) => sum + key.length + (localStorage.getItem(key) || "").length, 0);
      return { keys, chars };
    });
  }

  /**
   * Makes a file of `size` random bytes in the page and drags it onto the canvas at (x, y):
   * dragenter, a few dragovers (the drop zone lights up), then drop, as a DataTransfer carrying a
   * File (modified at `lastModified`: the same name, size and time make the same resume key).
   * Returns the file's SHA-256 (hex).
   */
  async dropNewFile(name, size, [x, y], { lastModified = Date.now() } = {}) {
    return this.page.evaluate(
      async ({ name, size, x, y, lastModified }) => {
        const bytes = new Uint8Array(size);
        for (let at = 0; at < size; at += 65536) crypto.getRandomValues(bytes.subarray(at, at + 65536));
        const file = new File([bytes], name, { type: "application/octet-stream", lastModified });
        const transfer = new DataTransfer();
        transfer.items.add(file);
        const canvas = document.getElementById("duet");
        const rect = canvas.getBoundingClientRect();
        const init = {
          bubbles: true,
          cancelable: true,
          clientX: rect.left + x,
          clientY: rect.top + y,
          dataTransfer: transfer,
        };
        canvas.dispatchEvent(new DragEvent("dragenter", init));
        for (let i = 0; i < 6; i++) {
          canvas.dispatchEvent(new DragEvent("dragover", init));
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        canvas.dispatchEvent(new DragEvent("drop", init));
        const digest = await crypto.subtle.digest("SHA-256", bytes);
        return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
      },
      { name, size, x, y, lastModified },
    );
  }

  /** Picks the file at `path` in the page: see [`pickFile`]. */
  async pickFile(path) {
    await pickFile(this.page, path);
  }

  /** Drags the file picked by [`pickFile`] onto the canvas at (x, y), as `dropNewFile` does. */
  async dropPicked([x, y]) {
    await this.page.evaluate(
      async ({ x, y }) => {
        const transfer = new DataTransfer();
        transfer.items.add(document.getElementById("file").files[0]);
        const canvas = document.getElementById("duet");
        const rect = canvas.getBoundingClientRect();
        const init = { bubbles: true, cancelable: true, clientX: rect.left + x, clientY: rect.top + y, dataTransfer: transfer };
        canvas.dispatchEvent(new DragEvent("dragenter", init));
        for (let i = 0; i < 4; i++) {
          canvas.dispatchEvent(new DragEvent("dragover", init));
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        canvas.dispatchEvent(new DragEvent("drop", init));
      },
      { x, y },
    );
  }

  /** SHA-256 and size of a received file as IndexedDB holds it (database `duet`). */
  async storedFile(name) {
    return this.page.evaluate(async (name) => {
      const db = await new Promise((resolve, reject) => {
        const open = indexedDB.open("duet");
        open.onsuccess = () => resolve(open.result);
        open.onerror = () => reject(open.error);
      });
      const request = (store, call) =>
        new Promise((resolve, reject) => {
          const r = call(db.transaction(store).objectStore(store));
          r.onsuccess = () => resolve(r.result);
          r.onerror = () => reject(r.error);
        });
      const record = await request("files", (s) => s.get(name));
      if (!record) return null;
      const range = IDBKeyRange.bound([record.part, 0], [record.part, 4294967295]);
      const blobs = await request("chunks", (s) => s.getAll(range));
      const whole = new Blob(blobs);
      const digest = await crypto.subtle.digest("SHA-256", await whole.arrayBuffer());
      db.close();
      return {
        size: whole.size,
        records: blobs.length,
        sha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""),
      };
    }, name);
  }

  async screenshot(dir, file) {
    mkdirSync(dir, { recursive: true });
    await this.page.screenshot({ path: `${dir}/${file}` });
  }

  async close() {
    await this.context.close();
  }
}
