// A browser and a native client in one room (the Rust test runs the native side): they exchange
// a chat and a file both ways, and talk: the browser calls, the desktop app accepts, and each
// hears the other (Chromium's fake microphone one way, the desktop's test tone the other).
// Prints `RESULT {json}`.
//
// usage: node tests/e2e/interop.mjs ROOM_LINK OUT_DIR EXPECTED_TEXT EXPECTED_SHA256
import { Person, freshStats, launch, press, sleep } from "./duet.mjs";

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
  // A voice call with the desktop app, which sends a 440 Hz tone: Bea calls, the native client
  // accepts, and audio flows both ways. Bea hangs up after 5 s of it.
  await press(bea, "call");
  await bea.waitFor("the call, active", (e) => e.event === "call" && e.phase === "active", { timeout: 60_000 });
  const activeAt = Date.now();
  await sleep(1500);
  const first = await freshStats(bea);
  await sleep(5000);
  const second = await freshStats(bea);
  const during = bea.events.filter((e) => e.event === "call_stats" && e.at_ms > activeAt);
  result.call = {
    inbound_audio_bytes_growth: second.inbound_audio_bytes - first.inbound_audio_bytes,
    inbound_audio_packets_growth: second.inbound_audio_packets - first.inbound_audio_packets,
    outbound_audio_bytes_growth: second.outbound_audio_bytes - first.outbound_audio_bytes,
    peer_level: Math.max(...during.map((e) => e.peer_level)),
    packets_lost: second.packets_lost,
    jitter_ms: second.jitter_ms,
    rtt_ms: second.rtt_ms,
  };
  await press(bea, "hangup");
  result.call.ended = (await bea.waitFor("the call's end", (e) => e.event === "call_ended")).reason;
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
