// The reference: @vladmandic/face-api itself, on TF.js's pure-JavaScript CPU
// backend, JPEGs decoded with jpeg-js. Prints one JSON object per image:
// {"image", "width", "height", "detections": [{"box": [x0,y0,x1,y1], "score"}]}
// in original-image pixels.
// Usage: node faceapi_ref.js tiny|ssd MODEL_DIR IMAGE... (NODE_PATH must
// point at the node_modules that tools/faceapi/fetch.sh filled).
// With PNG_DIR set, also writes the pixels jpeg-js decoded as
// PNG_DIR/IMAGE.png, so pivot can be checked on exactly the same pixels.
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(td) >>> 0);
  return Buffer.concat([len, td, crc]);
}

function writePng(file, w, h, rgb) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0; // filter: none
    Buffer.from(rgb.buffer, rgb.byteOffset + y * w * 3, w * 3).copy(raw, y * (w * 3 + 1) + 1);
  }
  fs.writeFileSync(file, Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr), pngChunk('IDAT', zlib.deflateSync(raw)),
    pngChunk('IEND', Buffer.alloc(0))]));
}

async function main() {
  const [kind, modelDir, ...images] = process.argv.slice(2);
  if (!['tiny', 'ssd'].includes(kind) || !modelDir || images.length === 0) {
    process.stderr.write('usage: faceapi_ref.js tiny|ssd MODEL_DIR IMAGE...\n');
    process.exit(2);
  }
  const tf = require('@tensorflow/tfjs');
  const jpeg = require('jpeg-js');
  const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
  await tf.setBackend('cpu');
  await tf.ready();
  const net = kind === 'tiny' ? faceapi.nets.tinyFaceDetector : faceapi.nets.ssdMobilenetv1;
  await net.loadFromDisk(modelDir);
  const opts = kind === 'tiny'
    ? new faceapi.TinyFaceDetectorOptions({ inputSize: 416, scoreThreshold: 0.5 })
    : new faceapi.SsdMobilenetv1Options({ minConfidence: 0.5, maxResults: 100 });
  for (const file of images) {
    const img = jpeg.decode(fs.readFileSync(file), { useTArray: true, formatAsRGBA: false });
    if (process.env.PNG_DIR) {
      writePng(path.join(process.env.PNG_DIR, `${path.basename(file)}.png`), img.width, img.height, img.data);
    }
    const t = tf.tensor3d(img.data, [img.height, img.width, 3], 'int32');
    const dets = await faceapi.detectAllFaces(t, opts);
    t.dispose();
    const out = {
      image: path.basename(file),
      width: img.width,
      height: img.height,
      detections: dets.map((d) => ({
        box: [d.box.x, d.box.y, d.box.x + d.box.width, d.box.y + d.box.height],
        score: d.score,
      })),
    };
    process.stdout.write(JSON.stringify(out) + '\n');
  }
}

main().catch((e) => {
  process.stderr.write(`faceapi_ref: ${e.stack || e}\n`);
  process.exit(1);
});
