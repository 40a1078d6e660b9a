// vaectl explore: the page. Reads the model from api/info.json, runs its decoder (and encoder) with
// onnxruntime-web, and wires the views. window.vaectl is a small hook for tests and the console.
import { Latest, Model } from './runtime.mjs';
import { drawImages, savePng } from './draw.mjs';
import { setupMap, setupPad, setupSliders } from './views.mjs';
import { modelCard, setupGrid, setupPaths, setupRun, setupUpload } from './panels.mjs';

const $ = id => document.getElementById(id);

function status(text, error = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
  if (error) console.warn(text);
}

async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${(await response.text()).trim()}`);
  return response.json();
}

async function main() {
  const info = await getJson('api/info.json');
  const model = new Model(info);
  const app = {
    info, model, getJson, status,
    z: new Float32Array(info.latent_dim),
    label: info.num_classes ? 0 : null,
    mapPicks: [], map: { available: false },
    onZ: [], onLabel: [], onVariant: [],
    mainJobs: new Latest(), gridJobs: new Latest(), stripJobs: new Latest(), travJobs: new Latest(), mapHover: new Latest(),
    pathsChanged: () => {},
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
  app.zChanged = source => {
    app.onZ.forEach(f => f(source));
    app.mainJobs.run(showMain);
  };
  app.setLabel = k => {
    if (!info.num_classes || k === app.label) return;
    app.label = k;
    $('class').value = String(k);
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
    info.class_names.forEach((name, k) => select.add(new Option(name, String(k))));
    select.addEventListener('change', () => app.setLabel(parseInt(select.value, 10)));
  }
  if (info.guidance) {
    $('guidance-box').hidden = false;
    $('guidance').value = model.guidance;
    $('guidance-value').textContent = model.guidance.toFixed(1);
    $('guidance').addEventListener('input', () => {
      model.guidance = parseFloat($('guidance').value);
      $('guidance-value').textContent = model.guidance.toFixed(1);
      app.zChanged('guidance');
    });
  }
  $('zero').addEventListener('click', () => { app.z.fill(0); app.zChanged('button'); });
  $('random').addEventListener('click', () => {
    for (let j = 0; j < app.z.length; j++) {  // Box-Muller: a fresh N(0, I) point
      app.z[j] = Math.fround(Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random()));
    }
    app.zChanged('button');
  });
  $('save-view').addEventListener('click', () => savePng($('main-image'), 'vaectl-view.png'));

  await model.useVariant(info.variants[0].variant);
  $('model-card').textContent = modelCard(info, model.variant);
  await showMain();
  window.vaectl.firstImageMs = performance.now();  // since navigation started
  status('ready');
  window.vaectl.ready = true;

  setupSliders(app);
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
  ready: false, settled: false, decodes: 0, firstImageMs: null, app: null,
  last: null, lastGrid: null, lastStrip: null, lastTraversal: null, lastUpload: null,
  decode: async (z, n, labels) => Array.from(await window.vaectl.app.model.decode(Float32Array.from(z), n, labels)),
  setZ: z => { window.vaectl.app.z.set(z); window.vaectl.app.zChanged('hook'); },
};
main().catch(e => status(`error: ${e.message}`, true));
