// Latent-space arithmetic, as vaectl's numpy code does it (float64, then rounded to float32).

const f32 = Math.fround;

// np.linspace(start, stop, steps): start + i * step, the last point exactly stop
export function linspace(start, stop, steps) {
  const step = (stop - start) / (steps - 1);
  return Array.from({ length: steps }, (_, i) => (i === steps - 1 ? stop : start + i * step));
}

export function lerp(a, b, steps) {  // infer/latent.py lerp
  const out = new Float32Array(steps * a.length);
  linspace(0, 1, steps).forEach((t, i) => {
    for (let j = 0; j < a.length; j++) out[i * a.length + j] = (1 - t) * a[j] + t * b[j];
  });
  out.set(a, 0);
  out.set(b, (steps - 1) * a.length);
  return out;
}

export function slerp(a, b, steps) {  // infer/latent.py slerp: the great-circle arc, lerp where undefined
  const norm = v => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const na = norm(a), nb = norm(b);
  if (na === 0 || nb === 0) return lerp(a, b, steps);
  let cos = 0;
  for (let j = 0; j < a.length; j++) cos += (a[j] / na) * (b[j] / nb);
  const omega = Math.acos(Math.min(1, Math.max(-1, cos)));
  if (Math.sin(omega) < 1e-6) return lerp(a, b, steps);
  const out = new Float32Array(steps * a.length);
  linspace(0, 1, steps).forEach((t, i) => {
    const wa = Math.sin((1 - t) * omega), wb = Math.sin(t * omega);
    for (let j = 0; j < a.length; j++) out[i * a.length + j] = (wa * a[j] + wb * b[j]) / Math.sin(omega);
  });
  out.set(a, 0);
  out.set(b, (steps - 1) * a.length);
  return out;
}

// infer/latent.py traverse_latents: `steps` copies of z0 with component `dim` swept over
// center - span * scale .. center + span * scale (the prior's mean and standard deviation of that component)
export function traverse(z0, dim, span, steps, center = 0, scale = 1) {
  const out = new Float32Array(steps * z0.length);
  linspace(-span, span, steps).forEach((v, i) => {
    out.set(z0, i * z0.length);
    out[i * z0.length + dim] = f32(center + scale * v);
  });
  return out;
}

// A prior's draws for a seed as the server sends them: { rows, dim, center, offset } (float64, base64)
export function readParts({ rows, dim, center, offset }) {
  const f64 = text => new Float64Array(Uint8Array.from(atob(text), ch => ch.charCodeAt(0)).buffer);
  return { rows, dim, center: f64(center), offset: f64(offset) };
}

// vaectl.infer.prior: the latents are float32(center + temperature * offset), computed in float64.
// rowOf maps each output row to a drawn row ("all classes, same z" reuses the n draws for every class).
export function latentsFromParts(parts, temperature, total = parts.rows, rowOf = i => i) {
  const { dim, center, offset } = parts;
  const z = new Float32Array(total * dim);
  for (let i = 0; i < total; i++) {
    const r = rowOf(i) * dim;
    for (let j = 0; j < dim; j++) z[i * dim + j] = f32(center[r + j] + temperature * offset[r + j]);
  }
  return z;
}

// The labels Decoder.iter_sample decodes with: label 'cycle' goes through the classes in turn, a number fixes
// it, 'all' gives n per class (class-major). Returns { labels, total }.
export function sampleLabels(n, numClasses, label) {
  if (!numClasses) return { labels: null, total: n };
  if (label === 'all') return { labels: Array.from({ length: n * numClasses }, (_, i) => Math.floor(i / n)), total: n * numClasses };
  return { labels: Array.from({ length: n }, (_, i) => (label === 'cycle' ? i % numClasses : label)), total: n };
}
