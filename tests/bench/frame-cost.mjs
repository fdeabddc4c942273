// What one drawn frame of the web client costs under software WebGL (SwiftShader), a
// diagnostic for `docs/bench/browser.md`: a person alone in a room, the page left still (it
// draws about once a second then), its browser's CPU by process over `SECONDS`, divided by the
// frames drawn, at each viewport size; and what a frame asks of WebGL (draw calls, bytes
// uploaded, render-target switches), counted by wrapping the context's methods. With `chat`,
// Bob (in his own browser) joins and says a line every 5 s while Ada's page is measured.
//
// usage: node tests/bench/frame-cost.mjs BASE_URL WORK_DIR [SECONDS] [chat]
import { Person, greeted, sleep } from "../e2e/duet.mjs";
import { launchTagged, treeCpu } from "./procs.mjs";

const [base, work, secondsArg, mode] = process.argv.slice(2);
const SECONDS = Number(secondsArg || 20);
const CHAT = mode === "chat";

/** Counts, per animation frame that drew, what the page asked of WebGL. */
function countWebGl() {
  const totals = { frames: 0, draws: 0, upload_bytes: 0, targets: 0, clears: 0, programs: 0 };
  let drewThisFrame = false;
  const wrap = (proto, name, count) => {
    const original = proto[name];
    if (!original) return;
    proto[name] = function (...args) {
      drewThisFrame = true;
      count(args);
      return original.apply(this, args);
    };
  };
  const size = (v) => (v && typeof v.byteLength === "number" ? v.byteLength : 0);
  for (const proto of [WebGL2RenderingContext.prototype]) {
    for (const name of ["drawArrays", "drawElements", "drawArraysInstanced", "drawElementsInstanced", "drawRangeElements"]) {
      wrap(proto, name, () => totals.draws++);
    }
    for (const name of ["bufferData", "bufferSubData"]) {
      wrap(proto, name, (args) => (totals.upload_bytes += size(args[1]) || size(args[2])));
    }
    for (const name of ["texImage2D", "texSubImage2D", "texImage3D", "texSubImage3D"]) {
      wrap(proto, name, (args) => (totals.upload_bytes += args.reduce((n, a) => n + size(a), 0)));
    }
    wrap(proto, "bindFramebuffer", () => totals.targets++);
    wrap(proto, "clear", () => totals.clears++);
    wrap(proto, "useProgram", () => totals.programs++);
  }
  const raf = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = (callback) =>
    raf((t) => {
      drewThisFrame = false;
      callback(t);
      if (drewThisFrame) totals.frames++;
    });
  window.__webgl = totals;
}

const results = [];
for (const [width, height] of CHAT ? [[1280, 720]] : [[1280, 720], [640, 360]]) {
  const browser = await launchTagged(work);
  const other = CHAT ? await launchTagged(work) : null;
  try {
    await browser.context.addInitScript(countWebGl);
    await browser.context.pages()[0]?.setViewportSize({ width, height });
    const ada = await Person.inContext(browser.context, "Ada", `${base}/?automation`);
    await ada.page.setViewportSize({ width, height });
    await ada.waitFor("first frame", (e) => e.event === "first_frame");
    await ada.click("create_button");
    const entered = await ada.waitFor("the room", (e) => e.event === "screen" && e.screen === "room");
    let bob = null;
    if (other) {
      bob = await Person.inContext(other.context, "Bob", `${entered.link}?automation`);
      await greeted(ada, bob);
    }
    await sleep(8000);
    const before = { cpu: treeCpu(browser.pid), gl: await ada.page.evaluate(() => ({ ...window.__webgl })) };
    for (let waited = 0; waited < SECONDS; waited += 5) {
      if (bob) await bob.say(`line at ${waited} s`);
      await sleep(5000);
    }
    const after = { cpu: treeCpu(browser.pid), gl: await ada.page.evaluate(() => ({ ...window.__webgl })) };
    const frames = after.gl.frames - before.gl.frames;
    const per = (n) => +(n / Math.max(frames, 1)).toFixed(1);
    const cpu = {};
    for (const type of Object.keys(after.cpu)) cpu[type] = +(after.cpu[type] - (before.cpu[type] || 0)).toFixed(2);
    const gl = {};
    for (const key of Object.keys(after.gl)) if (key !== "frames") gl[`${key}_per_frame`] = per(after.gl[key] - before.gl[key]);
    results.push({
      viewport: `${width}x${height}`,
      chat_lines: CHAT ? SECONDS / 5 : 0,
      seconds: SECONDS,
      frames,
      cpu_s: cpu,
      gpu_ms_per_frame: +((1000 * (cpu["gpu-process"] || 0)) / Math.max(frames, 1)).toFixed(1),
      renderer_ms_per_frame: +((1000 * (cpu.renderer || 0)) / Math.max(frames, 1)).toFixed(1),
      ...gl,
    });
  } finally {
    await browser.close();
    await other?.close();
  }
}
console.log(`RESULT ${JSON.stringify(results)}`);
