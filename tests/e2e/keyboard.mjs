// The room from the keyboard alone. Ada opens Duet on a desktop-sized page and uses no mouse:
// Tab moves the focus (the app reports where it is) until it is on "Create a room", Enter
// presses it; in the room Tab reaches "Copy link" and Enter copies the link. Then the same page
// at twice the pixel density (a browser zoomed to 200 %, or a HiDPI screen): the layout in
// logical pixels is the same, so text and controls are drawn twice as large. Prints
// `RESULT {json}`.
//
// usage: node tests/e2e/keyboard.mjs BASE_URL OUT_DIR
import { CONTEXT_OPTIONS, Person, launch, sleep } from "./duet.mjs";

const [base, out] = process.argv.slice(2);
const result = {};

const same = (a, b) => a && b && Math.abs(a[0] - b[0]) < 1 && Math.abs(a[1] - b[1]) < 1;

/** Presses Tab until the focus is on the control the newest layout has under `key`. */
async function tabTo(person, key, most = 12) {
  for (let presses = 1; presses <= most; presses++) {
    const since = person.events.length;
    await person.page.keyboard.press("Tab");
    const layout = await person.waitFor("a layout after Tab", (e) => e.event === "layout" && e.focused, { since, timeout: 10_000 }).catch(() => null);
    const latest = person.latest("layout");
    if (layout && same(latest.focused, latest[key])) return presses;
  }
  throw new Error(`${person.name}: Tab never reached ${key}`);
}

const browser = await launch();
const closeLater = [browser];
try {
  const context = await browser.newContext(CONTEXT_OPTIONS);
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  const ada = await Person.inContext(context, "Ada", `${base}/?automation`, { grant: false });
  await ada.waitFor("first frame", (e) => e.event === "first_frame");
  const lobby = await ada.waitFor("the lobby", (e) => e.event === "layout" && e.create_button);
  // The page's canvas has the keyboard from the start (it is the page).
  await ada.page.focus("#duet");
  result.tabs_to_create = await tabTo(ada, "create_button");
  await ada.page.keyboard.press("Enter");
  const entered = await ada.waitFor("the room", (e) => e.event === "screen" && e.screen === "room");
  result.link = entered.link;
  await ada.waitFor("the room's layout", (e) => e.event === "layout" && e.copy_button);
  result.tabs_to_copy = await tabTo(ada, "copy_button");
  await ada.page.keyboard.press("Enter");
  await sleep(500);
  result.copied = await ada.page.evaluate(() => navigator.clipboard.readText());
  result.layout_1x = { window: lobby.window, create: lobby.create_button };
  await ada.close();

  // Twice the pixels per logical pixel: the same logical layout, drawn twice as large. (The
  // browser itself at that density: Chromium's emulated density alone leaves
  // `devicePixelContentBoxSize`, which winit sizes the canvas by, at the screen's.)
  const dense = await launch({ extra: ["--force-device-scale-factor=2"] });
  closeLater.push(dense);
  const zoomed = await dense.newContext({ ...CONTEXT_OPTIONS, deviceScaleFactor: 2 });
  const big = await Person.inContext(zoomed, "Ada at 200 %", `${base}/?automation`, { grant: false });
  const layout = await big.waitFor("the lobby at 200 %", (e) => e.event === "layout" && e.create_button);
  result.layout_2x = { window: layout.window, create: layout.create_button };
  await big.screenshot(out, "lobby-200.png");
  result.screenshot_px = await big.page.evaluate(() => [innerWidth * devicePixelRatio, innerHeight * devicePixelRatio]);
  result.errors = big.errors;
  await big.close();
} finally {
  for (const b of closeLater) await b.close();
}
console.log(`RESULT ${JSON.stringify(result)}`);
