// A browser in one home of the network lab (the Rust test runs Chromium inside that home's
// namespace through DUET_CHROMIUM) and a native client in the other: they meet through STUN
// across both NATs, chat, the browser sends a 20 MiB file (printing `SENT {sha256}`), and they
// ride out a cut of this home's link, which the Rust test makes
// when this script prints `CUT` and lifts 10 s later. With `meet-only` the script ends after
// the file (the relayed variant). Prints `RESULT {json}`.
//
// usage: node tests/e2e/lab.mjs ROOM_LINK OUT_DIR [meet-only]
import { Person, launch } from "./duet.mjs";

const [link, out, mode] = process.argv.slice(2);
const result = {};
const browser = await launch();
let bea;
try {
  const opened = Date.now();
  bea = await Person.open(browser, "Bea", `${link}?automation`);
  bea.page.on("console", (m) => {
    if (/ice|candidate|WARN|ERROR/i.test(m.text()) && !m.text().startsWith("duet-event")) console.error(`[bea] ${m.text().slice(0, 300)}`);
  });
  await bea.waitFor("the native client's hello", (e) => e.event === "peer_hello", { timeout: 120_000 });
  result.hello_after_open_ms = Date.now() - opened;
  result.path = await bea.waitFor("the connection's path", (e) => e.event === "path");
  result.rtt_ms = (await bea.waitFor("a measured round trip", (e) => e.event === "link" && e.rtt_ms !== undefined)).rtt_ms;
  await bea.say("hello from the browser");
  await bea.waitFor("the native client's chat", (e) => e.event === "chat" && !e.mine && e.text === "hello from the desktop");
  // A file to the native client: the Rust test checks what it saved against this digest.
  const dropped = Date.now();
  const sent = await bea.dropNewFile("from the browser.bin", 20 * 1024 * 1024, await bea.spot("peer"));
  console.log(`SENT ${sent}`);
  await bea.waitFor("the file sent", (e) => e.event === "transfer_completed" && e.dir === "out", { timeout: 240_000 });
  result.file_s = (Date.now() - dropped) / 1000;
  if (mode === "meet-only") {
    result.errors = bea.errors;
    result.ok = true;
    await bea.screenshot(out, "lab-browser-relayed.png");
  } else {
    await rideOutAnOutage();
  }
} catch (e) {
  if (bea) await bea.screenshot(out, "lab-browser-failed.png").catch(() => {});
  result.chat_events = bea?.events.filter((e) => e.event === "chat");
  throw e;
} finally {
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close();
}

/** The link is cut (by the Rust test, on `CUT`) and comes back: what Bea sees meanwhile. */
async function rideOutAnOutage() {
  // The path's round trip: the least sample before the cut. The first one alone also carries
  // the start-up of a page that shares two cores with the rest of the suite.
  const rtts = bea.events.filter((e) => e.event === "link" && e.rtt_ms !== undefined).map((e) => e.rtt_ms);
  result.rtt_samples = rtts.length;
  result.rtt_ms = Math.min(...rtts);
  const since = bea.events.length;
  const cut = Date.now();
  console.log("CUT");
  const silent = await bea.waitFor("the link interrupted", (e) => e.event === "link" && e.silent_s !== undefined, { since });
  result.interrupted_after_ms = silent.at_ms - cut;
  await bea.say("during the outage");
  result.during_state = (await bea.waitFor("the line said during the outage", (e) => e.event === "chat" && e.mine && e.text === "during the outage", { since })).state;
  const quiet = bea.events.length;
  const back = await bea.waitFor("the link back", (e) => e.event === "link" && e.silent_s === undefined, { since: quiet, timeout: 90_000 });
  result.back_after_cut_ms = back.at_ms - cut;
  await bea.say("after the outage");
  await bea.waitFor("the receipt", (e) => e.event === "chat" && e.mine && e.text === "after the outage" && e.state === "delivered", { since: quiet });
  await bea.screenshot(out, "lab-browser.png");
  result.errors = bea.errors;
  result.ok = true;
}
