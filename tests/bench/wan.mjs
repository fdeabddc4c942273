// `cargo xtask bench wan`, its browser side: Duet's web client (or the plain-JS reference page)
// in Chromium inside the network lab's homes. The Rust benchmark starts each Chromium in its home
// (DUET_CHROMIUM_A, DUET_CHROMIUM_B), serves the pages at a loopback address of that home
// (forwarded through its NAT), and runs any native side itself. Home A always sends, home B
// always receives.
//
//   pair       Ada (A) and Bob (B), both browsers
//   send       Ada (A) only: the receiver is a native client in home B
//   receive    Bob (B) only: the sender is a native client in home A
//   reference  the reference page in both homes (16 KiB chunks, pause above 1 MiB buffered)
//   connections-N  a diagnostic: the reference pages move FILE's size from memory, striped
//                  over N peer connections (tests/bench/connections.js)
//
// Once everyone here is in the room and verified, the script prints `MET` and waits for a line
// `go` on its stdin (the Rust side's native client is ready by then); the transfer's time counts
// from `go`. The sent file is FILE on disk, picked through a file input (as a person picks it)
// and dropped on the peer's avatar; a receiving browser clicks "Accept" when asked (above
// 25 MiB), and its stored file's SHA-256 must be SHA256. Memory is each browser's process tree's
// peak RSS growth from `go` on.
//
// Prints `RESULT {json}`: `secs` (when this script saw the end), `sender`/`receiver` memory.
//
// usage: node tests/bench/wan.mjs MODE WORK_DIR ROOM_LINK FILE SHA256 STUN_URL
import { statSync } from "node:fs";
import { createInterface } from "node:readline";
import { Person, acceptOffer, pickFile, sleep } from "../e2e/duet.mjs";
import { launchTagged, treeRss, watchMemory } from "./procs.mjs";
import { receivedDigest, referencePage } from "./reference.mjs";

const [mode, work, link, file, sha256, stun] = process.argv.slice(2);
const MIB = 1024 * 1024;
/** A transfer at the slowest profile's pace (about 1 MiB/s) still ends well inside this. */
const TRANSFER_LIMIT_MS = 1_800_000;
const result = { mode };
const browsers = [];

const lines = createInterface({ input: process.stdin });
const go = new Promise((resolve, reject) => {
  lines.on("line", (line) => line.trim() === "go" && resolve());
  lines.on("close", () => reject(new Error("stdin closed before `go`")));
});
// Handled where it is awaited; until then a closed stdin must not end the script unasked.
go.catch(() => {});

/** One person's own Chromium, inside `home`. */
async function browserIn(home) {
  const browser = await launchTagged(work, process.env[`DUET_CHROMIUM_${home}`]);
  browsers.push(browser);
  return browser;
}

/** `name`'s page in `browser`, once it has its ICE servers: the next page starts loading only
 * then, since on these two cores a fetch slower than the app waits left a page without STUN,
 * unable to meet across NATs. */
async function person(name, browser) {
  const someone = await Person.inContext(browser.context, name, `${link}?automation`);
  await someone.waitFor("the ICE servers", (e) => e.event === "ice_servers", { timeout: 120_000 });
  return { someone, pid: browser.pid };
}

/** Memory and CPU of each side, as `watchMemory` reports them. */
function keep(sides, memory, into = result) {
  for (const [i, side] of sides.entries()) {
    into[side] = { growth_mib: memory[i].total, by_process: memory[i] };
  }
}

/** The receiving page's JS heap now, and its browser's memory before and after a forced
 * garbage collection. It runs after the SHA-256 check, which reads the whole file back into
 * the page, so the collection frees mostly that read; the transfer's own growth is measured
 * before the check. */
async function heapAfter({ someone, pid }) {
  const cdp = await someone.page.context().newCDPSession(someone.page);
  await cdp.send("Performance.enable");
  const metrics = Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map((m) => [m.name, m.value]));
  const before = treeRss(pid).total;
  await cdp.send("HeapProfiler.collectGarbage");
  await sleep(1000);
  const after = treeRss(pid).total;
  return { js_heap_used_mib: metrics.JSHeapUsedSize / 1048576, js_heap_total_mib: metrics.JSHeapTotalSize / 1048576, rss_before_gc_mib: before, rss_after_gc_mib: after };
}

/** One file from Ada (dropped on `spot`) to Bob, from the drop until both sides are done;
 * each browser's memory over that time (`watchMemory`), and where Bob stored it. */
async function transfer(ada, bob, spot) {
  const stop = watchMemory([ada, bob].filter(Boolean).map((side) => side.pid));
  const started = Date.now();
  const since = { since: bob ? bob.someone.events.length : 0 };
  const sinceAda = { since: ada ? ada.someone.events.length : 0 };
  if (ada) await ada.someone.dropPicked(spot);
  let secs = null;
  let location = null;
  if (bob) {
    // Above 25 MiB the app asks first.
    const offer = await bob.someone.waitFor("the file's offer", (e) => e.event === "transfer_asked" || (e.event === "transfer_started" && e.dir === "in"), { ...since, timeout: 120_000 });
    if (offer.event === "transfer_asked") await acceptOffer(bob.someone, since);
    const done = await bob.someone.waitFor("the received file", (e) => e.event === "transfer_completed" && e.dir === "in", { ...since, timeout: TRANSFER_LIMIT_MS });
    secs = (done.at_ms - started) / 1000;
    location = done.location;
  }
  if (ada) await ada.someone.waitFor("the sent file", (e) => e.event === "transfer_completed" && e.dir === "out", { ...sinceAda, timeout: TRANSFER_LIMIT_MS });
  if (!bob) secs = (Date.now() - started) / 1000;
  return { secs, location, memory: stop() };
}

async function duet() {
  const sending = mode !== "receive";
  const receiving = mode !== "send";
  // Both browsers first: a Chromium's start takes both cores for a while.
  const browserA = sending ? await browserIn("A") : null;
  const browserB = receiving ? await browserIn("B") : null;
  const ada = browserA ? await person("Ada", browserA) : null;
  const bob = browserB ? await person("Bob", browserB) : null;
  for (const side of [ada, bob]) if (side) await side.someone.waitFor("the peer's hello", (e) => e.event === "peer_hello", { timeout: 120_000 });
  for (const side of [ada, bob]) {
    if (!side) continue;
    const path = await side.someone.waitFor("the connection's path", (e) => e.event === "path");
    result.relayed = (result.relayed || false) || path.relayed;
  }
  if (ada) await ada.someone.pickFile(file);
  const spot = ada ? await ada.someone.spot("peer") : null;
  console.log("MET");
  await go;
  const sides = [ada, bob].filter(Boolean);
  const first = await transfer(ada, bob, spot);
  result.secs = first.secs;
  // DUET_BENCH_AGAIN (pair mode): the same file once more in the same pages, measured on its
  // own: what a transfer costs once the page's code has run (and been optimised) before.
  let again = null;
  if (mode === "pair" && process.env.DUET_BENCH_AGAIN) {
    await ada.someone.pickFile(file);
    again = await transfer(ada, bob, spot);
  }
  // Checked after both: the check reads the whole file back into the page.
  for (const done of [first, again].filter(Boolean)) {
    if (!done.location) continue;
    const stored = await bob.someone.storedFile(done.location);
    if (!stored || stored.sha256 !== sha256) throw new Error(`Bob stored ${JSON.stringify(stored)}, expected SHA-256 ${sha256}`);
    result.size = stored.size;
  }
  keep([ada && "sender", bob && "receiver"].filter(Boolean), first.memory);
  if (again) {
    result.again = { secs: again.secs };
    keep(["sender", "receiver"], again.memory, result.again);
  }
  if (bob) result.receiver_heap = await heapAfter(bob);
  result.errors = sides.flatMap((side) => side.someone.errors).slice(0, 5);
}

/** The reference page in both homes, `script` (a file beside this one) added to each, joined
 * in ROOM_LINK's room through its signaling. */
async function referencePages(script) {
  const base = new URL(link).origin;
  const room = new URL(link).pathname.split("/").pop();
  const signal = () => `${base.replace(/^http/, "ws")}/signal/${room}?identity=${crypto.randomUUID()}`;
  const [a, b] = [await browserIn("A"), await browserIn("B")];
  const sender = await referencePage(a.context, base);
  const receiver = await referencePage(b.context, base);
  if (script) for (const page of [sender, receiver]) await page.addScriptTag({ path: new URL(script, import.meta.url).pathname });
  const ice = [{ urls: [stun] }];
  const senderOpen = sender.evaluate(([url, ice]) => window.join(url, ice), [signal(), ice]);
  await sleep(300);
  await receiver.evaluate(([url, ice]) => window.join(url, ice), [signal(), ice]);
  await senderOpen;
  return { a, b, sender, receiver, ice };
}

async function reference() {
  const { a, b, sender, receiver } = await referencePages();
  await pickFile(sender, file);
  await receiver.evaluate(() => {
    window.receiving = window.receiveFile();
  });
  console.log("MET");
  await go;
  const stop = watchMemory([a.pid, b.pid]);
  const started = Date.now();
  await Promise.all([sender.evaluate(() => window.sendFile()), receiver.evaluate(() => window.receiving)]);
  result.secs = (Date.now() - started) / 1000;
  keep(["sender", "receiver"], stop());
  const got = await receivedDigest(receiver);
  if (got.sha256 !== sha256) throw new Error(`the reference received ${JSON.stringify(got)}, expected SHA-256 ${sha256}`);
  result.size = got.size;
}

/** `--connections N`: the reference pages with tests/bench/connections.js, N connections. */
async function connections(n) {
  const { sender, receiver, ice } = await referencePages("./connections.js");
  await receiver.evaluate((ice) => window.listenMore(ice), ice);
  await sender.evaluate(([more, ice]) => { window.listenMore(ice); return window.openMore(more, ice); }, [n - 1, ice]);
  const size = statSync(file).size;
  await receiver.evaluate((size) => { window.receiving = window.receiveStriped(size); }, size);
  console.log("MET");
  await go;
  const started = Date.now();
  await Promise.all([sender.evaluate((size) => window.sendStriped(size), size), receiver.evaluate(() => window.receiving)]);
  result.secs = (Date.now() - started) / 1000;
  result.size = size;
  result.connections = n;
}

try {
  if (mode.startsWith("connections-")) await connections(Number(mode.slice("connections-".length)));
  else if (mode === "reference") await reference();
  else if (["pair", "send", "receive"].includes(mode)) await duet();
  else throw new Error(`unknown mode ${mode}`);
  if (result.size !== undefined) result.mib_s = result.size / MIB / result.secs;
  result.ok = true;
} catch (e) {
  result.error = String(e);
  process.exitCode = 1;
} finally {
  console.log(`RESULT ${JSON.stringify(result)}`);
  lines.close();
  await sleep(100);
  for (const browser of browsers) await browser.close().catch(() => {});
}
