// Installable, and fast the second time. A first visit: the page passes Chromium's
// installability check (DevTools' `Page.getInstallabilityErrors`) and its service worker keeps
// the app, without downloading the wasm a second time. A second visit (a new tab of the same
// browser) starts from that cache: the wasm comes
// from the service worker and nothing but the small build id reaches the network. Then the
// server has a new build (its `build.json` and `start.js` changed, through request routing): the
// visit that finds it still runs the kept build, whole, and fetches the new one beside it; the
// visit after runs the new one. Prints `RESULT {json}` for the Rust test to check.
//
// usage: node tests/e2e/pwa.mjs BASE_URL OUT_DIR
import { Person, launchWithTabs, sleep } from "./duet.mjs";

const [base] = process.argv.slice(2);
const result = {};

const WASM = "/pkg/duet-client_bg.wasm";

/** The service worker's caches: name → the paths each holds. */
async function cached(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      out[name] = (await cache.keys()).map((r) => new URL(r.url).pathname).sort();
    }
    return out;
  });
}

/** Waits until a cache named `duet-app-{id}` holds the whole app (build.json is put last). */
async function keptBuild(page, id, timeout = 120_000) {
  for (let waited = 0; ; waited += 250) {
    const caches = await cached(page);
    const done = Object.entries(caches).filter(([, paths]) => paths.includes("/pkg/build.json"));
    const match = done.find(([name]) => id === undefined || name === `duet-app-${id}`);
    if (match && (id === undefined || Object.keys(caches).length === 1)) return { name: match[0], caches };
    if (waited > timeout) throw new Error(`no kept build ${id ?? ""} within ${timeout} ms: ${JSON.stringify(caches)}`);
    await sleep(250);
  }
}

/** A visit in a new tab: its first frame, and where its wasm came from. */
async function visit(context, name) {
  const page = await context.newPage();
  const network = [];
  // Requests that reach the network: the service worker's own, and the page's that it did not
  // answer from its cache.
  const onRequest = async (request) => {
    const response = await request.response().catch(() => null);
    const bySW = !!request.serviceWorker();
    if (bySW || (response && !response.fromServiceWorker())) network.push(new URL(request.url()).pathname);
  };
  context.on("requestfinished", onRequest);
  let wasmFromWorker = null;
  page.on("response", (response) => {
    if (new URL(response.url()).pathname === WASM) wasmFromWorker = response.fromServiceWorker();
  });
  const person = new Person(name, context, page);
  await page.goto(`${base}/?automation`);
  const first = await person.waitFor("first frame", (e) => e.event === "first_frame", { timeout: 120_000 });
  await sleep(500);
  context.off("requestfinished", onRequest);
  const marked = await page.evaluate(() => window.duetNewBuild === true);
  return { page, person, first_frame_ms: first.ms, wasm_from_service_worker: wasmFromWorker, network, new_build: marked };
}

// A browser with a real profile: Chromium never offers to install an app in a private window,
// which is what Playwright's own contexts are.
const tabs = await launchWithTabs();
try {
  const context = tabs.context;
  // Every time the wasm's body crossed the network during the first visit, its service worker's
  // keeping of the app included (its requests revalidate what the page fetched: a 304).
  const wasmFetches = [];
  const onWasm = async (request) => {
    if (new URL(request.url()).pathname !== WASM) return;
    const response = await request.response().catch(() => null);
    const sizes = await request.sizes().catch(() => null);
    wasmFetches.push({ by_worker: !!request.serviceWorker(), status: response?.status(), body_bytes: sizes?.responseBodySize });
  };
  context.on("requestfinished", onWasm);
  const first = await visit(context, "first visit");
  result.first = { first_frame_ms: first.first_frame_ms, wasm_from_service_worker: first.wasm_from_service_worker };
  const cdp = await context.newCDPSession(first.page);
  result.installability_errors = (await cdp.send("Page.getInstallabilityErrors")).installabilityErrors;
  const manifest = await cdp.send("Page.getAppManifest");
  result.manifest_errors = manifest.errors;
  result.manifest_url = manifest.url;
  const kept = await keptBuild(first.page);
  context.off("requestfinished", onWasm);
  result.first.wasm_fetches = wasmFetches;
  result.kept = kept.caches;
  const id = kept.name.slice("duet-app-".length);
  result.build_id = id;

  // The second visit: from the cache.
  await sleep(500);
  const second = await visit(context, "second visit");
  result.second = {
    first_frame_ms: second.first_frame_ms,
    wasm_from_service_worker: second.wasm_from_service_worker,
    wasm_from_network: second.network.filter((p) => p === WASM).length,
    network: [...new Set(second.network)],
  };
  await second.page.close();

  // A new build on the server.
  const NEW_ID = "00000000deadbeef";
  await context.route("**/pkg/build.json", (route) =>
    route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({ id: NEW_ID }) }),
  );
  await context.route("**/start.js", async (route) => {
    // Unconditional: the changed script is a new file, whatever the browser holds.
    const headers = { ...route.request().headers() };
    delete headers["if-none-match"];
    delete headers["if-modified-since"];
    const response = await route.fetch({ headers });
    route.fulfill({ response, body: `${await response.text()}\nwindow.duetNewBuild = true;\n` });
  });
  const third = await visit(context, "visit that finds the new build");
  result.third = { new_build: third.new_build, wasm_from_service_worker: third.wasm_from_service_worker };
  result.after_update = (await keptBuild(third.page, NEW_ID)).caches;
  await third.page.close();
  const fourth = await visit(context, "visit after the update");
  result.fourth = { new_build: fourth.new_build, wasm_from_service_worker: fourth.wasm_from_service_worker };
  result.errors = [first, second, third, fourth].flatMap((v) => v.person.errors);
} finally {
  console.log(`RESULT ${JSON.stringify(result)}`);
  await tabs.close();
}
