// Process measurements for the benchmarks: a person's own Chromium (tagged, so its process tree
// can be found), and that tree's memory and CPU from /proc.
import { chromium } from "playwright-core";
import { readFileSync, readdirSync, rmSync } from "node:fs";
import { CHROMIUM_FLAGS, CONTEXT_OPTIONS } from "../e2e/duet.mjs";

export function processTable() {
  const table = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      table.push({ pid: Number(entry), ppid });
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

export function rssKib(pid) {
  return rssParts(pid).rss;
}

/** A process's resident memory in KiB: in all, and its anonymous part (heaps, wasm memory,
 * buffers: what the process itself allocated) apart from file pages (the binary's code, fonts)
 * and shared memory. */
export function rssParts(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (name) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] || 0);
    return { rss: field("VmRSS"), anon: field("RssAnon"), file: field("RssFile"), shmem: field("RssShmem") };
  } catch {
    return { rss: 0, anon: 0, file: 0, shmem: 0 };
  }
}

/** The pid of the browser whose command line carries `--duet-bench-tag=TAG`. */
export function browserPid(tag) {
  for (const { pid } of processTable()) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (cmdline.includes(`--duet-bench-tag=${tag}`)) return pid;
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no browser process tagged ${tag}`);
}

/** The browser process and all its descendants. */
export function processTree(root) {
  const table = processTable();
  const tree = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const { pid, ppid } of table) {
      if (tree.has(ppid) && !tree.has(pid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  return tree;
}

/** RSS (MiB) of the browser process and all its descendants, by process type (browser,
 * renderer, gpu-process, utility, zygote...) and in total. */
export function treeRss(root) {
  const tree = processTree(root);
  const byType = { total: 0 };
  for (const pid of tree) {
    let type = "browser";
    try {
      type = /--type=([a-z-]+)/.exec(readFileSync(`/proc/${pid}/cmdline`, "utf8"))?.[1] || "browser";
    } catch {
      continue;
    }
    const parts = rssParts(pid);
    const mib = parts.rss / 1024;
    byType[type] = (byType[type] || 0) + mib;
    byType.total += mib;
    for (const part of ["anon", "file", "shmem"]) byType[part] = (byType[part] || 0) + parts[part] / 1024;
  }
  return byType;
}

/** CPU seconds (user + system) used so far by the browser's process tree, by process type. */
export function treeCpu(root) {
  const tree = processTree(root);
  const byType = {};
  for (const pid of tree) {
    try {
      const type = /--type=([a-z-]+)/.exec(readFileSync(`/proc/${pid}/cmdline`, "utf8"))?.[1] || "browser";
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // utime and stime are fields 14 and 15 of /proc/PID/stat, in clock ticks (100 per second).
      byType[type] = (byType[type] || 0) + (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      // gone meanwhile
    }
  }
  return byType;
}

let launched = 0;

/** One person's own Chromium with a fresh on-disk profile, as a person's browser has: in
 * Playwright's default (incognito) contexts IndexedDB lives in the browser process's memory,
 * so 200 MiB received would count as 200 MiB of memory (measured, 200 MiB written: +228 MiB
 * in an incognito context, +2 MiB with a profile on disk). `executable` starts Chromium (e.g.
 * a wrapper that runs it inside a home of the network lab). */
export async function launchTagged(work, executable = process.env.DUET_CHROMIUM) {
  const tag = `${process.pid}-${launched++}`;
  const profile = `${work}/profile-${tag}`;
  const context = await chromium.launchPersistentContext(profile, {
    ...CONTEXT_OPTIONS,
    executablePath: executable || "/usr/bin/chromium",
    headless: true,
    // DUET_CHROMIUM_EXTRA: flags for a diagnostic run (e.g. V8's), space-separated.
    args: [...CHROMIUM_FLAGS, ...(process.env.DUET_CHROMIUM_EXTRA || "").split(" ").filter(Boolean), `--duet-bench-tag=${tag}`],
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, pid: browserPid(tag), close };
}


/** Samples the trees of `pids` every 100 ms; `stop()` returns each one's peak growth in MiB,
 * in total and per process type (each type's own peak), and the CPU-seconds each type used. */
export function watchMemory(pids) {
  const cpuBefore = pids.map(treeCpu);
  const baseline = pids.map(treeRss);
  const peak = baseline.map((b) => ({ ...b }));
  const sample = () =>
    pids.forEach((pid, i) => {
      for (const [type, mib] of Object.entries(treeRss(pid))) peak[i][type] = Math.max(peak[i][type] || 0, mib);
    });
  const timer = setInterval(sample, 100);
  return () => {
    clearInterval(timer);
    sample();
    return peak.map((p, i) => {
      const growth = {};
      for (const type of Object.keys(p)) growth[type] = +(p[type] - (baseline[i][type] || 0)).toFixed(1);
      const cpu = treeCpu(pids[i]);
      growth.cpu_secs = {};
      for (const type of Object.keys(cpu)) growth.cpu_secs[type] = +(cpu[type] - (cpuBefore[i][type] || 0)).toFixed(1);
      return growth;
    });
  };
}
