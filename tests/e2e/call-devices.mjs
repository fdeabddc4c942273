// Calls when the browser has no microphone, or says no to it. Ada (fake devices) calls Bob,
// whose Chromium has no media devices at all: Bob accepts, and both are told in words that
// he has no microphone. Bob leaves; Carol, whose browser has the microphone blocked for the
// site (its permission set to "denied", as a person's "Block" does), accepts Ada's next call:
// both are told that her browser blocked it. Chat keeps working throughout. Prints `RESULT {json}`.
//
// usage: node tests/e2e/call-devices.mjs BASE_URL
import { CONTEXT_OPTIONS, Person, createRoom, greeted, launch, press } from "./duet.mjs";

const [base] = process.argv.slice(2);
const result = {};
const withDevices = await launch();
const noDevices = await launch({ without: ["--use-fake-device-for-media-stream"] });
// Carol's browser is like Ada's, but her microphone and camera are blocked for this site in its
// settings (below), as when a person pressed "Block": no prompt, the browser says no.
// (No fake prompt for her: it would say yes whatever the settings say. A page without
// microphone permission names its addresses by mDNS in its candidates, which nothing resolves
// in the tests' loopback-only network, so her addresses show, as Ada's do.)
const refusing = await launch({
  without: ["--use-fake-ui-for-media-stream"],
  extra: ["--disable-features=WebRtcHideLocalIpsWithMdns"],
});

/** Ada calls `peer`, who accepts; what each side was told. */
async function callAndFail(ada, peer) {
  await press(ada, "call");
  await peer.waitFor("ringing", (e) => e.event === "call" && e.phase === "ringing");
  const since = { ada: ada.events.length, peer: peer.events.length };
  await press(peer, "accept");
  const here = await peer.waitFor("the end here", (e) => e.event === "call_ended", { since: since.peer });
  const there = await ada.waitFor("the end there", (e) => e.event === "call_ended", { since: since.ada });
  return { peer: { reason: here.reason, message: here.message }, ada: { reason: there.reason, message: there.message } };
}

const people = [];
try {
  const ada = await Person.open(withDevices, "Ada", `${base}/?automation`);
  people.push(ada);
  const link = await createRoom(ada);

  const bob = await Person.open(noDevices, "Bob", `${link}?automation`);
  people.push(bob);
  await greeted(ada, bob);
  result.no_microphone = await callAndFail(ada, bob);
  await bob.say("no microphone here");
  result.chat_after_no_microphone = (await ada.waitFor("Bob's chat", (e) => e.event === "chat" && !e.mine)).text;
  const left = ada.events.length;
  await bob.context.close();
  await ada.waitFor("Bob gone", (e) => e.event === "peer_left", { since: left });

  const hellos = ada.events.length;
  const carolContext = await refusing.newContext(CONTEXT_OPTIONS);
  const blocker = await carolContext.newCDPSession(await carolContext.newPage());
  for (const name of ["microphone", "camera"]) {
    await blocker.send("Browser.setPermission", { permission: { name }, setting: "denied", origin: new URL(base).origin });
  }
  const carol = await Person.inContext(carolContext, "Carol", `${link}?automation`, { grant: false });
  people.push(carol);
  await ada.waitFor("Carol's hello", (e) => e.event === "peer_hello", { since: hellos });
  await carol.waitFor("Ada's hello", (e) => e.event === "peer_hello");
  result.denied = await callAndFail(ada, carol);
  await carol.say("blocked, but here");
  result.chat_after_denied = (await ada.waitFor("Carol's chat", (e) => e.event === "chat" && !e.mine && e.text === "blocked, but here")).text;
  result.errors = [...ada.errors, ...carol.errors].slice(0, 5);
} catch (e) {
  for (const p of people) console.error(`${p.name}'s last events:\n  ${p.events.filter((e) => e.event !== "layout").slice(-10).map((e) => JSON.stringify(e)).join("\n  ")}\n  errors: ${p.errors.slice(-3).join(" | ")}`);
  throw e;
} finally {
  console.log(`RESULT ${JSON.stringify(result)}`);
  for (const b of [withDevices, noDevices, refusing]) await b.close();
}
