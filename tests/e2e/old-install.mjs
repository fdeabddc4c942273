// Makes the browser half of the `before-keys` fixture with an older build of the web client
// (served by that version's `wrangler dev`): Bob creates a room in his lobby, Ada opens its link,
// they exchange two messages, Ada drops a file onto Bob's avatar. Bob's browser storage
// (localStorage and IndexedDB, as Playwright's storage state) is written to OUT_FILE with what
// his page reported: his name and identity, the room, the file's hash, and the chat lines as he
// last saw them. Run by hand; see game-client/tests/fixtures/README.md.
//
// usage: node tests/e2e/old-install.mjs BASE_URL OUT_FILE COMMIT
import { writeFileSync } from "node:fs";
import { Person, createRoom, greeted, launch, sleep } from "./duet.mjs";

const [base, outFile, commit] = process.argv.slice(2);
const FILE = "photo-before-keys.bin";
const SIZE = 48_000;

const browser = await launch();
try {
  const bob = await Person.open(browser, "Bob", `${base}/?automation`);
  const ready = await bob.waitFor("Bob's start", (e) => e.event === "ready");
  const link = await createRoom(bob);
  const ada = await Person.open(browser, "Ada", `${link}?automation`);
  await greeted(ada, bob);

  const hello = "Hello Bob! Written in a browser before devices had keys.";
  await ada.say(hello);
  await bob.waitFor("Ada's message", (e) => e.event === "chat" && !e.mine && e.text === hello);
  const reply = "Hi Ada, send me the photo?";
  await bob.say(reply);
  await bob.waitFor("the reply delivered", (e) => e.event === "chat" && e.mine && e.state === "delivered");

  const spot = await ada.spot("peer");
  const sha256 = await ada.dropNewFile(FILE, SIZE, spot);
  await bob.waitFor("the file", (e) => e.event === "transfer_completed" && e.dir === "in", { timeout: 60_000 });
  const stored = await bob.storedFile(FILE);
  if (stored?.sha256 !== sha256) throw new Error(`the stored file differs: ${JSON.stringify(stored)}`);
  // Every save the page started is finished by now; give IndexedDB a moment all the same.
  await sleep(1000);

  // What Bob's page showed of each message, in the order they came.
  const lines = new Map();
  for (const e of bob.events) {
    if (e.event !== "chat") continue;
    const { at_ms, event, ...line } = e;
    lines.set(line.id, line);
  }
  const install = {
    commit,
    room: link.split("/").pop(),
    link,
    name: ready.name,
    identity: ready.identity,
    file: FILE,
    file_sha256: sha256,
    history: [...lines.values()],
  };
  const storage = await bob.context.storageState({ indexedDB: true });
  writeFileSync(outFile, JSON.stringify({ install, storage }, null, 1) + "\n");
  console.log(`RESULT ${JSON.stringify({ install, origins: storage.origins.map((o) => o.origin) })}`);
} finally {
  await browser.close();
}
