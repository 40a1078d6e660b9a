// vaectl explore: the page. Reads the model from api/info.json, runs its decoder (and encoder) with
// onnxruntime-web, and wires the views. window.vaectl is a small hook for tests and the console.
import { Latest, Model } from './runtime.mjs';
import { drawImages, savePng } from './draw.mjs';
import { latentsFromParts } from './latent.mjs';
import { setupAxes, setupMap, setupPad, setupSliders } from './views.mjs';
import { drawsFor, modelCard, setupGrid, setupPaths, setupRun, setupUpload } from './panels.mjs';

const $ = id => document.getElementById(id);

function status(text, error = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
  if (error) console.warn(text);
}

async function getJson(url) {
  const response = await fetch(url).catch(e => {  // no server answered: a file:// page, or a stopped server
    throw new Error(`${url}: ${e.message}; serve the site's folder over http (python3 -m http.server -d FOLDER)`);
  });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${(await response.text()).trim()}`);
  return response.json();
}

async function main() {
  const info = await getJson('api/info.json');
  const model = new Model(info);
  const app = {
    info, model, getJson, status,
    // the page opens on a real image's encoding (z = 0 is a grey blob on some models)
    z: Float32Array.from(info.start.z),
    label: info.num_classes ? info.start.label : null,
    mapPicks: [], map: { available: false }, upload: null, axes: null,
    onZ: [], onLabel: [], onVariant: [], onAxes: [], onUpload: [], onPrior: [],
    mainJobs: new Latest(), gridJobs: new Latest(), stripJobs: new Latest(), travJobs: new Latest(),
    mapHover: new Latest(), manifoldJobs: new Latest(),
    pathsChanged: () => {}, useUpload: () => {}, prior: () => info.priors[0].name,
  };

  // the current z, decoded into the big image on every change
  const showMain = async () => {
    const z = Float32Array.from(app.z), label = app.label;
    const t0 = performance.now();
    const out = await model.decode(z, 1, [label]);
    const ms = performance.now() - t0;
    drawImages($('main-image'), out, 1, info.image_shape);
    window.vaectl.decodes += 1;
    window.vaectl.last = { z: Array.from(z), label, variant: model.variant, image: Array.from(out), ms };
  };
  // what the current z is, in words under the image: a test image's encoding, a draw, or moved by hand
  const zSource = what => {
    $('z-source').textContent = `z: ${what}` + (info.num_classes ? `; class ${info.label_names[app.label]}` : '') + '.';
  };
  let zWhat = info.start.what;
  app.zChanged = (source, what) => {
    if (what) zWhat = what;
    else if (source === 'slider' || source === 'pad') zWhat = 'moved by hand';
    zSource(zWhat);
    app.onZ.forEach(f => f(source));
    app.mainJobs.run(showMain);
  };
  app.setLabel = k => {
    if (!info.num_classes || k === app.label) return;
    app.label = k;
    $('class').value = String(k);
    zSource(zWhat);
    app.onLabel.forEach(f => f());
    app.mainJobs.run(showMain);
  };

  $('model-title').textContent = `${info.arch} VAE · ${info.latent_dim}-D latent · ${info.image_shape.join('×')}` +
    (info.num_classes ? ` · ${info.num_classes} classes` : '') + (info.row_context ? ' · row context' : '');
  $('variant').innerHTML = info.variants.map(v => `<option value="${v.variant}">${v.file.split('/')[1]}</option>`).join('');
  $('variant').addEventListener('change', async () => {
    status(`loading ${$('variant').value}…`);
    try {
      await model.useVariant($('variant').value);
    } catch (e) {
      status(`error: ${e.message}`, true);
      return;
    }
    $('model-card').textContent = modelCard(info, model.variant);
    app.onVariant.forEach(f => f());
    app.mainJobs.run(showMain);
    status(`decoder: ${model.variant}`);
  });
  if (info.num_classes) {
    $('class-box').hidden = false;
    const select = $('class');
    // every label the graphs take, "none" (no label) included for a model trained with label dropout
    info.label_names.forEach((name, k) => select.add(new Option(name === 'none' ? 'none (no label)' : name, String(k))));
    select.value = String(app.label);
    select.addEventListener('change', () => app.setLabel(parseInt(select.value, 10)));
  }
  if (info.guidance) {
    $('guidance-box').hidden = false;
    $('guidance-note').hidden = false;
    $('guidance').value = model.guidance;
    $('guidance-value').textContent = model.guidance.toFixed(1);
    $('guidance').addEventListener('input', () => {
      model.guidance = parseFloat($('guidance').value);
      $('guidance-value').textContent = model.guidance.toFixed(1);
      app.zChanged('guidance');
    });
  }
  $('zero').addEventListener('click', () => { app.z.fill(0); app.zChanged('button', 'z = 0, the centre of N(0, I)'); });
  $('random').addEventListener('click', async () => {  // one draw from the prior the sample grid uses, a fresh seed
    const seeds = info.seeds;
    const seed = seeds ? seeds[Math.floor(Math.random() * seeds.length)] : Math.floor(Math.random() * 2 ** 31);
    try {
      const parts = await drawsFor(app, app.prior(), seed, 1, info.num_classes ? String(app.label) : '');
      app.z.set(latentsFromParts(parts, 1));
      app.zChanged('button', `a draw from the ${app.prior()} prior (seed ${seed})`);
    } catch (e) {
      status(e.message, true);
    }
  });
  $('save-view').addEventListener('click', () => savePng($('main-image'), 'vaectl-view.png'));

  await model.useVariant(info.variants[0].variant);
  $('model-card').textContent = modelCard(info, model.variant);
  zSource(zWhat);
  await showMain();
  window.vaectl.firstImageMs = performance.now();  // since navigation started
  status('ready');
  window.vaectl.ready = true;

  setupSliders(app);
  setupAxes(app);
  setupPad(app);
  setupGrid(app);
  setupPaths(app);
  setupUpload(app);
  await setupRun(app);
  if (info.map.available) {
    app.map = await getJson('api/map.json');
    await model.loadEncoder();
  }
  setupMap(app, app.map.available ? app.map : info.map);
  window.vaectl.app = app;
  window.vaectl.settled = true;
}

// Test and console hooks: the last decoded image, and decode/encode on demand.
window.vaectl = {
  ready: false, settled: false, decodes: 0, manifolds: 0, firstImageMs: null, app: null,
  last: null, lastGrid: null, lastStrip: null, lastTraversal: null, lastUpload: null, lastManifold: null, lastHover: null,
  charts: null,
  decode: async (z, n, labels) => Array.from(await window.vaectl.app.model.decode(Float32Array.from(z), n, labels)),
  setZ: z => { window.vaectl.app.z.set(z); window.vaectl.app.zChanged('hook', 'set from the console'); },
};
main().catch(e => status(`error: ${e.message}`, true));
