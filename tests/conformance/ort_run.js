#!/usr/bin/env node
// Run an ONNX model with ONNX Runtime (onnxruntime-node) and write its
// outputs as .npy files, or time it.
//
// Usage: node ort_run.js MODEL OUTDIR NAME=IN.npy [...] [--time] [--threads N] [--repeat N] [--opt LEVEL]
//   reference mode (default): graph optimisations disabled, because ORT's
//     optimised mode fuses an explicit zero Pad into MaxPool's -inf padding
//     and so computes darknet's stride-1 maxpool wrongly; writes
//     OUTDIR/<output name with unsafe characters as '_'>.npy
//   --opt LEVEL: another graphOptimizationLevel (disabled basic extended all),
//     to show what the optimiser changes
//   --time: graphOptimizationLevel 'all', intraOpNumThreads N (default 1),
//     one warm-up run, then prints "median_ms=X" over --repeat runs (default 20)
// The module is found through NODE_PATH (scripts/ort.sh prints its cache).
'use strict';
const fs = require('fs');
const path = require('path');

function die(msg) {
  process.stderr.write(`ort_run: ${msg}\n`);
  process.exit(2);
}

let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  die(`cannot load onnxruntime-node (${e.message}); run scripts/deps.sh test`);
}

// ---- .npy (format 1.0-3.0, little-endian, C order)
const DTYPES = {
  '<f4': ['float32', Float32Array], '<f8': ['float64', Float64Array],
  '|i1': ['int8', Int8Array], '<i2': ['int16', Int16Array], '<i4': ['int32', Int32Array],
  '<i8': ['int64', BigInt64Array], '|u1': ['uint8', Uint8Array], '<u2': ['uint16', Uint16Array],
  '<u4': ['uint32', Uint32Array], '<u8': ['uint64', BigUint64Array], '|b1': ['bool', Uint8Array],
};

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY')
    throw new Error(`${file}: not a .npy file (bad magic)`);
  const major = buf[6];
  let hlen, hoff;
  if (major === 1) { hlen = buf.readUInt16LE(8); hoff = 10; }
  else if (major === 2 || major === 3) { hlen = buf.readUInt32LE(8); hoff = 12; }
  else throw new Error(`${file}: .npy version ${major} not supported`);
  if (hoff + hlen > buf.length) throw new Error(`${file}: truncated .npy header`);
  const header = buf.toString('latin1', hoff, hoff + hlen);
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(header);
  const order = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !order || !shape) throw new Error(`${file}: malformed .npy header`);
  if (order[1] !== 'False') throw new Error(`${file}: Fortran order not supported`);
  const dt = DTYPES[descr[1]];
  if (!dt) throw new Error(`${file}: dtype ${descr[1]} not supported`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const n = dims.reduce((a, b) => a * b, 1);
  const off = hoff + hlen;
  const nbytes = n * dt[1].BYTES_PER_ELEMENT;
  if (off + nbytes > buf.length) throw new Error(`${file}: truncated .npy data`);
  // Copy into an aligned buffer: typed arrays need element alignment.
  const data = new dt[1](n);
  Buffer.from(data.buffer).set(buf.subarray(off, off + nbytes));
  return { type: dt[0], dims, data };
}

function writeNpy(file, type, dims, data) {
  const descr = Object.keys(DTYPES).find((k) => DTYPES[k][0] === type);
  if (!descr) throw new Error(`${file}: output type ${type} has no .npy mapping`);
  const shp = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shp}, }`;
  // Pad so the data starts on a 64-byte boundary, ending in '\n' (the spec).
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header + ' '.repeat(total - 10 - header.length - 1) + '\n';
  const pre = Buffer.alloc(10);
  Buffer.from('\x93NUMPY', 'latin1').copy(pre, 0);
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const tmp = `${file}.tmp${process.pid}`;
  fs.writeFileSync(tmp, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
  fs.renameSync(tmp, file);
}

function sanitize(name) {
  return name.replace(/[^A-Za-z0-9._-]/g, '_');
}

async function main() {
  const argv = process.argv.slice(2);
  let timing = false, threads = 1, repeat = 20, opt = null;
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--time') timing = true;
    else if (a === '--threads') threads = Number(argv[++i]);
    else if (a === '--repeat') repeat = Number(argv[++i]);
    else if (a === '--opt') opt = argv[++i];
    else pos.push(a);
  }
  if (pos.length < 3) die('usage: ort_run.js MODEL OUTDIR NAME=IN.npy [...] [--time] [--threads N] [--repeat N]');
  if (!(threads >= 1) || !(repeat >= 1)) die('--threads and --repeat take a positive integer');
  const [model, outdir, ...ins] = pos;

  const opts = timing
    ? { graphOptimizationLevel: opt || 'all', intraOpNumThreads: threads, interOpNumThreads: 1,
        executionMode: 'sequential' }
    : { graphOptimizationLevel: opt || 'disabled', intraOpNumThreads: threads, interOpNumThreads: 1 };
  const sess = await ort.InferenceSession.create(model, opts);
  const feeds = {};
  for (const spec of ins) {
    const eq = spec.indexOf('=');
    if (eq <= 0) die(`input "${spec}" is not NAME=FILE.npy`);
    const name = spec.slice(0, eq);
    if (!sess.inputNames.includes(name))
      die(`model has no input "${name}" (inputs: ${sess.inputNames.join(', ')})`);
    const t = readNpy(spec.slice(eq + 1));
    feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
  }
  for (const n of sess.inputNames) if (!(n in feeds)) die(`input "${n}" not given`);

  if (timing) {
    await sess.run(feeds);
    const ms = [];
    let cpuMin = Infinity;
    for (let i = 0; i < repeat; i++) {
      const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
      await sess.run(feeds);
      ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
      const c = process.cpuUsage(c0);
      cpuMin = Math.min(cpuMin, (c.user + c.system) / 1e3);
    }
    ms.sort((a, b) => a - b);
    const mid = ms.length >> 1;
    const med = ms.length % 2 ? ms[mid] : (ms[mid - 1] + ms[mid]) / 2;
    console.log(`median_ms=${med.toFixed(3)} threads=${threads} repeat=${repeat} min_ms=${ms[0].toFixed(3)} min_cpu_ms=${cpuMin.toFixed(3)}`);
    return;
  }
  const res = await sess.run(feeds);
  fs.mkdirSync(outdir, { recursive: true });
  for (const n of sess.outputNames) {
    const t = res[n];
    writeNpy(path.join(outdir, sanitize(n) + '.npy'), t.type, t.dims, t.data);
    console.log(`ort_run: ${n}: [${t.dims.join(', ')}] ${t.type}`);
  }
}

main().catch((e) => die(e.message));
