// The views that decode many images (sample grid, interpolation, traversal, your image), the model
// card and the training run.
import { drawImages, savePng } from './draw.mjs';
import { lerp, sampleLatents, slerp, traverse } from './latent.mjs';
import { drawRun } from './charts.mjs';

const $ = id => document.getElementById(id);
const GRID_COLUMNS = 8;  // vaectl generate's --nrow default
const SAME_Z_PER_CLASS = 8;

// numpy's N(0, I) rows for a seed: from the server, or the static site's precomputed seeds
async function normals(app, seed, count) {
  if (app.info.seeds) {
    app.siteSeeds ??= await app.getJson('api/seeds.json');
    const rows = app.siteSeeds[String(seed)];
    if (!rows) throw new Error(`this static page ships seeds ${app.info.seeds.join(', ')} only`);
    return rows.slice(0, count);
  }
  return app.getJson(`api/normals.json?seed=${seed}&count=${count}`);
}

export function setupGrid(app) {
  const { info } = app;
  const seed = $('seed'), temperature = $('temperature'), n = $('grid-n'), sameZ = $('same-z');
  if (info.num_classes) $('same-z-box').hidden = false;
  if (info.seeds) { seed.max = Math.max(...info.seeds); $('grid-note').textContent += ` (this static page ships seeds ${info.seeds[0]}–${info.seeds.at(-1)})`; }
  const draw = async () => {
    const s = parseInt(seed.value, 10), t = parseFloat(temperature.value);
    $('temperature-value').textContent = t.toFixed(2);
    if (!(s >= 0)) return;
    const all = info.num_classes && sameZ.checked;
    const per = all ? SAME_Z_PER_CLASS : parseInt(n.value, 10);
    const rows = await normals(app, s, per);
    const { z, labels, total } = sampleLatents(rows, per, t, info.latent_dim, info.num_classes,
      all ? 'all' : app.label, all);
    const out = await app.model.decode(z, total, labels);
    drawImages($('grid'), out, total, info.image_shape, all ? per : GRID_COLUMNS, 2, 2);
    window.vaectl.lastGrid = { seed: s, temperature: t, n: total, labels, label: all ? 'all' : app.label };
  };
  const run = () => app.gridJobs.run(() => draw().catch(e => app.status(e.message, true)));
  for (const el of [seed, temperature, n, sameZ]) el.addEventListener('input', run);
  $('save-grid').addEventListener('click', () => savePng($('grid'), 'vaectl-samples.png', 4));
  app.onLabel.push(run);
  app.onVariant.push(run);
  run();
}

export function setupPaths(app) {
  const { info } = app;
  const from = $('path-from'), method = $('method'), steps = $('steps');
  const dim = $('trav-dim'), span = $('span'), tsteps = $('trav-steps');
  dim.innerHTML = info.order.map(d => `<option value="${d}">z${d}</option>`).join('');
  const strip = async () => {
    const k = Math.max(2, Math.min(32, parseInt(steps.value, 10) || 2));
    let a, b;
    if (from.value === 'map') {
      if (app.mapPicks.length < 2) { $('path-note').textContent = 'click two points on the map'; return; }
      [a, b] = app.mapPicks.map(i => Float32Array.from(app.map.mu[i]));
      $('path-note').textContent = `between map points ${app.mapPicks.join(' and ')} (posterior means)`;
    } else {
      const [ra] = await normals(app, parseInt($('seed-a').value, 10), 1);
      const [rb] = await normals(app, parseInt($('seed-b').value, 10), 1);
      [a, b] = [Float32Array.from(ra), Float32Array.from(rb)];  // as `vaectl interpolate --seed-a --seed-b`
      $('path-note').textContent = 'between the first draws of the two seeds, as vaectl interpolate --seed-a --seed-b';
    }
    const z = (method.value === 'slerp' ? slerp : lerp)(a, b, k);
    const out = await app.model.decode(z, k, new Array(k).fill(app.label));
    drawImages($('strip'), out, k, info.image_shape, k, 2, 2);
    window.vaectl.lastStrip = { from: from.value, method: method.value, steps: k };
  };
  const trav = async () => {
    const k = Math.max(2, Math.min(32, parseInt(tsteps.value, 10) || 2));
    const z = traverse(app.z, parseInt(dim.value, 10), parseFloat(span.value) || 3, k);
    const out = await app.model.decode(z, k, new Array(k).fill(app.label));
    drawImages($('traversal'), out, k, info.image_shape, k, 2, 2);
    window.vaectl.lastTraversal = { z0: Array.from(app.z), dim: parseInt(dim.value, 10), steps: k };
  };
  const runStrip = () => app.stripJobs.run(() => strip().catch(e => app.status(e.message, true)));
  const runTrav = () => app.travJobs.run(() => trav().catch(e => app.status(e.message, true)));
  for (const el of [from, method, steps, $('seed-a'), $('seed-b')]) el.addEventListener('input', runStrip);
  for (const el of [dim, span, tsteps]) el.addEventListener('input', runTrav);
  app.pathsChanged = runStrip;
  app.onZ.push(runTrav);
  app.onLabel.push(() => { runStrip(); runTrav(); });
  app.onVariant.push(() => { runStrip(); runTrav(); });
  runStrip();
  runTrav();
}

// Your image: the server's image loader (allowlist, bomb limit, resize) -> encoder and decoder in the page
export function setupUpload(app) {
  const { info } = app;
  const message = $('upload-message'), drop = $('drop'), input = $('file');
  if (!info.upload || !info.encoder_file) {
    $('upload-note').textContent = !info.encoder_file ? 'Needs encoder.onnx, which this export does not have.'
      : 'Encoding your own image needs the server (vaectl explore): a static page cannot run vaectl\'s image loader.';
    drop.hidden = true;
    return;
  }
  $('upload-note').textContent = 'Read by vaectl\'s own image loader on this machine (PNG, JPEG, BMP, WebP, GIF), resized as the CLI does; encoded and decoded here in the page.';
  const send = async file => {
    message.textContent = '';
    const response = await fetch('api/upload', { method: 'POST', body: file });
    if (!response.ok) {
      message.textContent = `${file.name}: ${(await response.text()).trim()}`;
      window.vaectl.lastUpload = { error: message.textContent };
      return;
    }
    const { pixels } = await response.json();
    const x = Float32Array.from(pixels);
    await app.model.loadEncoder();
    const { mu } = await app.model.encode(x, 1, [app.label]);
    const recon = await app.model.decode(mu, 1, [app.label]);
    drawImages($('upload-original'), x, 1, info.image_shape);
    drawImages($('upload-recon'), recon, 1, info.image_shape);
    $('upload-result').hidden = false;
    window.vaectl.lastUpload = { input: Array.from(x), mu: Array.from(mu), recon: Array.from(recon) };
  };
  const go = file => send(file).catch(e => { message.textContent = e.message; });
  input.addEventListener('change', () => input.files[0] && go(input.files[0]));
  drop.addEventListener('dragover', e => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', e => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer.files.length !== 1) { message.textContent = 'drop one image file'; return; }
    go(e.dataTransfer.files[0]);
  });
}

// What `vaectl info` prints, for the decoder (and encoder) in use
export function modelCard(info, variant) {
  const sig = t => `${t.name}: ${t.type} [${t.shape.join(', ')}]`;
  const graph = (d, role) => d ? [
    `${role.padEnd(11)} ${d.path} (${d.bytes.toLocaleString('en')} bytes, variant ${d.variant})`,
    ...d.inputs.map(t => `  input     ${sig(t)}`), ...d.outputs.map(t => `  output    ${sig(t)}`)] : [];
  const v = info.variants.find(x => x.variant === variant);
  return [
    `arch        ${info.arch}${info.row_context ? ' + row-autoregressive context' : ''}`,
    `latent_dim  ${info.latent_dim}`,
    `image       ${info.image_shape.join('x')} (channels x height x width)`,
    `likelihood  ${info.likelihood}`,
    `dataset     ${info.dataset}`,
    `classes     ${info.class_names.join(', ') || 'none (unconditional)'}`,
    `loaded      ${v.file} (${v.variant}, ${v.bytes.toLocaleString('en')} bytes)`,
    `checkpoint  sha256 ${info.decoder.checkpoint_sha256 || '?'}`,
    `vaectl      ${info.decoder.metadata['vaectl.version'] || '?'}`,
    ...graph(info.decoder, 'decoder'), ...graph(info.encoder, 'encoder'),
  ].join('\n');
}

export async function setupRun(app) {
  if (!app.info.run.available) return;
  const run = await app.getJson('api/run.json');
  $('run-card').hidden = false;
  drawRun($('curves-loss'), $('curves-units'), $('curves-var'), run.metrics);
  const slider = $('run-epoch'), img = $('run-grid');
  if (!run.grids.length) { img.hidden = true; slider.hidden = true; return; }
  slider.max = run.grids.length - 1;
  slider.value = run.grids.length - 1;
  const show = () => {
    img.src = run.grids[+slider.value];
    $('run-epoch-name').textContent = run.grids[+slider.value].match(/epoch(\d+)/)[1].replace(/^0+/, '');
  };
  slider.addEventListener('input', show);
  show();
}
