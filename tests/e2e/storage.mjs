// What Bob's browser keeps (IndexedDB, database `duet`) and what it lets go of. His storage is
// first seeded as earlier sessions and an earlier version of Duet would have left it: parts kept
// for a resume (one untouched for 8 days, two of 700 MiB each as far as their records say, a
// fresh one, one from before parts were registered) and 1,000 received files (the oldest from
// before files had a time). After a reload, the week-old part and the older big one must be gone
// and the rest kept; each file Ada then sends pushes the oldest received file out, bytes and all;
// and the same file offered again with other bytes (same name, size and time, so the same resume
// key) lands beside the first, whose bytes stay as they were verified. Prints `RESULT {json}`.
//
// usage: node tests/e2e/storage.mjs BASE_URL OUT_DIR
import { Person, createRoom, greeted, launch, sleep } from "./duet.mjs";

const [base, out] = process.argv.slice(2);
const result = {};
const DAY = 24 * 3600 * 1000;
const SEEDED_FILES = 1000;
const FILE = "report.pdf";
const SIZE = 300 * 1024;
const MODIFIED = 1_700_000_000_000;

/** Bob's page: the parts and files an earlier time left. */
async function seed({ now, day, files }) {
  const db = await new Promise((resolve, reject) => {
    const open = indexedDB.open("duet");
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
  const tx = db.transaction(["chunks", "partials", "files", "meta"], "readwrite");
  const chunks = tx.objectStore("chunks");
  const partials = tx.objectStore("partials");
  const chunk = () => new Uint8Array(16384).fill(7);
  const part = (key, written, bytes) => {
    chunks.put(chunk(), [key, 0]);
    if (written !== null) partials.put({ written, bytes }, key);
  };
  part("seed-old", now - 8 * day, 16384);
  part("seed-big-older", now - 2 * day, 700 * 1024 * 1024);
  part("seed-big-newer", now - 1 * day, 700 * 1024 * 1024);
  part("seed-fresh", now - 3600 * 1000, 16384);
  part("seed-legacy", null, 0);
  const list = tx.objectStore("files");
  for (let i = 0; i < files; i++) {
    const name = `old-${String(i).padStart(4, "0")}.bin`;
    const key = `seed-file-${i}`;
    chunks.put(new Uint8Array([i & 255]), [key, 0]);
    // The very oldest from before files had a time.
    list.put(i === 0 ? { part: key, name } : { part: key, name, at: now - 10 * day + i }, name);
  }
  // As if the one-time upgrade had not run yet: it must register the files and the legacy part.
  tx.objectStore("meta").delete("upgraded_to_2");
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
  db.close();
}

/** Bob's page: which seeded parts and files are still there. */
async function state() {
  const db = await new Promise((resolve, reject) => {
    const open = indexedDB.open("duet");
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
  const ask = (store, call) =>
    new Promise((resolve, reject) => {
      const r = call(db.transaction(store).objectStore(store));
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  const records = (key) => ask("chunks", (s) => s.count(IDBKeyRange.bound([key, 0], [key, 4294967295])));
  const parts = {};
  for (const key of ["seed-old", "seed-big-older", "seed-big-newer", "seed-fresh", "seed-legacy"]) {
    parts[key] = { records: await records(key), registered: (await ask("partials", (s) => s.get(key))) !== undefined };
  }
  const files = {};
  for (const i of [0, 1, 2, SEEDED_LAST]) {
    const name = `old-${String(i).padStart(4, "0")}.bin`;
    files[name] = { listed: (await ask("files", (s) => s.get(name))) !== undefined, records: await records(`seed-file-${i}`) };
  }
  const out = {
    parts,
    files,
    file_count: await ask("files", (s) => s.count()),
    finished_count: await ask("finished", (s) => s.count()),
    upgraded: (await ask("meta", (s) => s.get("upgraded_to_2"))) === true,
  };
  db.close();
  return out;
}
const SEEDED_LAST = SEEDED_FILES - 1;
const stateSource = `(${state.toString().replace("SEEDED_LAST", String(SEEDED_LAST))})()`;

const browser = await launch();
try {
  const ada = await Person.open(browser, "Ada", `${base}/?automation`);
  const link = await createRoom(ada);
  const bob = await Person.open(browser, "Bob", `${link}?automation`);
  await greeted(ada, bob);
  // The app has made (upgraded) its database by the time it met Ada.
  await bob.page.evaluate(seed, { now: Date.now(), day: DAY, files: SEEDED_FILES });
  result.seeded = await bob.page.evaluate(stateSource);

  const before = bob.events.length;
  const adaBefore = ada.events.length;
  await bob.page.reload();
  await bob.waitFor("Ada's hello after the reload", (e) => e.event === "peer_hello", { since: before });
  await ada.waitFor("Bob's hello after the reload", (e) => e.event === "peer_hello", { since: adaBefore });
  // The store tidies up as it starts, in the background: give it a few seconds.
  for (let waited = 0; waited < 20_000; waited += 250) {
    result.after_reload = await bob.page.evaluate(stateSource);
    if (result.after_reload.upgraded && result.after_reload.parts["seed-old"].records === 0) break;
    await sleep(250);
  }

  const spot = await ada.spot("peer");
  const received = async (what, since) => {
    const done = await bob.waitFor(what, (e) => e.event === "transfer_completed" && e.dir === "in", { since, timeout: 60_000 });
    return done.location;
  };
  let since = bob.events.length;
  const firstSha = await ada.dropNewFile(FILE, SIZE, spot, { lastModified: MODIFIED });
  const firstAt = await received("the first file", since);
  result.first = { sent: firstSha, location: firstAt, stored: await bob.storedFile(firstAt) };
  result.after_first = await bob.page.evaluate(stateSource);

  since = bob.events.length;
  const secondSha = await ada.dropNewFile(FILE, SIZE, spot, { lastModified: MODIFIED });
  const secondAt = await received("the same file again, other bytes", since);
  result.second = { sent: secondSha, location: secondAt, stored: await bob.storedFile(secondAt) };
  result.first_after_second = await bob.storedFile(firstAt);
  result.after_second = await bob.page.evaluate(stateSource);
  await sleep(300);
  await bob.screenshot(out, "bob-storage.png");
  result.errors = { ada: ada.errors, bob: bob.errors };
} finally {
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close();
}
