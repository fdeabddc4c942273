// The plain-JS reference page (reference.html) in a browser context: shared by the benchmarks
// that run it beside Duet's web client (`browser.mjs` on loopback, `wan.mjs` in the lab).
import { readFileSync } from "node:fs";

const root = new URL("../../", import.meta.url).pathname;

/** The reference page in `context`, on `base`'s origin (the page talks to that worker's
 * signaling). Any same-origin URL that is not the app will do; intercepting a request with
 * page.route would also break the page's WebSockets. */
export async function referencePage(context, base) {
  await context.grantPermissions(["camera", "microphone"]);
  const page = context.pages()[0] || (await context.newPage());
  const html = readFileSync(`${root}tests/bench/reference.html`, "utf8");
  await page.goto(`${base}/api/rooms/bench-reference`);
  await page.setContent(html);
  return page;
}

/** Size and SHA-256 (hex) of what the reference page at `page` received. */
export async function receivedDigest(page) {
  return page.evaluate(async () => {
    const digest = await crypto.subtle.digest("SHA-256", await window.received.arrayBuffer());
    return {
      size: window.received.size,
      sha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""),
    };
  });
}
