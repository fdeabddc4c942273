// Duet's service worker: keeps the app (the page, its script and the wasm) in a cache, so the
// next visit starts without downloading it again, and offline it still opens.
//
// Versions: `cargo xtask build-web` writes /pkg/build.json, whose `id` names the build. On every
// visit this worker asks the network for it (never a cached copy); when the id is new, it fetches
// the whole app into a new cache in the background, and only once every file is there does that
// cache become the one served. So a visit runs one build whole — never a new script with an old
// wasm — and a new build starts at the next visit. The app itself asks the server for its API
// version and says so when it is out of date (the room's notice).
//
// Nothing else is cached: the API, the signaling and everything the person keeps never pass
// through here.

const PREFIX = "duet-app-";
const BUILD = "/pkg/build.json";
const APP = [
  "/",
  "/start.js",
  "/style.css",
  "/manifest.webmanifest",
  "/icons/duet-192.png",
  "/icons/duet-512.png",
  "/icons/duet-maskable-512.png",
  "/pkg/duet-client.js",
  "/pkg/duet-client_bg.wasm",
];

// The newest complete cache: one holding build.json, which is stored last.
async function servedCache() {
  for (const name of (await caches.keys()).reverse()) {
    if (!name.startsWith(PREFIX)) continue;
    const cache = await caches.open(name);
    if (await cache.match(BUILD)) return cache;
  }
  return null;
}

// Fetches the server's build into a cache of its own when it is not the one served, then drops
// the others. One at a time.
let refreshing = null;
function refresh() {
  refreshing ||= (async () => {
    try {
      const answer = await fetch(BUILD, { cache: "no-store" });
      if (!answer.ok) return;
      const build = await answer.clone().json();
      if (typeof build.id !== "string" || !/^[0-9a-f]{8,64}$/.test(build.id)) return;
      const name = PREFIX + build.id;
      const cache = await caches.open(name);
      if (!(await cache.match(BUILD))) {
        for (const path of APP) {
          // Asked again of the server, but not downloaded again when the browser holds the
          // server's current copy (a 304 to the browser's conditional request): on a first
          // visit the page has just fetched every file, and the wasm went over the network
          // twice, the second time while the person was meeting their peer (7.5 MB more on a
          // phone's link).
          const response = await fetch(path, { cache: "no-cache" });
          if (!response.ok) throw new Error(`${path}: ${response.status}`);
          await cache.put(path, response);
        }
        await cache.put(BUILD, answer);
      }
      for (const other of await caches.keys()) {
        if (other.startsWith(PREFIX) && other !== name) await caches.delete(other);
      }
    } catch (error) {
      // Offline or a half-deployed server: keep serving what is cached; try at the next visit.
      console.warn(`Duet could not keep the app for the next visit: ${error}`);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

self.addEventListener("install", (event) => {
  event.waitUntil(refresh().then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  // Room links (/r/{room}) are the same page; the app reads the room from the address.
  const key = request.mode === "navigate" ? "/" : url.pathname;
  if (!APP.includes(key)) return;
  if (request.mode === "navigate") event.waitUntil(refresh());
  event.respondWith(
    (async () => {
      const cache = await servedCache();
      const hit = cache && (await cache.match(key));
      return hit || fetch(request);
    })(),
  );
});

// A click on a notification the app showed (a message, a file, a call while the tab was hidden)
// brings its room forward: the window at the address the app put in the notification, else a
// window of the app itself (a page that created its room keeps the address it was opened at,
// "/", as its client address), else the room opens again. Only this origin's addresses open.
function isAppPage(address) {
  const path = new URL(address).pathname;
  return path === "/" || path.startsWith("/r/");
}

async function focusRoom(url) {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const room = windows.find((client) => client.url === url) || windows.find((client) => isAppPage(client.url));
  if (room) return room.focus();
  if (typeof url === "string" && new URL(url, self.location.origin).origin === self.location.origin) {
    return self.clients.openWindow(url);
  }
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(focusRoom(event.notification.data));
});
