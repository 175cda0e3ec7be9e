// MicroPython VM server: runs the official WebAssembly port under Node and serves requests from a
// CPython parent (host_tools/mpvm/client.py) over stdin/stdout.
//
// Rules:
// - stdout carries protocol frames only: one JSON object per line, one response per request, in
//   request order. MicroPython's own print output is captured per request and returned in "out".
// - Every request is one top-level entry into the VM (a call of the agent's dispatcher), so the GC,
//   which in this port only collects when control returns to JS, reclaims garbage between requests.
// - The heap is capped (--heap-kib): wasm memory growth is disabled and the remaining free malloc
//   space is reserved, so the port's "split heap" cannot add areas and a real MemoryError occurs.
//   Only a small slack (well below any heap area the port would try to add) stays free for the JS
//   glue's own mallocs (argument and traceback buffers).
// - Payload bytes cross through the device files /dev/mpvm_data and /dev/mpvm_meta (copied straight
//   between wasm memory and Node buffers), never through JS strings converted by the proxy layer.
// - --romfs IMAGE boots with a ROMFS image (mpremote romfs build), mounted at /rom as on a board
//   with a ROM partition: its .mpy files run in place. The image sits in wasm memory outside the
//   GC heap (a board's flash), so what an import from /rom keeps in RAM is all the heap shows.
//   It needs a package whose port has ROMFS (MicroPython >= 1.25 built with it): --package
//   micropython-romfs, the pinned 1.29 alias in package.json (the default package, 1.27.0, has
//   none; a package without ROMFS is refused, never silently run without the image).
//
// Usage: node vm.mjs [--heap-kib N] [--mount HOSTDIR:VMDIR]... [--path VMDIR]... [--pystack WORDS]
//                    [--package NODE_MODULE] [--romfs IMAGE]

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_PACKAGE = "@micropython/micropython-webassembly-pyscript";
const GLUE_SLACK = 32 * 1024; // free malloc space left for the JS glue; must stay < the heap
const OUT_LIMIT = 1 << 20; // captured print output kept per request
const SKIP_NAMES = new Set(["__pycache__", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache"]);

function parseArgs(argv) {
  const opts = { heapKib: 192, mounts: [], paths: [], pystack: 2048, pkg: DEFAULT_PACKAGE, romfs: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--heap-kib") opts.heapKib = Number(next());
    else if (a === "--mount") {
      const v = next();
      const cut = v.lastIndexOf(":");
      if (cut <= 0) throw new Error(`--mount wants HOSTDIR:VMDIR, got ${v}`);
      opts.mounts.push([v.slice(0, cut), v.slice(cut + 1)]);
    } else if (a === "--path") opts.paths.push(next());
    else if (a === "--pystack") opts.pystack = Number(next());
    else if (a === "--package") opts.pkg = next();
    else if (a === "--romfs") opts.romfs = next();
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(opts.heapKib) || opts.heapKib < 64 || opts.heapKib > 65536) {
    throw new Error("--heap-kib must be an integer in 64..65536");
  }
  return opts;
}

// Emscripten reports every refused memory growth on console.error; those are expected here.
const consoleError = console.error;
console.error = (...args) => {
  const first = String(args[0]);
  if (first.startsWith("growMemory:") || first.startsWith("Failed to grow the heap")) return;
  consoleError(...args);
};

// Capture the instance's memory so that growth can be refused on it alone.
let wasmMemory = null;
const instantiate = WebAssembly.instantiate;
WebAssembly.instantiate = async (...args) => {
  const result = await instantiate(...args);
  const exports = (result.instance || result).exports;
  for (const key in exports) if (exports[key] instanceof WebAssembly.Memory) wasmMemory = exports[key];
  return result;
};

function resolvePackage(name) {
  // node_modules lives at the repository root, two levels above this directory.
  for (let dir = HERE; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules", name, "micropython.mjs");
    if (fs.existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`cannot find ${name}; run npm ci`);
  }
}

function copyTree(FS, hostDir, vmDir) {
  FS.mkdirTree(vmDir);
  for (const entry of fs.readdirSync(hostDir, { withFileTypes: true })) {
    if (SKIP_NAMES.has(entry.name) || entry.name.endsWith(".pyc")) continue;
    const src = path.join(hostDir, entry.name);
    const dst = vmDir.replace(/\/$/, "") + "/" + entry.name;
    if (entry.isDirectory()) copyTree(FS, src, dst);
    else if (entry.isFile()) FS.writeFile(dst, fs.readFileSync(src));
  }
}

// Mirror the VM directory vmDir onto hostDir (the virtual board's flash, before a reset): files
// written where they differ, host entries missing in the VM removed. Names in `skip` (at the top
// level only) are the VM's own directories (dev, tmp, the runner's) and are left alone.
function syncTree(FS, vmDir, hostDir, skip) {
  fs.mkdirSync(hostDir, { recursive: true });
  const seen = new Set();
  for (const name of FS.readdir(vmDir)) {
    if (name === "." || name === ".." || skip.has(name)) continue;
    seen.add(name);
    const src = vmDir.replace(/\/$/, "") + "/" + name;
    const dst = path.join(hostDir, name);
    if (FS.isDir(FS.stat(src).mode)) {
      if (fs.existsSync(dst) && !fs.statSync(dst).isDirectory()) fs.rmSync(dst);
      syncTree(FS, src, dst, new Set());
    } else {
      const data = FS.readFile(src);
      if (fs.existsSync(dst) && fs.statSync(dst).isDirectory()) fs.rmSync(dst, { recursive: true });
      if (!fs.existsSync(dst) || !Buffer.from(data).equals(fs.readFileSync(dst))) fs.writeFileSync(dst, data);
    }
  }
  for (const name of fs.readdirSync(hostDir)) {
    if (!seen.has(name) && !skip.has(name)) fs.rmSync(path.join(hostDir, name), { recursive: true });
  }
}

// A character device whose reads drain `source` and whose writes append to `sink`.
function makeChannel(FS, major, devPath) {
  const chan = { input: Buffer.alloc(0), pos: 0, chunks: [] };
  const dev = FS.makedev(major, 0);
  FS.registerDevice(dev, {
    open() {},
    close() {},
    llseek() {
      return 0;
    },
    read(stream, heap, offset, length) {
      const n = Math.min(length, chan.input.length - chan.pos);
      new Uint8Array(heap.buffer, heap.byteOffset + offset, n).set(chan.input.subarray(chan.pos, chan.pos + n));
      chan.pos += n;
      return n;
    },
    write(stream, heap, offset, length) {
      chan.chunks.push(Buffer.from(new Uint8Array(heap.buffer, heap.byteOffset + offset, length)));
      return length;
    },
  });
  FS.mkdev(devPath, dev);
  chan.feed = (buf) => {
    chan.input = buf;
    chan.pos = 0;
    chan.chunks.length = 0;
  };
  chan.take = () => (chan.chunks.length === 1 ? chan.chunks[0] : Buffer.concat(chan.chunks));
  return chan;
}

// Stop the heap from growing: refuse wasm memory growth, then hold every free malloc byte except
// a small slack for the glue. The port's split heap then cannot add an area (it asks for at least
// the current heap size), so an allocation that does not fit raises MemoryError.
function capHeap(Module) {
  wasmMemory.grow = () => {
    throw new RangeError("mpvm: wasm memory growth is disabled (heap cap)");
  };
  const slack = Module._malloc(GLUE_SLACK);
  let held = 0;
  for (let size = 1 << 28; size >= 16; size >>>= 1) {
    while (Module._malloc(size) !== 0) held += size;
  }
  Module._free(slack);
  return held;
}

const opts = parseArgs(process.argv.slice(2));
const started = performance.now();
const { loadMicroPython } = await import(resolvePackage(opts.pkg));
const romfs = opts.romfs === null ? undefined : new Uint8Array(fs.readFileSync(opts.romfs));

const out = [];
let outBytes = 0;
const capture = (line) => {
  if (outBytes < OUT_LIMIT) {
    out.push(line);
    outBytes += line.length + 1;
  }
};
const mp = await loadMicroPython({
  heapsize: opts.heapKib * 1024,
  pystack: opts.pystack,
  stdout: capture,
  stderr: capture,
  romfs,
});
const Module = mp._module;
// A port without ROMFS ignores the option: refuse instead of booting without the image.
if (romfs && typeof Module._mp_js_register_romfs !== "function") {
  throw new Error(`--romfs: the package ${opts.pkg} has no ROMFS (use --package micropython-romfs)`);
}
const FS = mp.FS;

for (const [hostDir, vmDir] of opts.mounts) copyTree(FS, hostDir, vmDir);
FS.mkdirTree("/.mpvm");
FS.writeFile("/.mpvm/mpvm_agent.py", fs.readFileSync(path.join(HERE, "agent.py")));
FS.writeFile("/.mpvm/mpvm_gc.py", fs.readFileSync(path.join(HERE, "mpvm_gc.py")));
const data = makeChannel(FS, 64, "/dev/mpvm_data");
const meta = makeChannel(FS, 65, "/dev/mpvm_meta");

// The port makes /rom the current directory when it mounts the image; a board's is the file
// system's root, mounted at / after /rom (MicroPython runs main.py from there; '' on sys.path).
if (romfs) mp.runPython("__import__('os').chdir('/')");
const heldBytes = capHeap(Module);
mp.runPython(
  "import sys\nsys.path.insert(0, '/.mpvm')\nimport mpvm_agent\nsys.path.pop(0)\n" +
    `mpvm_agent.setup(${JSON.stringify(opts.paths)})\n`,
);
const agent = mp.pyimport("mpvm_agent");
const dispatch = agent.dispatch;
const describe = agent.describe;
const collect = agent.collect;

function flushOut() {
  for (const key of ["_stdoutBuffer", "_stderrBuffer"]) {
    const pending = Module[key];
    if (pending && pending.length) {
      capture(Module._textDecoder.decode(new Uint8Array(pending)));
      pending.length = 0;
    }
  }
  const text = out.length ? out.join("\n") + "\n" : "";
  out.length = 0;
  outBytes = 0;
  return text;
}

const EMPTY = Buffer.alloc(0);
const OPS = { exec: 1, eval: 2, call: 3, reset: 4, stats: 5 };

function handle(req) {
  if (req.op === "sync") {
    syncTree(FS, String(req.src), String(req.host), new Set(req.skip || []));
    return { ok: true, out: flushOut() };
  }
  const op = OPS[req.op];
  if (op === undefined) return { ok: false, type: "ProtocolError", traceback: `unknown op ${req.op}` };
  let payload = EMPTY;
  let withData = 0;
  if (op === 1 || op === 2) payload = Buffer.from(String(req.src ?? ""), "utf8");
  else if (op === 3 && typeof req.data === "string") {
    payload = Buffer.from(req.data, "hex");
    withData = 1;
  }
  if (req.gc) collect(); // schedules a collection, which runs when this entry returns
  data.feed(payload);
  if (req.mem) meta.feed(EMPTY);
  const status = dispatch(op, payload.length, withData, op === 3 ? String(req.fn ?? "") : "", req.mem ? 1 : 0);
  const result = data.take();
  const resp = { ok: status === 0 };
  if (req.mem) {
    const m = meta.take();
    if (m.length >= 8) resp.mem = [m.readUInt32LE(0), m.readUInt32LE(4)];
  }
  if (status === 0) {
    if (op === 2 || op === 5) resp.value = JSON.parse(result.toString("utf8"));
    else if (op === 3) resp.data = result.toString("hex");
  } else {
    const text = String(describe());
    const cut = text.indexOf("\x04");
    resp.type = cut < 0 ? text : text.slice(0, cut);
    // The dispatcher's own frames say nothing about the failure: leave them out.
    resp.traceback =
      cut < 0
        ? `${resp.type} (no traceback: the VM had no heap left to format it)\n`
        : text.slice(cut + 1).split("\n").filter((l) => !l.includes('"/.mpvm/')).join("\n");
  }
  resp.out = flushOut();
  return resp;
}

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

reply({
  ready: true,
  heap_kib: opts.heapKib,
  package: opts.pkg,
  romfs_bytes: romfs ? romfs.length : 0,
  held_bytes: heldBytes,
  wasm_bytes: wasmMemory.buffer.byteLength,
  start_ms: performance.now() - started,
  out: flushOut(),
});

let pending = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  pending += chunk;
  let nl;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    if (!line.trim()) continue;
    let resp;
    try {
      resp = handle(JSON.parse(line));
    } catch (err) {
      // A failure of the runner itself (not of Python code): report it and keep serving.
      resp = { ok: false, type: "RunnerError", traceback: String(err && err.stack ? err.stack : err), out: flushOut() };
    }
    reply(resp);
  }
});
process.stdin.on("end", () => process.exit(0));
