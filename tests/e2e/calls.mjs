// A call between two browsers (Chromium's fake microphone and camera: a beeping tone and a test
// picture). Ada presses "Video call", Bob's page rings and he presses "Accept with video"; both
// pages' media stats (the app's `call_stats` events, read from `getStats()` once a second) must
// show audio and video bytes and packets growing both ways and a non-zero audio level. During
// the call they chat and Ada drops a file on Bob's avatar. Ada mutes: her outbound audio stops
// and Bob's inbound audio stops growing. Ada hangs up: both pages end the call and the media
// connection stops reporting. Prints `RESULT {json}` for the Rust test to check.
//
// usage: node tests/e2e/calls.mjs BASE_URL OUT_DIR
import { Person, createRoom, freshStats, greeted, launch, press, sleep } from "./duet.mjs";

const [base, out] = process.argv.slice(2);
const result = {};

const browser = await launch();
try {
  const ada = await Person.open(browser, "Ada", `${base}/?automation`);
  const link = await createRoom(ada);
  const bob = await Person.open(browser, "Bob", `${link}?automation`);
  await greeted(ada, bob);

  await press(ada, "video_call");
  await ada.waitFor("calling", (e) => e.event === "call" && e.phase === "calling");
  const ringing = await bob.waitFor("ringing", (e) => e.event === "call" && e.phase === "ringing");
  result.ringing_video = ringing.video;
  result.ringing_notice = (await bob.waitFor("the ringing notice", (e) => e.event === "notice" && /calling you/.test(e.message))).message;
  await press(bob, "accept_video");
  await ada.waitFor("active", (e) => e.event === "call" && e.phase === "active", { timeout: 60_000 });
  await bob.waitFor("active", (e) => e.event === "call" && e.phase === "active", { timeout: 60_000 });

  // Media flows both ways: two samples a few seconds apart.
  await sleep(1500);
  const first = { ada: await freshStats(ada), bob: await freshStats(bob) };
  await sleep(3000);
  const second = { ada: await freshStats(ada), bob: await freshStats(bob) };
  result.media = {};
  for (const who of ["ada", "bob"]) {
    const [a, b] = [first[who], second[who]];
    result.media[who] = {
      inbound_audio_bytes_growth: b.inbound_audio_bytes - a.inbound_audio_bytes,
      inbound_audio_packets_growth: b.inbound_audio_packets - a.inbound_audio_packets,
      inbound_video_bytes_growth: b.inbound_video_bytes - a.inbound_video_bytes,
      peer_level: Math.max(a.peer_level, b.peer_level),
      rtt_ms: b.rtt_ms,
    };
  }
  result.bob_sees_ada_camera = bob.events.some((e) => e.event === "peer_media" && e.camera === true);
  await ada.screenshot(out, "ada-in-call.png");
  await bob.screenshot(out, "bob-in-call.png");

  // A call never blocks chat or files.
  await ada.say("Can you hear me?");
  result.chat_during_call = (await bob.waitFor("Ada's chat", (e) => e.event === "chat" && !e.mine)).text;
  const [x, y] = await ada.spot("peer");
  result.file_sha256 = await ada.dropNewFile("during-call.bin", 2 * 1024 * 1024, [x, y]);
  const received = await bob.waitFor("the file", (e) => e.event === "transfer_completed" && e.dir === "in", { timeout: 120_000 });
  result.file_stored = await bob.storedFile(received.location);

  // Mute: Ada's audio stops leaving, Bob's inbound audio stops growing.
  await press(ada, "mute");
  result.bob_sees_mute = (await bob.waitFor("Ada muted", (e) => e.event === "peer_media" && e.muted === true)).muted;
  await sleep(1500);
  const mutedA = { ada: await freshStats(ada), bob: await freshStats(bob) };
  await sleep(3000);
  const mutedB = { ada: await freshStats(ada), bob: await freshStats(bob) };
  result.muted = {
    ada_outbound_audio_growth: mutedB.ada.outbound_audio_bytes - mutedA.ada.outbound_audio_bytes,
    bob_inbound_audio_packets_growth: mutedB.bob.inbound_audio_packets - mutedA.bob.inbound_audio_packets,
    // Bob still talks: Ada still hears him.
    ada_inbound_audio_packets_growth: mutedB.ada.inbound_audio_packets - mutedA.ada.inbound_audio_packets,
  };

  // Hang up: both sides end the call and the media connection goes quiet.
  await press(ada, "hangup");
  result.ada_ended = (await ada.waitFor("ended here", (e) => e.event === "call_ended")).reason;
  result.bob_ended = (await bob.waitFor("ended there", (e) => e.event === "call_ended")).reason;
  result.bob_ended_message = (await bob.waitFor("the notice", (e) => e.event === "notice" && /ended the call/.test(e.message))).message;
  const hungUpAt = Date.now();
  await sleep(3500);
  result.stats_after_hangup = [ada, bob].map((p) => p.events.filter((e) => e.event === "call_stats" && e.at_ms > hungUpAt + 1200).length);
  result.errors = [...ada.errors, ...bob.errors].slice(0, 5);
  console.log(`RESULT ${JSON.stringify(result)}`);
} finally {
  await browser.close();
}
