// `cargo xtask bench browser`: 200 MiB browser → browser with Duet's wasm client, and in the same
// run the two plain-JS references of tests/bench/reference.html: the seed design (a file from
// disk, 16 KiB chunks, 1 MiB buffered) and the ceiling (256 KiB messages from memory, dropped on
// arrival: only Chromium's own WebRTC work). Each side's CPU-seconds are its browser's processes'. Each person gets their own
// Chromium (so a tab's memory is its browser's processes, nothing shared with the other side);
// memory is the peak growth of that browser's process tree (RSS summed over the browser,
// renderer, GPU and utility processes, sampled every 100 ms) during the transfer.
//
// The sent file is a real file on disk, handed to the page through a file input (as a person
// picking it would), so neither side starts with the file in memory. Duet's sender gets it by a
// DOM drop on the peer's avatar, exactly like the e2e test.
//
// Prints `RESULT {json}`; the Rust wrapper writes target/bench/browser.json.
//
// usage: node tests/bench/browser.mjs BASE_URL WORK_DIR [RUNS]
import { createHash, randomBytes } from "node:crypto";
import { openSync, writeSync, closeSync, existsSync, readFileSync, rmSync } from "node:fs";
import { gunzipSync, gzipSync } from "node:zlib";
import { PHONE_CONTEXT, Person, acceptOffer, launch, pickFile, sleep, throttledStart } from "../e2e/duet.mjs";
import { launchTagged as launchIn, watchMemory } from "./procs.mjs";
import { receivedDigest, referencePage } from "./reference.mjs";

const [base, work, runsArg] = process.argv.slice(2);
const RUNS = Number(runsArg || 1);
const SIZE = 200 * 1024 * 1024;
const MIB = 1024 * 1024;
const root = new URL("../../", import.meta.url).pathname;

/** One person's own Chromium, its profile under this run's work directory. */
const launchTagged = () => launchIn(work);

function makeFile(path) {
  const hash = createHash("sha256");
  const fd = openSync(path, "w");
  for (let at = 0; at < SIZE; at += MIB) {
    const block = randomBytes(MIB);
    hash.update(block);
    writeSync(fd, block);
  }
  closeSync(fd);
  return hash.digest("hex");
}

/** CPU-seconds a browser's processes used, all types together. */
const cpuSecs = (memory) => +Object.values(memory.cpu_secs).reduce((sum, secs) => sum + secs, 0).toFixed(1);

/** What every run reports: speed, channel open time, and each side's memory and CPU. */
function measured(secs, channelOpenMs, senderMemory, receiverMemory) {
  return {
    mib_s: SIZE / MIB / secs,
    channel_open_ms: channelOpenMs,
    sender_cpu_s: cpuSecs(senderMemory),
    receiver_cpu_s: cpuSecs(receiverMemory),
    sender_growth_mib: senderMemory.total,
    receiver_growth_mib: receiverMemory.total,
    sender_memory_by_process: senderMemory,
    receiver_memory_by_process: receiverMemory,
  };
}

// --- Duet -----------------------------------------------------------------------------------

/** The first frame of a second visit (a new tab of the same browser), once the first visit's
 * service worker has kept the app (`web/sw.js`): what a person opening Duet again waits for. */
async function cachedFirstFrameMs(context, page) {
  for (let waited = 0; ; waited += 250) {
    const kept = await page.evaluate(async () => {
      for (const name of await caches.keys()) {
        if (await (await caches.open(name)).match("/pkg/build.json")) return true;
      }
      return false;
    });
    if (kept) break;
    if (waited > 120_000) throw new Error("the service worker kept no build within 120 s");
    await sleep(250);
  }
  const again = new Person("Ada again", context, await context.newPage());
  await again.page.goto(`${base}/?automation`);
  const first = await again.waitFor("first frame of the second visit", (e) => e.event === "first_frame");
  await again.page.close();
  return first.ms;
}

async function duetRun(path, sha256) {
  const a = await launchTagged();
  const b = await launchTagged();
  try {
    const ada = await Person.inContext(a.context, "Ada", `${base}/?automation`);
    const first = await ada.waitFor("first frame", (e) => e.event === "first_frame");
    const firstCachedMs = await cachedFirstFrameMs(a.context, ada.page);
    await ada.click("create_button");
    const entered = await ada.waitFor("the room", (e) => e.event === "screen" && e.screen === "room");
    const bob = await Person.inContext(b.context, "Bob", `${entered.link}?automation`);
    await ada.waitFor("Bob's hello", (e) => e.event === "peer_hello");
    await bob.waitFor("Ada's hello", (e) => e.event === "peer_hello");
    const connected = bob.events.find((e) => e.event === "connected");
    const joined = bob.events.find((e) => e.event === "peer_joined");
    const channelOpenMs = joined.at_ms - connected.at_ms;

    await ada.pickFile(path);
    const [x, y] = await ada.spot("peer");
    await sleep(2000);
    // Frames drawn during the transfer: winit asks for each one with requestAnimationFrame.
    for (const page of [ada.page, bob.page]) {
      await page.evaluate(() => {
        window.duetFrames = 0;
        const raf = window.requestAnimationFrame.bind(window);
        window.requestAnimationFrame = (callback) => raf((t) => (window.duetFrames++, callback(t)));
      });
    }
    const stop = watchMemory([a.pid, b.pid]);
    const started = Date.now();
    await ada.dropPicked([x, y]);
    // 200 MiB is above what Bob takes unasked: he clicks "Accept" (the time counts, as it would
    // for a person; it is a few frames).
    await acceptOffer(bob);
    const done = await bob.waitFor("the received file", (e) => e.event === "transfer_completed" && e.dir === "in", { timeout: 900_000 });
    const secs = (done.at_ms - started) / 1000;
    const offered = ada.events.find((e) => e.event === "transfer_started" && e.dir === "out");
    const [senderMemory, receiverMemory] = stop();
    const fps = async (page) => (await page.evaluate(() => window.duetFrames)) / secs;
    const frames_per_sec = { sender: await fps(ada.page), receiver: await fps(bob.page) };
    await ada.waitFor("the sent file", (e) => e.event === "transfer_completed" && e.dir === "out", { timeout: 60_000 });
    const stored = await bob.storedFile(done.location);
    if (!stored || stored.sha256 !== sha256 || stored.size !== SIZE) {
      throw new Error(`Duet stored ${JSON.stringify(stored)}, expected ${SIZE} bytes with SHA-256 ${sha256}`);
    }
    const rates = bob.events.filter((e) => e.event === "transfer_progress" && e.dir === "in").length;
    return {
      secs,
      ...measured(secs, channelOpenMs, senderMemory, receiverMemory),
      first_frame_ms: first.ms,
      first_frame_cached_ms: firstCachedMs,
      // Drop to offer: the sender hashes the file first.
      hash_secs: (offered.at_ms - started) / 1000,
      progress_events: rates,
      frames_per_sec,
      errors: [...ada.errors, ...bob.errors].slice(0, 5),
    };
  } finally {
    await a.close();
    await b.close();
  }
}

// --- reference ------------------------------------------------------------------------------

/** Two reference pages, each in its own Chromium, joined in a fresh room; `ready(sender,
 * receiver)` prepares both; then `transfer(sender, receiver)` is timed and measured, and
 * `check(receiver)` runs after. */
async function referencePair({ ready, transfer, check }) {
  const a = await launchTagged();
  const b = await launchTagged();
  try {
    const created = await (await fetch(`${base}/api/rooms`, { method: "POST" })).json();
    const signal = (who) => `${base.replace(/^http/, "ws")}/signal/${created.room}?identity=${who}`;
    const sender = await referencePage(a.context, base);
    const receiver = await referencePage(b.context, base);
    const senderOpen = sender.evaluate((url) => window.join(url), signal(crypto.randomUUID()));
    await sleep(300);
    const channelOpenMs = await receiver.evaluate((url) => window.join(url), signal(crypto.randomUUID()));
    await senderOpen;
    await ready(sender, receiver);
    await sleep(2000);
    const stop = watchMemory([a.pid, b.pid]);
    const started = Date.now();
    await transfer(sender, receiver);
    const secs = (Date.now() - started) / 1000;
    const [senderMemory, receiverMemory] = stop();
    await check(receiver);
    return {
      secs,
      ...measured(secs, channelOpenMs, senderMemory, receiverMemory),
    };
  } finally {
    await a.close();
    await b.close();
  }
}

/** The seed design: the file from disk, kept whole in the receiving page's memory. */
function referenceRun(path, sha256) {
  return referencePair({
    ready: async (sender, receiver) => {
      await pickFile(sender, path);
      await receiver.evaluate(() => {
        window.receiving = window.receiveFile();
      });
    },
    transfer: (sender, receiver) => Promise.all([sender.evaluate(() => window.sendFile()), receiver.evaluate(() => window.receiving)]),
    check: async (receiver) => {
      const got = await receivedDigest(receiver);
      if (got.size !== SIZE || got.sha256 !== sha256) {
        throw new Error(`the reference received ${JSON.stringify(got)}, expected ${SIZE} bytes with SHA-256 ${sha256}`);
      }
    },
  });
}

/** The ceiling: 256 KiB messages from memory, dropped on arrival. */
function ceilingRun() {
  return referencePair({
    ready: (sender, receiver) =>
      receiver.evaluate((size) => {
        window.receiving = window.receiveDropping(size);
      }, SIZE),
    transfer: (sender, receiver) =>
      Promise.all([sender.evaluate((size) => window.sendFromMemory(size), SIZE), receiver.evaluate(() => window.receiving)]),
    check: async (receiver) => {
      const got = await receiver.evaluate(() => window.receiving);
      if (got !== SIZE) throw new Error(`the ceiling page received ${got} bytes of ${SIZE}`);
    },
  });
}

// --- the run --------------------------------------------------------------------------------

const median = (values) => {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

function summary(runs) {
  return {
    runs: runs.length,
    mib_s: median(runs.map((r) => r.mib_s)),
    // Per tab: the larger of the two sides' growth.
    memory_growth_mib: median(runs.map((r) => Math.max(r.sender_growth_mib, r.receiver_growth_mib))),
    channel_open_ms: median(runs.map((r) => r.channel_open_ms)),
    sender_growth_mib: median(runs.map((r) => r.sender_growth_mib)),
    receiver_growth_mib: median(runs.map((r) => r.receiver_growth_mib)),
    // CPU-seconds of each side's browser for the whole transfer (200 MiB).
    cpu_s_per_side: {
      sender: median(runs.map((r) => r.sender_cpu_s)),
      receiver: median(runs.map((r) => r.receiver_cpu_s)),
    },
  };
}

const path = `${work}/bench-200mib.bin`;
const sha256 = makeFile(path);
const runs = { duet: [], reference: [], ceiling: [] };
const variants = { duet: () => duetRun(path, sha256), reference: () => referenceRun(path, sha256), ceiling: ceilingRun };
for (let run = 0; run < RUNS; run++) {
  // Rotate the order so none always runs on a warmer machine.
  const names = Object.keys(variants);
  const order = names.map((_, i) => names[(i + run) % names.length]);
  for (const which of order) {
    if (process.env.DUET_BENCH_ONLY && process.env.DUET_BENCH_ONLY !== which) continue;
    const r = await variants[which]();
    console.error(`${which} run ${run + 1}: ${JSON.stringify(r)}`);
    runs[which].push(r);
  }
}
const { duet, reference, ceiling } = runs;
// The quicker build (`build-web`, a diagnostic run) leaves only the gzip.
const wasmPath = `${root}web/pkg/duet-client_bg.wasm`;
const wasm = existsSync(wasmPath) ? readFileSync(wasmPath) : gunzipSync(readFileSync(`${wasmPath}.gz`));
const result = {
  duet: summary(duet),
  reference: summary(reference),
  ceiling: summary(ceiling),
  first_frame_ms: median(duet.map((r) => r.first_frame_ms)),
  first_frame_cached_ms: median(duet.map((r) => r.first_frame_cached_ms)),
  wasm_gzip_mib: gzipSync(wasm, { level: 9 }).length / MIB,
  wasm_raw_mib: wasm.length / MIB,
  runs,
};
// A first visit on a phone's connection and CPU (4× slower CPU, 10 Mbit/s): once, after the
// transfers, in a browser of its own.
if (!process.env.DUET_BENCH_ONLY || process.env.DUET_BENCH_ONLY === "duet") {
  const phone = await launch();
  try {
    result.phone_start = await throttledStart(phone, `${base}/?automation`, PHONE_CONTEXT);
  } finally {
    await phone.close();
  }
}
result.ratio = result.duet.mib_s / result.reference.mib_s;
result.ratio_to_ceiling = result.duet.mib_s / result.ceiling.mib_s;
console.log(`RESULT ${JSON.stringify(result)}`);
