// Never missing the peer. Ada waits in her room; the page asks for nothing until she clicks
// "Notify me" (and says yes). Then she switches to another tab of her browser, so her room's
// page is hidden. Bob joins, writes, sends a file and calls: each time Ada's hidden tab counts in
// its title, shows a system notification and chimes; the call rings again and again. When Ada
// comes back to the tab, the count goes. The page's Notification constructor and Web Audio
// oscillators are observed (an init script wraps them, and still calls them). Ada's Chromium is
// started without Playwright's focus emulation, so its tabs hide as a person's do. Prints
// `RESULT {json}` for the Rust test to check.
//
// usage: node tests/e2e/attention.mjs BASE_URL OUT_DIR
import { Person, greeted, launch, launchWithTabs, press, sleep } from "./duet.mjs";

const [base, out] = process.argv.slice(2);
const result = {};

// Runs in Ada's pages before the app: records notifications, permission requests and tones.
function observe() {
  const seen = { notes: [], asked: 0, tones: 0 };
  window.__duet = seen;
  const Real = window.Notification;
  if (Real) {
    class Observed extends Real {
      constructor(title, options) {
        seen.notes.push({ title, body: options?.body, visibility: document.visibilityState, via: "page", data: options?.data });
        super(title, options);
      }
      static requestPermission(...args) {
        seen.asked++;
        return Real.requestPermission(...args);
      }
    }
    window.Notification = Observed;
  }
  // The service worker's way, the only one Chrome on Android has.
  const show = ServiceWorkerRegistration.prototype.showNotification;
  ServiceWorkerRegistration.prototype.showNotification = function (title, options) {
    seen.notes.push({ title, body: options?.body, visibility: document.visibilityState, via: "worker", data: options?.data });
    return show.call(this, title, options);
  };
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) {
    seen.tones++;
    return start.apply(this, args);
  };
}

const observed = (person) => person.page.evaluate(() => window.__duet);

const browser = await launch();
// Ada's Chromium: tabs that hide when another is in front (see `launchWithTabs`).
const tabs = await launchWithTabs();
try {
  const context = tabs.context;
  await context.addInitScript(observe);
  // No permission granted up front: DevTools' grant refuses every permission it does not list.
  const ada = await Person.inContext(context, "Ada", `${base}/?automation`, { grant: false });
  await ada.waitFor("first frame", (e) => e.event === "first_frame");
  await ada.click("create_button");
  const entered = await ada.waitFor("the room", (e) => e.event === "screen" && e.screen === "room");
  const buttons = (await ada.waitFor("the alert controls", (e) => e.event === "layout" && e.alert_buttons?.sound)).alert_buttons;
  result.buttons_before = Object.keys(buttons).sort();
  result.permission_before = await ada.page.evaluate(() => Notification.permission);
  result.asked_before_click = (await observed(ada)).asked;
  await ada.page.mouse.click(...buttons.notify);
  for (let waited = 0; (await observed(ada)).asked === 0; waited += 100) {
    if (waited > 20_000) throw new Error("Notify me did not ask for notifications");
    await sleep(100);
  }
  result.asked_after_click = (await observed(ada)).asked;
  // The person says yes when the browser asks (headless Chromium has no prompt to click).
  await context.grantPermissions(["notifications", "camera", "microphone"], { origin: base });
  for (let waited = 0; ; waited += 100) {
    const latest = ada.latest("layout")?.alert_buttons || {};
    if (latest.sound && !latest.notify) break;
    if (waited > 20_000) throw new Error("the Notify me button stayed after the permission was given");
    await sleep(100);
  }
  await ada.screenshot(out, "ada-waiting.png");
  // The app's service worker takes the page over once it has kept the app (sw.js); from then
  // on notifications go through it.
  for (let waited = 0; !(await ada.page.evaluate(() => !!navigator.serviceWorker.controller)); waited += 100) {
    if (waited > 60_000) throw new Error("no service worker took the page over");
    await sleep(100);
  }
  result.room_url = await ada.page.evaluate(() => location.href);
  // A page's client address in the service worker stays the one it was opened at.
  result.opened_at = `${base}/?automation`;

  // Another tab in front: the room's page is hidden.
  const other = await context.newPage();
  await other.goto(`${base}/manifest.webmanifest`);
  await other.bringToFront();
  await sleep(500);
  result.visibility = await ada.page.evaluate(() => document.visibilityState);
  const tonesBefore = (await observed(ada)).tones;

  const bob = await Person.open(browser, "Bob", `${entered.link}?automation`);
  await greeted(ada, bob);
  result.bob_name = ada.latest("peer_hello").name;
  const alerted = async (what) => {
    const event = await ada.waitFor(`an alert for ${what}`, (e) => e.event === "alerted" && e.what === what, { timeout: 60_000 });
    // The title follows in the same frame; a hidden tab draws about one a second.
    for (let waited = 0; (await ada.page.title()) !== `(${event.unseen}) Duet` && waited < 5_000; waited += 100) await sleep(100);
    return { unseen: event.unseen, sound: event.sound, told: event.told, title: await ada.page.title() };
  };
  result.joined = await alerted("joined");
  // Alerts within a second of each other are told once: a person's pace here.
  await sleep(1_500);
  await bob.say("Are you there?");
  result.message = await alerted("message");
  await sleep(1_500);
  const since = bob.events.length;
  await bob.dropNewFile("photo.jpg", 200 * 1024, await bob.spot("peer"));
  await bob.waitFor("the file sent", (e) => e.event === "transfer_completed" && e.dir === "out", { since, timeout: 60_000 });
  result.file = await alerted("file");
  const tonesBeforeCall = (await observed(ada)).tones;
  await sleep(1_500);
  await press(bob, "call");
  result.call = await alerted("call");
  // It rings on: a ring every 2 s, four tones each.
  await sleep(5_000);
  result.ring_tones = (await observed(ada)).tones - tonesBeforeCall;
  await press(bob, "hangup");
  await ada.waitFor("the call ended", (e) => e.event === "call_ended", { timeout: 30_000 });
  const seen = await observed(ada);
  result.notifications = seen.notes;
  result.chime_tones = tonesBeforeCall - tonesBefore;
  await bob.screenshot(out, "bob-calling-a-hidden-tab.png");

  // What the service worker shows, and where a click on it leads. Headless Chromium has no
  // notification centre to click in, and a script's own click event is not trusted (no
  // `waitUntil`, no right to focus), so the worker's click handler is called directly, with
  // `focus` observed: it must pick Ada's room among the browser's two windows of this app.
  const worker = context.serviceWorkers()[0] || (await context.waitForEvent("serviceworker", { timeout: 10_000 }));
  result.shown = await worker.evaluate(async () =>
    (await self.registration.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data })),
  );
  result.click = await worker.evaluate(async () => {
    const focused = [];
    const real = WindowClient.prototype.focus;
    WindowClient.prototype.focus = function () {
      focused.push(this.url);
      return Promise.resolve(this);
    };
    try {
      const windows = (await self.clients.matchAll({ type: "window", includeUncontrolled: true })).length;
      const [shown] = await self.registration.getNotifications();
      await focusRoom(shown.data);
      return { windows, focused };
    } finally {
      WindowClient.prototype.focus = real;
    }
  });

  // Ada comes back: the count goes.
  await ada.page.bringToFront();
  for (let waited = 0; (await ada.page.title()) !== "Duet" && waited < 10_000; waited += 100) await sleep(100);
  result.title_back = await ada.page.title();
  result.visibility_back = await ada.page.evaluate(() => document.visibilityState);
  // In sight, what Bob writes is not counted.
  const before = ada.events.length;
  await bob.say("Welcome back");
  await ada.waitFor("Bob's second message", (e) => e.event === "chat" && !e.mine && e.text === "Welcome back", { since: before });
  await sleep(1_500);
  result.alerts_in_sight = ada.events.slice(before).filter((e) => e.event === "alerted").length;
  result.title_in_sight = await ada.page.title();
  result.errors = { ada: ada.errors, bob: bob.errors };
} finally {
  console.log(`RESULT ${JSON.stringify(result)}`);
  await tabs.close();
  await browser.close();
}
