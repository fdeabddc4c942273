// A browser and a native client in one room (the Rust test runs the native side): they exchange
// a chat and a file both ways, and the browser's call is declined by the desktop app, which has
// no call media yet. Prints `RESULT {json}`.
//
// usage: node tests/e2e/interop.mjs ROOM_LINK OUT_DIR EXPECTED_TEXT EXPECTED_SHA256
import { Person, launch, sleep } from "./duet.mjs";

const [link, out, expectedText, expectedSha] = process.argv.slice(2);
const result = {};
const browser = await launch();
try {
  // Bea's engine drops every grant it sends from the 3rd on, as lost messages would be, until
  // it repeats one after 2 s without chunks: what stalled CI for good once.
  const bea = await Person.open(browser, "Bea", `${link}?automation&fault_drop_grant=3`);
  const hello = await bea.waitFor("the native client's hello", (e) => e.event === "peer_hello");
  result.peer_name = hello.name;
  const heard = await bea.waitFor("the native client's chat", (e) => e.event === "chat" && !e.mine && e.text === expectedText);
  result.chat_received = heard.text;
  // The desktop app cannot take calls yet: Bea's call is turned down at once, in words.
  const callButton = await bea.waitFor("the call button", (e) => e.event === "layout" && e.call_buttons?.call);
  await bea.page.mouse.click(...callButton.call_buttons.call);
  const refused = await bea.waitFor("the refused call", (e) => e.event === "call_ended");
  result.call_ended = { reason: refused.reason, message: refused.message };
  await bea.say("Hi from the browser!");
  await bea.waitFor("a delivered receipt", (e) => e.event === "chat" && e.mine && e.state === "delivered");

  const incoming = await bea.waitFor("the native client's file", (e) => e.event === "transfer_completed" && e.dir === "in", { timeout: 180_000 });
  result.received = await bea.storedFile(incoming.location);
  result.received_ok = result.received && result.received.sha256 === expectedSha;
  result.grant_repeated = bea.logs.some((line) => line.includes("granting again"));

  const started = Date.now();
  result.sent_sha256 = await bea.dropNewFile("from-the-browser.bin", 5 * 1024 * 1024, await bea.spot("peer"));
  await bea.waitFor("the sent file", (e) => e.event === "transfer_completed" && e.dir === "out", { timeout: 180_000 });
  result.send_secs = (Date.now() - started) / 1000;
  await sleep(300);
  await bea.screenshot(out, "interop-browser.png");
  result.errors = bea.errors;
} finally {
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close();
}
