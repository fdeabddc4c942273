// Two phones. Ada and Bob each open Duet in Chromium's mobile emulation (a phone held upright,
// touch, a phone's user agent), and everything they do is a real touch through DevTools
// (`Input.dispatchTouchEvent`), never a mouse: Ada creates a room and shares its link (the page's
// `navigator.share` is observed); Bob joins, taps the chat input (an editable element must take
// the focus, which is what opens a phone's keyboard), types and sends with Enter; the keyboard
// takes the lower part of the screen and the input stays above it; Ada presses and holds Bob's
// avatar, picks a file with the file chooser from its menu, Bob downloads it; Ada removes Bob
// with a long press. Screenshots of both, upright. Prints `RESULT {json}`.
//
// usage: node tests/e2e/phones.mjs BASE_URL OUT_DIR FILE
import { readFileSync } from "node:fs";
import { PHONE_CONTEXT, Person, greeted, launch, sha256Hex, sleep, throttledStart } from "./duet.mjs";

const [base, out, file] = process.argv.slice(2);
const result = {};

const PHONE = PHONE_CONTEXT;

// How tall the phone's keyboard is: the page is resized by that much (the page asks for
// `interactive-widget=resizes-content`, which is what a phone then does).
const KEYBOARD = 330;

// Runs in each page before the app: a share sheet that records what it was given.
function shareSheet() {
  window.__shared = [];
  navigator.share = (data) => {
    window.__shared.push({ title: data.title, url: data.url });
    return Promise.resolve();
  };
}

/** A finger on (x, y) for `hold` ms, then lifted: a tap, or with a long hold a long press. */
async function touch(person, [x, y], hold = 60) {
  person.cdp ??= await person.context.newCDPSession(person.page);
  await person.cdp.send("Input.dispatchTouchEvent", { type: "touchStart", touchPoints: [{ x, y }] });
  await sleep(hold);
  await person.cdp.send("Input.dispatchTouchEvent", { type: "touchEnd", touchPoints: [] });
}

/** Taps the control the newest layout has under `key` (a field of the layout, or `[field, name]`). */
async function tap(person, key, options) {
  const [field, name] = Array.isArray(key) ? key : [key];
  const has = (e) => e.event === "layout" && (name ? e[field]?.[name] : e[field]);
  await person.waitFor(`layout with ${key}`, has, options);
  const latest = [...person.events].reverse().find(has);
  const at = name ? latest[field][name] : latest[field];
  await touch(person, at);
  return at;
}

async function phone(browser, name, url) {
  const context = await browser.newContext(PHONE);
  await context.addInitScript(shareSheet);
  return Person.inContext(context, name, url);
}

const focused = (person) =>
  person.page.evaluate(() => {
    const element = document.activeElement;
    return {
      tag: element?.tagName,
      id: element?.id,
      editable: element instanceof HTMLInputElement || element?.isContentEditable === true,
    };
  });

// Chromium's emulated pixel density alone leaves `devicePixelContentBoxSize` (how winit sizes the
// canvas) at the real screen's density, half of a phone's: the browser itself runs at the
// phone's density too, as a phone's browser does.
const browser = await launch({ extra: [`--force-device-scale-factor=${PHONE.deviceScaleFactor}`] });
try {
  const ada = await phone(browser, "Ada", `${base}/?automation`);
  const first = await ada.waitFor("first frame", (e) => e.event === "first_frame");
  result.ada_first_frame_ms = first.ms;
  const lobby = await ada.waitFor("the lobby's layout", (e) => e.event === "layout" && e.create_button);
  result.lobby_window = lobby.window;
  await tap(ada, "create_button");
  const entered = await ada.waitFor("the room", (e) => e.event === "screen" && e.screen === "room");
  // The compact layout: "More" in the top bar, the chat input below the room.
  const room = await ada.waitFor("the compact room", (e) => e.event === "layout" && e.more_button && e.chat_input && e.me);
  result.compact = { more: room.more_button, chat_input: room.chat_input, me: room.me, window: room.window };

  // "Share link" opens the phone's share sheet with the room's link.
  await tap(ada, "copy_button");
  for (let waited = 0; (await ada.page.evaluate(() => window.__shared.length)) === 0; waited += 100) {
    if (waited > 10_000) {
      await ada.screenshot(out, "ada-phone-share-failed.png");
      console.error(JSON.stringify(ada.latest("layout")), await ada.page.evaluate(() => JSON.stringify({ share: typeof navigator.share, dpr: devicePixelRatio, w: innerWidth, h: innerHeight, cw: document.getElementById("duet").width, ccw: document.getElementById("duet").clientWidth, vv: visualViewport.scale, vvw: visualViewport.width, style: document.getElementById("duet").getAttribute("style") })));
      console.error(ada.events.filter((e) => e.event !== "layout").map((e) => JSON.stringify(e)).join("\n"));
      throw new Error("Share link did not open the share sheet");
    }
    await sleep(100);
  }
  result.shared = (await ada.page.evaluate(() => window.__shared))[0];
  result.link = entered.link;

  const bob = await phone(browser, "Bob", `${entered.link}?automation`);
  await greeted(ada, bob);
  await bob.waitFor("Bob's compact room", (e) => e.event === "layout" && e.more_button && e.chat_input);

  // Bob taps the chat input: the page's own input takes the focus (a phone opens its keyboard).
  result.focus_before = await focused(bob);
  const inputAt = await tap(bob, "chat_input");
  for (let waited = 0; !(await focused(bob)).editable; waited += 100) {
    if (waited > 10_000) break;
    await sleep(100);
  }
  result.focus_after_tap = await focused(bob);
  result.input_at = inputAt;

  // The keyboard comes up: the page is that much shorter, and the input must stay in view.
  await bob.page.setViewportSize({ width: PHONE.viewport.width, height: PHONE.viewport.height - KEYBOARD });
  const shorter = await bob.waitFor(
    "the layout above the keyboard",
    (e) => e.event === "layout" && e.window?.[1] <= PHONE.viewport.height - KEYBOARD + 1 && e.chat_input,
  );
  await sleep(500);
  result.with_keyboard = await bob.page.evaluate(() => {
    const field = document.getElementById("duet-field-chat").getBoundingClientRect();
    return { top: field.top, bottom: field.bottom, height: innerHeight, shown: field.height > 0 };
  });
  result.with_keyboard.layout_input = shorter.chat_input;
  result.focus_with_keyboard = await focused(bob);
  await bob.screenshot(out, "bob-phone-keyboard.png");

  const text = "Hi Ada, typed on my phone 📱";
  await bob.page.keyboard.type(text, { delay: 20 });
  await bob.page.keyboard.press("Enter");
  const heard = await ada.waitFor("Bob's message", (e) => e.event === "chat" && !e.mine);
  result.chat_received = heard.text;
  // His bubble over his avatar, the emoji drawn (look at it).
  await ada.screenshot(out, "ada-phone-bubble.png");
  await bob.waitFor("a delivered receipt", (e) => e.event === "chat" && e.mine && e.state === "delivered");
  await sleep(300);
  result.input_after_send = await bob.page.evaluate(() => document.getElementById("duet-field-chat").value);
  // The keyboard goes away.
  await bob.page.setViewportSize(PHONE.viewport);

  // A short tap on Bob's avatar opens nothing; pressing and holding it opens his menu.
  const peer = await ada.spot("peer");
  const beforeTap = ada.events.length;
  await touch(ada, peer, 80);
  await sleep(1_500);
  result.menu_after_tap = ada.events.slice(beforeTap).some((e) => e.event === "layout" && e.kick_button);
  const beforeHold = ada.events.length;
  await touch(ada, peer, 900);
  const menu = await ada.waitFor("the avatar menu", (e) => e.event === "layout" && e.menu_send_button && e.kick_button, { since: beforeHold });
  result.menu = { send: menu.menu_send_button, kick: menu.kick_button };
  await ada.screenshot(out, "ada-phone-menu.png");

  // "Send a file…" opens the file chooser (on a phone: camera, gallery, files).
  const [chooser] = await Promise.all([ada.page.waitForEvent("filechooser", { timeout: 30_000 }), touch(ada, menu.menu_send_button)]);
  result.chooser_multiple = chooser.isMultiple();
  await chooser.setFiles(file);
  const sent = sha256Hex(readFileSync(file));
  const received = await bob.waitFor("the file", (e) => e.event === "transfer_completed" && e.dir === "in", { timeout: 120_000 });
  result.received_name = received.location;
  // The chat shows; "Files" switches the column to the files.
  const before = bob.events.length;
  await tap(bob, ["tab_buttons", "files"]);
  await bob.waitFor("the download button", (e) => e.event === "layout" && e.file_button, { since: before });
  const buttonAt = await bob.spot("file_button");
  await bob.screenshot(out, "bob-phone-received.png");
  result.file_button = buttonAt;
  const [download] = await Promise.all([bob.page.waitForEvent("download", { timeout: 60_000 }), touch(bob, buttonAt)]);
  result.download_sha256 = sha256Hex(readFileSync(await download.path()));
  result.sent_sha256 = sent;

  await sleep(500);
  await ada.screenshot(out, "ada-phone.png");
  await bob.screenshot(out, "bob-phone.png");

  // Ada created the room: a long press on Bob, then "Kick Bob".
  const beforeKick = ada.events.length;
  await touch(ada, peer, 900);
  const again = await ada.waitFor("the avatar menu again", (e) => e.event === "layout" && e.kick_button, { since: beforeKick });
  await touch(ada, again.kick_button);
  const confirmed = await ada.waitFor("the kick confirmed", (e) => e.event === "notice" && e.message.startsWith("Your peer was removed"), { since: beforeKick });
  result.kick_notice = confirmed.message;
  const told = await bob.waitFor("Bob told", (e) => e.event === "notice" && /removed/i.test(e.message), { since: before });
  result.bob_told = told.message;
  result.errors = { ada: ada.errors, bob: bob.errors };
  await ada.close();
  await bob.close();

  // A first visit on a phone's connection and CPU (a report: the build under test here is the
  // dev build; `cargo xtask bench browser` measures the shipped one).
  result.throttled = await throttledStart(browser, `${base}/?automation`, PHONE);
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(result)}`);
