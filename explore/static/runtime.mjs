// onnxruntime-web sessions for the exported graphs: WASM, one thread (no cross-origin isolation needed).
import * as ort from './ort/ort.wasm.min.mjs';

ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.wasm.wasmPaths = new URL('ort/', document.baseURI).href;  // the vendored files, nowhere else

// The fp32 decoder is always models/decoder.onnx: start the runtime and that session now, while the
// page fetches info.json (the first image comes sooner).
const firstDecoder = ort.InferenceSession.create('models/decoder.onnx', { executionProviders: ['wasm'] });
firstDecoder.catch(() => {});  // awaited in useVariant('fp32'), which reports a failure

// One session runs one thing at a time: every run waits for the previous one.
let queue = Promise.resolve();
function serialized(fn) {
  const next = queue.then(fn, fn);
  queue = next.catch(() => {});
  return next;
}

export class Model {
  constructor(info) {
    this.info = info;
    this.dim = info.latent_dim;
    this.shape = info.image_shape;  // [C, H, W]
    this.pixels = this.shape[0] * this.shape[1] * this.shape[2];
    this.decoder = null;
    this.encoder = null;
    this.variant = null;
    this.guidance = info.guidance ? info.guidance.default : 1.0;  // the model's own weight until the slider moves
  }

  async useVariant(variant) {
    const entry = this.info.variants.find(v => v.variant === variant);
    this.decoder = entry.file === 'models/decoder.onnx' ? await firstDecoder
      : await ort.InferenceSession.create(entry.file, { executionProviders: ['wasm'] });
    this.variant = variant;
  }

  async loadEncoder() {
    if (this.info.encoder_file && !this.encoder) {
      this.encoder = await ort.InferenceSession.create(this.info.encoder_file, { executionProviders: ['wasm'] });
    }
    return this.encoder;
  }

  labelTensor(labels, n) {
    return new ort.Tensor('int64', BigInt64Array.from(labels.slice(0, n), v => BigInt(v)), [n]);
  }

  // z: Float32Array (n * D); labels: class per row (conditional models) -> Float32Array (n * C * H * W).
  // Tensor names come from info.json (the contract), not from this file.
  decode(z, n, labels) {
    const t = this.info.tensors;
    return serialized(async () => {
      const feeds = { [t.z]: new ort.Tensor('float32', z, [n, this.dim]) };
      if (this.info.num_classes) feeds[t.label] = this.labelTensor(labels, n);
      if (this.info.guidance) {  // one weight for the batch: the contract's float32 [1] input
        feeds[t.guidance] = new ort.Tensor('float32', Float32Array.of(this.guidance), this.info.guidance.shape);
      }
      // a row-context decoder also has base_logits (for scoring): fetch the image only
      const out = await this.decoder.run(feeds, [t.image]);
      return out[t.image].data;
    });
  }

  // x: Float32Array (n * C * H * W) in [0, 1] -> { mu, logvar }, each Float32Array (n * D)
  encode(x, n, labels) {
    const t = this.info.tensors;
    return serialized(async () => {
      const feeds = { [t.image]: new ort.Tensor('float32', x, [n, ...this.shape]) };
      if (this.info.num_classes) feeds[t.label] = this.labelTensor(labels, n);
      if (this.info.refine_steps) {  // a refining encoder: the model's own number of steps, the contract's int64 [1]
        const steps = this.info.refine_steps;
        feeds[t.refine_steps] = new ort.Tensor('int64', BigInt64Array.of(BigInt(steps.default)), steps.shape);
      }
      const out = await this.encoder.run(feeds, [t.mu, t.logvar]);
      return { mu: out[t.mu].data, logvar: out[t.logvar].data };
    });
  }
}

// Drop stale work while dragging: run(job) starts job now if idle, else keeps only the newest waiting job.
export class Latest {
  constructor() { this.busy = false; this.waiting = null; }
  run(job) {
    if (this.busy) { this.waiting = job; return; }
    this.busy = true;
    job().catch(e => console.error(e)).finally(() => {
      this.busy = false;
      const next = this.waiting;
      this.waiting = null;
      if (next) this.run(next);
    });
  }
}
