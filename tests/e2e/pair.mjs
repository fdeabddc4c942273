// Two people in the browser: Ada creates a room, Bob opens the link; they chat (real key
// presses into the egui input), Ada drops a 20 MiB file onto Bob's avatar, Bob's IndexedDB holds
// exactly those bytes, Bob reloads and still has the file and downloads it; a third person opening
// the link is told the room is full. Then Bob sends a file back through "Send a file…" and the
// browser's file chooser, and, after Ada leaves, one that does not fit the storage quota of Dan who
// takes her place (set small through the DevTools protocol): both sides are told in words and nothing partial is listed. Prints
// `RESULT {json}` for the Rust test to check.
//
// usage: node tests/e2e/pair.mjs BASE_URL OUT_DIR
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { CONTEXT_OPTIONS, Person, launch, sha256Hex, sleep } from "./duet.mjs";

const [base, out] = process.argv.slice(2);
const FILE = "holiday-video.bin";
const SIZE = 20 * 1024 * 1024;
const LONG_MESSAGES = 8;
const result = {};

const browser = await launch();
try {
  const ada = await Person.open(browser, "Ada", `${base}/?automation`);
  const first = await ada.waitFor("first frame", (e) => e.event === "first_frame");
  result.first_frame_ms = first.ms;
  await ada.click("create_button");
  const entered = await ada.waitFor("the room", (e) => e.event === "screen" && e.screen === "room");
  result.link = entered.link;

  // "Copy link" puts the room's link on the clipboard (the page may read it back: permission granted).
  await ada.context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await ada.click("copy_button");
  await sleep(500);
  result.copied = await ada.page.evaluate(() => navigator.clipboard.readText());

  const bob = await Person.open(browser, "Bob", `${entered.link}?automation`);
  await ada.waitFor("Bob's hello", (e) => e.event === "peer_hello");
  await bob.waitFor("Ada's hello", (e) => e.event === "peer_hello");

  const text = "Hello Bob, this is Ada typing in a browser.";
  await ada.say(text);
  const heard = await bob.waitFor("Ada's chat", (e) => e.event === "chat" && !e.mine);
  result.chat_received = heard.text;
  const delivered = await ada.waitFor("a delivered receipt", (e) => e.event === "chat" && e.mine && e.state === "delivered");
  result.chat_state = delivered.state;

  // Long messages (pasted, 10,000 characters each): the history goes to IndexedDB, not to the
  // few MiB of localStorage the identity and the received-files list live in.
  result.long_sent = 0;
  for (let i = 0; i < LONG_MESSAGES; i++) {
    const since = bob.events.length;
    await ada.paste(`${i} `.padEnd(10_000, "long message "));
    await bob.waitFor(`long message ${i}`, (e) => e.event === "chat" && !e.mine && e.text.startsWith(`${i} `), { since });
    result.long_sent++;
  }

  const peerSpot = await ada.spot("peer");
  const started = Date.now();
  result.sent_sha256 = await ada.dropNewFile(FILE, SIZE, peerSpot);
  const out_done = await ada.waitFor("the sent file", (e) => e.event === "transfer_completed" && e.dir === "out", { timeout: 180_000 });
  const in_done = await bob.waitFor("the received file", (e) => e.event === "transfer_completed" && e.dir === "in", { timeout: 180_000 });
  result.transfer_secs = (Date.now() - started) / 1000;
  const progress = (person, dir) =>
    Math.max(0, ...person.events.filter((e) => e.event === "transfer_progress" && e.dir === dir).map((e) => e.done / e.total));
  result.progress_out = progress(ada, "out");
  result.progress_in = progress(bob, "in");
  result.progress_events_in = bob.events.filter((e) => e.event === "transfer_progress" && e.dir === "in").length;
  result.stored_name = in_done.location;
  result.stored = await bob.storedFile(in_done.location);
  result.out_location = out_done.location;

  await sleep(500);
  await ada.screenshot(out, "ada.png");
  await bob.screenshot(out, "bob.png");

  const carol = await Person.open(browser, "Carol", `${entered.link}?automation`);
  const refused = await carol.waitFor("a refusal", (e) => e.event === "notice" && /already has two people/.test(e.message));
  result.third_person = refused.message;
  await sleep(300);
  await carol.screenshot(out, "carol-refused.png");
  await carol.close();

  // Reload Bob: the file is still listed (from localStorage + IndexedDB) and downloads.
  const before = bob.events.length;
  result.bob_url = bob.page.url();
  await bob.page.reload();
  const listed = await bob.waitFor("the received list after reload", (e) => e.event === "received_files", { since: before });
  result.listed_after_reload = listed.names;
  const history = await bob.waitFor("the chat history after reload", (e) => e.event === "history_loaded", { since: before });
  result.history_after_reload = history.stored;
  result.local_storage = await bob.localStorageUse();
  await bob.waitFor("the room after reload", (e) => e.event === "screen" && e.screen === "room", { since: before });
  await bob.spot("file_button", { since: before });
  const [download] = await Promise.all([bob.page.waitForEvent("download", { timeout: 60_000 }), bob.click("file_button")]);
  result.download_name = download.suggestedFilename();
  result.download_sha256 = sha256Hex(readFileSync(await download.path()));
  await sleep(300);
  await bob.screenshot(out, "bob-after-reload.png");

  // The file chooser: Bob presses "Send a file…" and picks a file.
  const picked = randomBytes(300 * 1024);
  result.picked_sha256 = sha256Hex(picked);
  await bob.spot("send_button", { since: before });
  // Under load a click has (rarely) opened no chooser: a person would click again, so does this,
  // up to three times, and the result says how many it took.
  let chooser = null;
  for (result.chooser_clicks = 1; !chooser; result.chooser_clicks++) {
    try {
      [chooser] = await Promise.all([bob.page.waitForEvent("filechooser", { timeout: 10_000 }), bob.click("send_button")]);
    } catch (e) {
      if (result.chooser_clicks >= 3) {
        // What Bob's page said meanwhile (a peer gone, a notice over the button), for the log.
        const recent = bob.events.slice(-12).map((event) => JSON.stringify(event)).join("\n  ");
        throw new Error(`${e.message}\nBob's last events:\n  ${recent}`);
      }
    }
  }
  result.chooser_clicks--;
  await chooser.setFiles({ name: "notes.bin", mimeType: "application/octet-stream", buffer: picked });
  const back = await ada.waitFor("the picked file", (e) => e.event === "transfer_completed" && e.dir === "in", { timeout: 60_000 });
  result.picked_location = back.location;
  result.picked_stored = await ada.storedFile(back.location);

  // A full storage quota: Ada leaves and Dan takes her place with a browser whose storage for
  // this site holds 2 MiB (set before the page first touches storage: Chromium reads the quota
  // once); Bob drops 6 MiB onto him.
  await ada.close();
  await bob.waitFor("Ada leaving", (e) => e.event === "peer_left", { since: before });
  const danContext = await browser.newContext(CONTEXT_OPTIONS);
  const danPage = await danContext.newPage();
  const cdp = await danContext.newCDPSession(danPage);
  await cdp.send("Storage.overrideQuotaForOrigin", { origin: new URL(base).origin, quotaSize: 2 * 1024 * 1024 });
  const bobBefore = bob.events.length;
  const dan = await Person.inContext(danContext, "Dan", `${entered.link}?automation`);
  try {
    // Bob sees Ada leave when her data channel closes, which can be before the server has seen
    // her WebSocket close: Dan arriving in that moment is told the room is full (seen under
    // load). A person would open the link again a moment later; so does Dan.
    result.dan_attempts = 1;
    let since = dan.events.length;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(100)) {
      if (bob.events.slice(bobBefore).some((e) => e.event === "peer_hello")) break;
      const refused = dan.events.slice(since).some((e) => e.event === "notice" && /already has two people/.test(e.message));
      if (refused && result.dan_attempts < 5) {
        await sleep(2000);
        since = dan.events.length;
        result.dan_attempts++;
        await dan.page.reload();
      }
    }
    await bob.waitFor("Dan's hello", (e) => e.event === "peer_hello", { since: bobBefore });
    await dan.waitFor("Bob's hello", (e) => e.event === "peer_hello");
  } catch (e) {
    // What Dan saw, for the failure's report (printed with RESULT).
    result.dan_events = dan.events.slice(-15);
    result.dan_logs = dan.logs.slice(-30);
    throw e;
  }
  await bob.dropNewFile("too-big-for-the-quota.bin", 6 * 1024 * 1024, await bob.spot("peer"));
  const failedIn = await dan.waitFor("the quota failure", (e) => e.event === "transfer_failed" && e.dir === "in", { timeout: 60_000 });
  const failedOut = await bob.waitFor("the sender's failure", (e) => e.event === "transfer_failed" && e.dir === "out", { since: bobBefore, timeout: 60_000 });
  result.quota_in = failedIn.message;
  result.quota_out = failedOut.message;
  result.quota_completed = dan.events.some((e) => e.event === "transfer_completed");
  result.quota_stored = await dan.storedFile("too-big-for-the-quota.bin");
  await sleep(1000);
  await dan.screenshot(out, "dan-quota-full.png");
  result.errors = { ada: ada.errors, bob: bob.errors, dan: dan.errors };
} finally {
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close();
}
