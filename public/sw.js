// wasmops service worker: the dashboard keeps working offline after one visit.
//
// At install it pre-caches the app shell: index.html and everything it references (trunk's
// hashed JS/wasm/CSS) plus the training worker's fixed-name files. The first visit is not
// controlled by this worker, so caching on fetch alone would miss those files. Requests are
// network-first (a new build is picked up as soon as the server has it), falling back to the
// cache when the network is gone. Old entries are dropped when a new shell is cached.
const CACHE = "wasmops-shell-v1";
const FIXED = ["./", "./index.html", "./train_worker_loader.js", "./train_worker.js", "./train_worker_bg.wasm"];

async function shellUrls() {
  const html = await (await fetch("./index.html", { cache: "no-store" })).text();
  const refs = [...html.matchAll(/(?:href|src)="([^"]+)"/g)]
    .map((m) => m[1])
    .filter((u) => !u.startsWith("http") && !u.startsWith("data:"));
  return [...new Set([...FIXED, ...refs])].map((u) => new URL(u, self.registration.scope).href);
}

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const urls = await shellUrls();
      const cache = await caches.open(CACHE);
      await cache.addAll(urls);
      for (const req of await cache.keys()) {
        if (!urls.includes(req.url)) await cache.delete(req);
      }
      await self.skipWaiting();
    })()
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name !== CACHE) await caches.delete(name);
      }
      await self.clients.claim();
    })()
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  event.respondWith(
    (async () => {
      try {
        const response = await fetch(event.request);
        if (response.ok) {
          const cache = await caches.open(CACHE);
          cache.put(event.request, response.clone());
        }
        return response;
      } catch (offline) {
        const cached = await caches.match(event.request, { ignoreSearch: true });
        if (cached) return cached;
        throw offline;
      }
    })()
  );
});
