// `cargo xtask bench hello`, browser part: what the authenticated hello costs between "both in
// the room" and "chat ready", browser to browser. JOINS times: Ada creates a room, Bob opens its
// link; times are when each page's automation event reached this process:
// - in_room: Bob's `connected` (both are in the room);
// - connected: the later `peer_joined` (the WebRTC connection is up);
// - verified: the later `peer_hello` (both proofs verified: chat is ready).
// The reference on the same connection: Ada's chat round trip (her message `sent` to `delivered`).
// Prints `RESULT {json}` with the per-join numbers.
//
// usage: node tests/bench/hello.mjs BASE_URL JOINS
import { Person, launch } from "../e2e/duet.mjs";

const [base, joinsArg] = process.argv.slice(2);
const JOINS = Number(joinsArg || 10);
const joins = [];

const browser = await launch();
try {
  for (let n = 0; n < JOINS; n++) {
    const ada = await Person.open(browser, "Ada", `${base}/?automation`);
    await ada.click("create_button");
    const entered = await ada.waitFor("the room", (e) => e.event === "screen" && e.screen === "room");
    await ada.waitFor("Ada in the room", (e) => e.event === "connected");
    const bob = await Person.open(browser, "Bob", `${entered.link}?automation`);
    const inRoom = (await bob.waitFor("Bob in the room", (e) => e.event === "connected")).at_ms;
    const joined = await Promise.all([ada, bob].map((p) => p.waitFor("the connection", (e) => e.event === "peer_joined")));
    const hello = await Promise.all([ada, bob].map((p) => p.waitFor("the hello", (e) => e.event === "peer_hello" || e.event === "hello_failed")));
    if (hello.some((e) => e.event !== "peer_hello")) throw new Error(`the hello failed: ${JSON.stringify(hello)}`);
    const connected = Math.max(...joined.map((e) => e.at_ms));
    const verified = Math.max(...hello.map((e) => e.at_ms));
    const text = `ping ${n}`;
    await ada.say(text);
    const sent = await ada.waitFor("sent", (e) => e.event === "chat" && e.mine && e.text === text);
    const delivered = await ada.waitFor("delivered", (e) => e.event === "chat" && e.mine && e.text === text && e.state === "delivered");
    joins.push({
      in_room_to_connected_ms: connected - inRoom,
      connected_to_verified_ms: verified - connected,
      in_room_to_verified_ms: verified - inRoom,
      chat_rtt_ms: delivered.at_ms - sent.at_ms,
    });
    await ada.close();
    await bob.close();
  }
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify({ joins })}`);
