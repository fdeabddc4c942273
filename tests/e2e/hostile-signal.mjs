// A stranger with the room link attacks Ada's browser tab through the real signaling server:
// Mallory, in a page of her own browser context, speaks matchbox's protocol over a plain
// WebSocket (and, where a valid offer is needed, a real RTCPeerConnection of her own). Ada's tab
// must end each bad handshake, close its connection, stay in the room and still meet Bob.
// Ada's RTCPeerConnections are counted by an init script (a Proxy over the constructor); the app
// itself is untouched. Prints `RESULT {json}`.
//
// usage: node tests/e2e/hostile-signal.mjs BASE_URL OUT_DIR
import { CONTEXT_OPTIONS, Person, createRoom, greeted, launch, sleep } from "./duet.mjs";

const [base, out] = process.argv.slice(2);
const result = { failures: [] };
// `duet.test` is this server under a name that is not a loopback address, as a deployed Duet is.
const browser = await launch({ extra: ["--host-resolver-rules=MAP duet.test 127.0.0.1"] });

/** Counts the page's peer connections and which of them are still open. */
function countConnections() {
  const made = [];
  window.__duetConnections = {
    created: () => made.length,
    open: () => made.filter((pc) => pc.signalingState !== "closed").length,
  };
  window.RTCPeerConnection = new Proxy(window.RTCPeerConnection, {
    construct(target, args) {
      const pc = Reflect.construct(target, args);
      made.push(pc);
      return pc;
    },
  });
}

/** Mallory's tools, installed in her blank page. */
function installMallory() {
  window.mallory = {
    ws: null,
    id: null,
    events: [],
    async join(url) {
      this.events = [];
      this.ws = new WebSocket(url);
      this.ws.onmessage = (m) => this.events.push(JSON.parse(m.data));
      await new Promise((resolve, reject) => {
        this.ws.onopen = resolve;
        this.ws.onerror = () => reject(new Error("Mallory's join was refused"));
      });
      const assigned = await this.next((e) => e.IdAssigned);
      this.id = assigned.IdAssigned;
      return this.id;
    },
    async next(test, timeout = 30000) {
      const deadline = Date.now() + timeout;
      for (;;) {
        const i = this.events.findIndex(test);
        if (i >= 0) return this.events.splice(i, 1)[0];
        if (Date.now() > deadline) throw new Error(`Mallory waited in vain; saw ${JSON.stringify(this.events).slice(0, 500)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    signal(receiver, data) {
      this.ws.send(JSON.stringify({ Signal: { receiver, data } }));
    },
    async signalFrom(kind) {
      const e = await this.next((e) => e.Signal && e.Signal.data && e.Signal.data[kind] !== undefined);
      return { sender: e.Signal.sender, text: e.Signal.data[kind] };
    },
    leave() {
      this.ws.close();
    },
    // A real offer (two pre-negotiated channels, as Duet's) with all candidates gathered.
    async validOffer() {
      const pc = new RTCPeerConnection({ iceServers: [] });
      pc.createDataChannel("a", { negotiated: true, id: 0 });
      pc.createDataChannel("b", { negotiated: true, id: 1 });
      await pc.setLocalDescription(await pc.createOffer());
      if (pc.iceGatheringState !== "complete") {
        await new Promise((r) => (pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && r()));
      }
      this.pc = pc;
      return pc.localDescription.sdp;
    },
  };
}

try {
  const adaContext = await browser.newContext(CONTEXT_OPTIONS);
  await adaContext.addInitScript(countConnections);
  const ada = await Person.inContext(adaContext, "Ada", `${base}/?automation`);
  const link = await createRoom(ada);
  // Ada must be in the room before Mallory comes: the one already there makes the offer (a
  // slow tab still connecting would be the newcomer, and both would wait for the other).
  await ada.waitFor("Ada's connection to the room", (e) => e.event === "connected");
  const room = link.split("/r/")[1];
  const signalUrl = () => `${base.replace(/^http/, "ws")}/signal/${room}?identity=${crypto.randomUUID()}`;
  const adaOpen = () => ada.page.evaluate(() => window.__duetConnections.open());
  const failure = async (reason, since) => {
    const e = await ada.waitFor(`a ${reason} handshake failure`, (e) => e.event === "peer_failed" && e.reason === reason, { since, timeout: 50_000 });
    result.failures.push({ reason: e.reason, message: e.message, retrying: e.retrying ?? false });
    return e;
  };

  const malloryContext = await browser.newContext();
  const page = await malloryContext.newPage();
  // A page of the server's own (a JSON 404): Chromium refuses a blank page's WebSocket to a
  // local address (Private Network Access), which a stranger's page on the same server is not.
  await page.goto(`${base}/api/rooms/mallory`);
  await page.evaluate(installMallory);

  // 1. Ada offers to the newcomer; Mallory answers with a candidate and an answer that are not.
  let since = ada.events.length;
  await page.evaluate(async (url) => {
    await mallory.join(url);
    const offer = await mallory.signalFrom("Offer");
    mallory.signal(offer.sender, { IceCandidate: '{"candidate":"x"}' });
    mallory.signal(offer.sender, { Answer: "x" });
  }, signalUrl());
  await failure("BadDescription", since);
  await page.evaluate(() => mallory.leave());

  // 2. Mallory is there first, so she offers when Ada's page comes back (a reload): a real offer,
  //    preceded by candidates that are not candidates, and she never takes Ada's answer. Her
  //    page still answers ICE's checks, so Ada's path works and her handshake gets the grace
  //    for opening (15 s + 15 s): it ends as `NotOpened`, Ada's connection closed, and Ada's
  //    page joins the room again once for a fresh attempt (which Mallory never makes).
  await page.evaluate((url) => mallory.join(url), signalUrl());
  since = ada.events.length;
  const newPeer = page.evaluate(async () => {
    const joined = await mallory.next((e) => e.NewPeer);
    const ada = joined.NewPeer;
    mallory.signal(ada, { IceCandidate: "not json" });
    mallory.signal(ada, { IceCandidate: '{"candidate":"candidate:x","sdpMid":"0","sdpMLineIndex":0}' });
    mallory.signal(ada, { Offer: await mallory.validOffer() });
    await mallory.signalFrom("Answer");
    // After the answer: more candidates that are not.
    for (let i = 0; i < 5; i++) mallory.signal(ada, { IceCandidate: `{"candidate":"garbage ${i}","sdpMid":"0"}` });
    return true;
  });
  await ada.page.reload();
  result.answered = await newPeer;
  const stalled = await failure("NotOpened", since);
  // The first such failure makes Ada's page join again for a fresh attempt (which Mallory,
  // in the room first, would have to offer and does not): she must be back in her room
  // before the churn below, where she is the one already there.
  if (stalled.retrying) {
    await ada.waitFor("Ada back in her room", (e) => e.event === "connected", { since: ada.events.indexOf(stalled) });
  }
  await sleep(500);
  result.open_after_timeout = await adaOpen();
  await page.evaluate(() => mallory.leave());

  // 3. Churn: Mallory joins, waits for Ada's offer (a connection exists), leaves; six times.
  const createdBefore = await ada.page.evaluate(() => window.__duetConnections.created());
  for (let i = 0; i < 6; i++) {
    await page.evaluate(async (url) => {
      await mallory.join(url);
      await mallory.signalFrom("Offer");
      mallory.leave();
    }, signalUrl());
  }
  result.churn_connections_created = (await ada.page.evaluate(() => window.__duetConnections.created())) - createdBefore;
  for (let waited = 0; waited < 10_000 && (await adaOpen()) > 0; waited += 200) await sleep(200);
  result.open_after_churn = await adaOpen();

  // 4. Bob, honest, joins and chats: Ada is still in her room.
  const bob = await Person.open(browser, "Bob", `${link}?automation`);
  await greeted(ada, bob);
  await bob.say("still here?");
  result.chat_received = (await ada.waitFor("Bob's message", (e) => e.event === "chat" && !e.mine)).text;
  result.open_with_bob = await adaOpen();
  await ada.screenshot(out, "hostile-signal-ada.png");
  result.errors = ada.errors.filter((e) => /panicked|unreachable|RuntimeError/.test(e));
  result.logs_mention_refusals = ada.logs.some((l) => l.includes("refused"));

  // 5. A shared link that asks for the test hooks on a host that is not loopback gets none:
  //    no event log on the console, no fault injection.
  const eveContext = await browser.newContext(CONTEXT_OPTIONS);
  const eve = await eveContext.newPage();
  const lines = [];
  eve.on("console", (m) => lines.push(m.text()));
  await eve.goto(`${base.replace("127.0.0.1", "duet.test")}/?automation&fault_drop_grant=1`);
  await eve.waitForFunction(() => document.getElementById("status")?.hidden, null, { timeout: 120_000 });
  await sleep(2_000);
  result.hooks_elsewhere = {
    events: lines.filter((l) => l.startsWith("duet-event") && !l.includes('"first_frame"')).length,
    warned: lines.some((l) => l.includes("test hooks are ignored on duet.test")),
  };
  await eveContext.close();
} finally {
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close();
}
