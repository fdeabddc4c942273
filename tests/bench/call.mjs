// `cargo xtask bench call`: a video call between two browsers for DURATION seconds (60 by
// default) with Duet's wasm client, and in the same run the plain-JS reference call page
// (tests/bench/call-reference.html: getUserMedia and one RTCPeerConnection, nothing else). Each
// person gets their own Chromium with fake devices (a beeping tone and a test picture), so a
// tab's CPU is its browser's processes (browser, renderer, GPU, utility), nothing shared.
//
// Call quality comes from the pages' getStats() once a second (Duet's `call_stats` events, the
// reference's same numbers): round-trip time, jitter and received frames per second are medians
// over the call, packets lost is the total at the end, audio_level_ok says every side heard a
// non-zero level. CPU is (CPU seconds of the browser's process tree during the call) / (call
// seconds), in percent of one core, for each tab.
//
// Prints `RESULT {json}`; the Rust wrapper writes target/bench/call.json.
//
// usage: node tests/bench/call.mjs BASE_URL WORK_DIR [DURATION_SECS]
import { readFileSync } from "node:fs";
import { Person, createRoom, greeted, press, sleep } from "../e2e/duet.mjs";
import { launchTagged, treeCpu } from "./procs.mjs";

const [base, work, durationArg] = process.argv.slice(2);
const DURATION = Number(durationArg || 60);
const root = new URL("../../", import.meta.url).pathname;

const median = (values) => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : null;
};
const totalCpu = (pid) => Object.values(treeCpu(pid)).reduce((a, b) => a + b, 0);

/** Each browser's CPU seconds by process type from `before` (a `treeCpu` per pid) to now. */
const cpuByProcess = (pids, before) =>
  pids.map((pid, i) => {
    const now = treeCpu(pid);
    return Object.fromEntries(Object.keys(now).map((type) => [type, +(now[type] - (before[i][type] || 0)).toFixed(1)]));
  });

/** What both runs report, from each side's once-a-second stats and its browser's CPU. */
function summary(samples, cpuSecs, secs, byProcess) {
  const all = samples.flat();
  const last = samples.map((side) => side[side.length - 1] || {});
  return {
    rtt_ms: median(all.map((s) => s.rtt_ms).filter((v) => v > 0)),
    jitter_ms: median(all.map((s) => s.jitter_ms)),
    packets_lost: last.reduce((n, s) => n + (s.packets_lost || 0), 0),
    audio_level_ok: samples.every((side) => side.some((s) => s.peer_level > 0)),
    video_fps: median(all.map((s) => s.video_fps).filter((v) => v > 0)),
    cpu_percent_per_tab: cpuSecs.map((c) => +((100 * c) / secs).toFixed(1)),
    inbound_audio_packets: last.map((s) => s.inbound_audio_packets || 0),
    cpu_secs_by_process: byProcess,
    samples: all.length,
    secs,
  };
}

async function duetRun() {
  const a = await launchTagged(work);
  const b = await launchTagged(work);
  try {
    const ada = await Person.inContext(a.context, "Ada", `${base}/?automation`);
    const link = await createRoom(ada);
    const bob = await Person.inContext(b.context, "Bob", `${link}?automation`);
    await greeted(ada, bob);
    await press(ada, "video_call");
    await bob.waitFor("ringing", (e) => e.event === "call" && e.phase === "ringing");
    await press(bob, "accept_video");
    for (const p of [ada, bob]) await p.waitFor("active", (e) => e.event === "call" && e.phase === "active", { timeout: 60_000 });
    // Let the video settle (encoder ramp-up), then measure.
    await sleep(3000);
    const cpuBefore = [a.pid, b.pid].map(totalCpu);
    const typesBefore = [a.pid, b.pid].map(treeCpu);
    const started = Date.now();
    await sleep(DURATION * 1000);
    const secs = (Date.now() - started) / 1000;
    const cpu = [a.pid, b.pid].map((pid, i) => totalCpu(pid) - cpuBefore[i]);
    const byProcess = cpuByProcess([a.pid, b.pid], typesBefore);
    const samples = [ada, bob].map((p) => p.events.filter((e) => e.event === "call_stats" && e.at_ms > started));
    await press(ada, "hangup");
    await bob.waitFor("the end", (e) => e.event === "call_ended");
    return summary(samples, cpu, secs, byProcess);
  } finally {
    await a.close();
    await b.close();
  }
}

async function referencePage(context) {
  await context.grantPermissions(["camera", "microphone"]);
  const page = context.pages()[0] || (await context.newPage());
  // Same origin as Duet (a secure context on 127.0.0.1), then the reference page's own markup.
  await page.goto(`${base}/api/rooms/bench-reference`);
  await page.setContent(readFileSync(`${root}tests/bench/call-reference.html`, "utf8"));
  return page;
}

async function referenceRun() {
  const a = await launchTagged(work);
  const b = await launchTagged(work);
  try {
    const caller = await referencePage(a.context);
    const callee = await referencePage(b.context);
    const offer = await caller.evaluate(() => window.offer());
    const answer = await callee.evaluate((sdp) => window.answer(sdp), offer);
    await caller.evaluate((sdp) => window.accept(sdp), answer);
    await Promise.all([caller, callee].map((p) => p.evaluate(() => window.connected())));
    await sleep(3000);
    const cpuBefore = [a.pid, b.pid].map(totalCpu);
    const typesBefore = [a.pid, b.pid].map(treeCpu);
    const started = Date.now();
    const samples = [[], []];
    while (Date.now() - started < DURATION * 1000) {
      await sleep(1000);
      for (const [i, page] of [caller, callee].entries()) samples[i].push(await page.evaluate(() => window.stats()));
    }
    const secs = (Date.now() - started) / 1000;
    const cpu = [a.pid, b.pid].map((pid, i) => totalCpu(pid) - cpuBefore[i]);
    return summary(samples, cpu, secs, cpuByProcess([a.pid, b.pid], typesBefore));
  } finally {
    await a.close();
    await b.close();
  }
}

const duet = await duetRun();
const reference = await referenceRun();
const ratio = (key) => {
  const [d, r] = [duet[key], reference[key]];
  return Array.isArray(d) ? d.map((v, i) => +(v / r[i]).toFixed(2)) : d && r ? +(d / r).toFixed(2) : null;
};
const result = {
  rtt_ms: duet.rtt_ms,
  jitter_ms: duet.jitter_ms,
  packets_lost: duet.packets_lost,
  audio_level_ok: duet.audio_level_ok,
  video_fps: duet.video_fps,
  cpu_percent_per_tab: duet.cpu_percent_per_tab,
  duration_secs: DURATION,
  reference,
  ratio_to_reference: {
    rtt_ms: ratio("rtt_ms"),
    jitter_ms: ratio("jitter_ms"),
    video_fps: ratio("video_fps"),
    cpu_percent_per_tab: ratio("cpu_percent_per_tab"),
  },
  duet,
};
console.log(`RESULT ${JSON.stringify(result)}`);
