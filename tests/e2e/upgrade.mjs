// Bob's browser as an older version of Duet left it (the `before-keys` fixture: localStorage
// and IndexedDB, restored into a fresh profile at the same origin) opens today's web client:
// what does it show of his name, his received file, his room and its history; and does a new
// person meet him under his name, with a key that stays his across a reload. Prints
// `RESULT {json}` for the Rust test to check.
//
// usage: node tests/e2e/upgrade.mjs BASE_URL FIXTURE_JSON NEW_ROOM_LINK OUT_DIR
import { readFileSync } from "node:fs";
import { CONTEXT_OPTIONS, Person, launch, sleep } from "./duet.mjs";

const [base, fixture, newLink, out] = process.argv.slice(2);
const { install, storage } = JSON.parse(readFileSync(fixture, "utf8"));
const result = { origins: storage.origins.map((o) => o.origin) };

const browser = await launch();
try {
  const context = await browser.newContext({ ...CONTEXT_OPTIONS, storageState: storage });
  const bob = await Person.inContext(context, "Bob", `${base}/?automation`);
  const ready = await bob.waitFor("Bob's start", (e) => e.event === "ready");
  result.name = ready.name;
  result.identity = ready.identity;
  result.received = (await bob.waitFor("the received files", (e) => e.event === "received_files")).names;
  result.stored_file = await bob.storedFile(install.file);

  // The old room, in "Recent rooms": it has expired on the server, its history has not.
  const inLobby = (e) => e.event === "layout" && e.recent_rooms?.[install.room];
  await bob.waitFor("the old room in the lobby", inLobby);
  await sleep(300);
  const layout = [...bob.events].reverse().find(inLobby);
  await bob.screenshot(out, "upgraded-web-lobby.png");
  let since = bob.events.length;
  await bob.page.mouse.click(...layout.recent_rooms[install.room]);
  result.history_loaded = (await bob.waitFor("the history", (e) => e.event === "history_loaded", { since })).stored;
  result.history = (await bob.waitFor("its lines", (e) => e.event === "history", { since })).entries;
  // A browser hides why a WebSocket was refused: the page asks the server, then says it.
  const told = (e) => e.event === "notice" && e.message.includes("does not exist");
  result.closed = (await bob.waitFor("the room's end, in words", told, { since })).message;
  await sleep(500);
  await bob.screenshot(out, "upgraded-web-old-room.png");

  // A new room, a new person; then Bob reloads and is still the same key to her.
  let ada;
  for (const run of [0, 1]) {
    since = bob.events.length;
    if (run === 0) await bob.page.goto(`${newLink}?automation`);
    else await bob.page.reload();
    const again = await bob.waitFor("Bob's start", (e) => e.event === "ready", { since });
    const adaSince = ada ? ada.events.length : 0;
    ada ??= await Person.open(browser, "Ada", `${newLink}?automation`);
    const hello = await ada.waitFor("Bob's hello", (e) => e.event === "peer_hello", { since: adaSince });
    await bob.waitFor("Ada's hello", (e) => e.event === "peer_hello", { since });
    await ada.say(`welcome back ${run}`);
    const heard = await bob.waitFor("Ada's message", (e) => e.event === "chat" && !e.mine, { since });
    result[`run_${run}`] = { identity: again.identity, name: again.name, ada_saw: { name: hello.name, identity: hello.identity }, heard: heard.text };
  }
  result.errors = bob.errors;
} finally {
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close();
}
