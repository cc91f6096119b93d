// The V8 figure of `benches/modules.rs`: runs model modules through the WebAssembly JS API (as
// the dashboard does in the browser) under node. argv: a directory holding jobs.json; per job
// the module, its rows (f64) and the expected outputs (f64). Prints one JSON line per job.
import { readFileSync } from "node:fs";

const dir = process.argv[2];
const bytesOf = (path) => {
  const b = readFileSync(path);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
};
const jobs = JSON.parse(readFileSync(`${dir}/jobs.json`, "utf8"));
for (const job of jobs) {
  const bytes = readFileSync(`${dir}/${job.module}`);
  const rows = new Float64Array(bytesOf(`${dir}/${job.rows}`));
  const expected = new BigUint64Array(bytesOf(`${dir}/${job.expected}`));
  const { instance } = await WebAssembly.instantiate(bytes, {});
  const e = instance.exports;
  const d = e.wasmops_n_features(), o = e.wasmops_n_outputs();
  const n = rows.length / d;
  const inPtr = (e.wasmops_heap_base() + 7) & ~7;
  const outPtr = inPtr + n * d * 8;
  const need = Math.ceil((outPtr + n * o * 8) / 65536) - e.memory.buffer.byteLength / 65536;
  if (need > 0) e.memory.grow(need);
  new Float64Array(e.memory.buffer, inPtr, n * d).set(rows);
  const times = [];
  for (let r = 0; r < job.repeats + 3; r++) {
    const t = process.hrtime.bigint();
    const status = e.wasmops_predict(inPtr, n, d, outPtr);
    const dt = Number(process.hrtime.bigint() - t) / 1e9;
    if (status !== 0) throw new Error(`status ${status}`);
    if (r >= 3) times.push(dt);
  }
  times.sort((a, b) => a - b);
  const got = new BigUint64Array(e.memory.buffer, outPtr, n * o);
  let same = got.length === expected.length;
  for (let i = 0; same && i < got.length; i++) same = got[i] === expected[i];
  console.log(JSON.stringify({ batch_s: times[times.length >> 1], bit_identical: same }));
}
