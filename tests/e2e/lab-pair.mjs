// Two browsers in the network lab, one in each home: the Rust test runs each Chromium inside its
// home's namespace (DUET_CHROMIUM_A, DUET_CHROMIUM_B) and serves each page at a loopback address
// of that home, forwarded through the home's NAT. MODE is what they do:
//
//   meet      both meet, say where their connection runs, chat both ways; Ada drops a 20 MiB file
//             on Bob's avatar and its SHA-256 is checked in Bob's IndexedDB.
//   no-relay  they cannot reach each other: each must say why in words, and neither ever meets.
//   outage    Ada drops 100 MiB on Bob; when a fifth has arrived this prints `CUT` (the test cuts
//             Bob's link and lifts the cut 10 s later); the file must resume and verify.
//   ready     RUNS fresh rooms made from Ada's lobby: from both in the room (the later
//             `connected`) to chat ready (the later verified hello), in ms.
//
// Prints `RESULT {json}`.
// usage: node tests/e2e/lab-pair.mjs MODE OUT_DIR ROOM_LINK [RUNS]
import { Person, acceptOffer, createRoom, greeted, launch, sleep } from "./duet.mjs";

const [mode, out, link, runs = "5"] = process.argv.slice(2);
const result = { mode };
const chromium = (home) => process.env[`DUET_CHROMIUM_${home}`];
const browsers = [];
const people = [];

/** One person in a Chromium of their own, inside their home. */
async function person(name, home, url) {
  const browser = await launch({ executable: chromium(home) });
  browsers.push(browser);
  const someone = await Person.open(browser, name, url);
  people.push(someone);
  return someone;
}

/** Where each side's connection runs, and its measured round trip. */
async function paths(ada, bob) {
  result.path = {};
  result.rtt_ms = {};
  for (const someone of [ada, bob]) {
    const path = await someone.waitFor("the connection's path", (e) => e.event === "path");
    result.path[someone.name] = { local: path.local, remote: path.remote, relayed: path.relayed };
    const link = await someone.waitFor("a measured round trip", (e) => e.event === "link" && e.rtt_ms !== undefined);
    result.rtt_ms[someone.name] = link.rtt_ms;
  }
}

/** Ada drops a file of `size` bytes on Bob's avatar; Bob takes it if asked. Returns its SHA-256. */
async function dropOnBob(ada, bob, name, size) {
  const since = bob.events.length;
  const sent = await ada.dropNewFile(name, size, await ada.spot("peer"));
  if (size > 25 * 1024 * 1024) await acceptOffer(bob, { since });
  return sent;
}

/** Bob's received file: its name once complete, and its SHA-256 as his IndexedDB holds it. */
async function received(bob, { timeout }) {
  const done = await bob.waitFor("the received file", (e) => e.event === "transfer_completed" && e.dir === "in", { timeout });
  return (await bob.storedFile(done.location))?.sha256;
}

async function meet() {
  const ada = await person("Ada", "A", `${link}?automation`);
  const bob = await person("Bob", "B", `${link}?automation`);
  await greeted(ada, bob);
  await paths(ada, bob);
  await ada.say("hello from home A");
  await bob.waitFor("Ada's chat", (e) => e.event === "chat" && !e.mine && e.text === "hello from home A");
  await bob.say("and back from home B");
  await ada.waitFor("Bob's chat", (e) => e.event === "chat" && !e.mine && e.text === "and back from home B");
  const started = Date.now();
  result.sent_sha256 = await dropOnBob(ada, bob, "across the networks.bin", 20 * 1024 * 1024);
  result.received_sha256 = await received(bob, { timeout: 240_000 });
  result.transfer_s = (Date.now() - started) / 1000;
  // Where the connection ran in the end: ICE may start on a relay pair that succeeded first
  // and move to a direct one once its checks succeed (each change is a `path` event).
  result.lanes = mostLanes(ada, bob);
  result.first_path = result.path;
  result.path = {};
  for (const someone of [ada, bob]) {
    const last = someone.latest("path");
    result.path[someone.name] = { local: last.local, remote: last.remote, relayed: last.relayed };
  }
}

async function noRelay() {
  const ada = await person("Ada", "A", `${link}?automation`);
  const bob = await person("Bob", "B", `${link}?automation`);
  result.told_after_ms = {};
  const inRoom = [];
  for (const someone of [ada, bob]) inRoom.push((await someone.waitFor("the room", (e) => e.event === "connected")).at_ms);
  const both = Math.max(...inRoom);
  for (const someone of [ada, bob]) {
    const told = await someone.waitFor("the reason in words", (e) => e.event === "notice" && /no relay is configured/.test(e.message));
    result.told_after_ms[someone.name] = told.at_ms - both;
    result.message = told.message;
  }
  result.met = [ada, bob].some((someone) => someone.events.some((e) => e.event === "peer_hello"));
}

async function outage() {
  const ada = await person("Ada", "A", `${link}?automation`);
  const bob = await person("Bob", "B", `${link}?automation`);
  await greeted(ada, bob);
  await paths(ada, bob);
  const started = Date.now();
  const size = 100 * 1024 * 1024;
  result.sent_sha256 = await dropOnBob(ada, bob, "a hundred mebibytes.bin", size);
  const fifth = await bob.waitFor("a fifth of the file", (e) => e.event === "transfer_progress" && e.dir === "in" && e.done >= size / 5, { timeout: 600_000 });
  result.fifth_after_s = (fifth.at_ms - started) / 1000;
  const since = [ada.events.length, bob.events.length];
  const cut = Date.now();
  console.log("CUT");
  result.interrupted_after_ms = {};
  result.back_after_cut_ms = {};
  for (const [i, someone] of [ada, bob].entries()) {
    const silent = await someone.waitFor("the link interrupted", (e) => e.event === "link" && e.silent_s !== undefined, { since: since[i] });
    result.interrupted_after_ms[someone.name] = silent.at_ms - cut;
  }
  for (const [i, someone] of [ada, bob].entries()) {
    const quiet = someone.events.findIndex((e, at) => at >= since[i] && e.event === "link" && e.silent_s !== undefined);
    const back = await someone.waitFor("the link back", (e) => e.event === "link" && e.silent_s === undefined, { since: quiet, timeout: 120_000 });
    result.back_after_cut_ms[someone.name] = back.at_ms - cut;
  }
  result.received_sha256 = await received(bob, { timeout: 900_000 });
  result.completed_after_cut_s = (Date.now() - cut) / 1000;
  result.transfer_s = (Date.now() - started) / 1000;
  result.started = bob.events.filter((e) => e.event === "transfer_started" && e.dir === "in").map((e) => e.resumed_from);
  result.lanes = mostLanes(ada, bob);
}

/** The most lanes (extra connections a striped transfer runs over) each side had open. */
function mostLanes(...people) {
  return Object.fromEntries(people.map((p) => [p.name, Math.max(0, ...p.events.filter((e) => e.event === "lanes").map((e) => e.open))]));
}

async function ready() {
  const lobby = new URL(link);
  lobby.pathname = "/";
  lobby.search = "?automation";
  const homes = [await launch({ executable: chromium("A") }), await launch({ executable: chromium("B") })];
  browsers.push(...homes);
  result.runs_ms = [];
  for (let run = 0; run < Number(runs); run++) {
    // Fresh people each run (a context each: its own storage), as two first meetings: reloading
    // one page again and again through the home's forward once stalled a load for 30 s.
    for (const someone of people.splice(0)) await someone.close().catch(() => {});
    const ada = await Person.open(homes[0], "Ada", lobby.href);
    people.push(ada);
    const room = await createRoom(ada);
    const bob = await Person.open(homes[1], "Bob", `${room}?automation`);
    people.push(bob);
    const inRoom = [];
    const verified = [];
    for (const someone of [ada, bob]) {
      inRoom.push((await someone.waitFor("the room", (e) => e.event === "connected")).at_ms);
      verified.push((await someone.waitFor("the peer's hello", (e) => e.event === "peer_hello")).at_ms);
    }
    result.runs_ms.push(Math.max(...verified) - Math.max(...inRoom));
    const path = await ada.waitFor("the connection's path", (e) => e.event === "path");
    result.relayed = path.relayed;
  }
}

try {
  await { meet, "no-relay": noRelay, outage, ready }[mode]();
  for (const someone of people) await someone.screenshot(out, `lab-${mode}-${someone.name}.png`).catch(() => {});
  result.errors = people.flatMap((someone) => someone.errors);
  result.ok = true;
} catch (e) {
  result.error = String(e);
  for (const someone of people) await someone.screenshot(out, `lab-${mode}-${someone.name}-failed.png`).catch(() => {});
  process.exitCode = 1;
} finally {
  console.log(`RESULT ${JSON.stringify(result)}`);
  await sleep(100);
  for (const browser of browsers) await browser.close().catch(() => {});
}
