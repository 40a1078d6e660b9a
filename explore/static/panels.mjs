// The views that decode many images (sample grid, interpolation, traversal, your image), the model
// card and the training run.
import { drawImages, savePng } from './draw.mjs';
import { latentsFromParts, lerp, readParts, sampleLabels, slerp, traverse } from './latent.mjs';
import { drawRun } from './charts.mjs';
import { formatTick, withArticle } from './axes.mjs';

const $ = id => document.getElementById(id);
const GRID_COLUMNS = 8;  // vaectl generate's --nrow default
const SAME_Z_PER_CLASS = 8;
const MAX_STEPS = 32;

// A number input read within [lo, hi]; a value outside is shown clamped and the note says so.
function clamped(input, lo, hi, fallback, note, what) {
  const asked = parseFloat(input.value);
  const v = Number.isFinite(asked) ? Math.max(lo, Math.min(hi, asked)) : fallback;
  note.textContent = Number.isFinite(asked) && v !== asked ? `${what}: ${v} (${lo} to ${hi} here; asked for ${asked})` : '';
  note.classList.toggle('warn', note.textContent !== '');
  return v;
}

// The prior's draws for a seed, as `vaectl generate` makes them: { rows, dim, center, offset } (float64).
// label: '' (unconditional), 'cycle', 'all', 'all-same' or a label index. From the server, or the static
// site's precomputed seeds.
export async function drawsFor(app, prior, seed, n, label) {
  if (app.info.seeds) {
    if (!app.info.seeds.includes(seed)) throw new Error(`this static page ships seeds ${app.info.seeds[0]} to ${app.info.seeds.at(-1)} only`);
    app.siteDraws ??= {};
    const file = `api/draws/${prior}-${seed}.json`;
    app.siteDraws[file] ??= await app.getJson(file);
    const parts = app.siteDraws[file][`${n}|${label}`];
    if (!parts) throw new Error(`this static page ships grids of 16 and 64 images and "all classes" of ${SAME_Z_PER_CLASS}`);
    return readParts(parts);
  }
  return readParts(await app.getJson(`api/draws.json?prior=${encodeURIComponent(prior)}&seed=${seed}&n=${n}&label=${label}`));
}

export function setupGrid(app) {
  const { info } = app;
  const seed = $('seed'), temperature = $('temperature'), n = $('grid-n'), sameZ = $('same-z'), prior = $('prior');
  const gridClass = $('grid-class');
  if (info.num_classes) {  // the grid's own class: by default the classes in turn, as vaectl generate without --label
    $('same-z-box').hidden = false;
    $('grid-class-box').hidden = false;
    gridClass.add(new Option('each in turn', 'cycle'));
    info.label_names.forEach((name, k) => gridClass.add(new Option(name === 'none' ? 'none (no label)' : name, String(k))));
  }
  info.priors.forEach((p, k) => prior.add(new Option(p.name + (k === 0 && info.priors.length > 1 ? ' (default)' : ''), p.name)));
  const describe = () => {
    const p = info.priors.find(q => q.name === prior.value), isDefault = p.name === info.priors[0].name;
    $('prior-note').textContent = `${p.description}. ` + (isDefault
      ? `vaectl generate samples from this prior by default${info.priors.length > 1 ? ` (--prior ${info.priors.slice(1).map(q => q.name).join(' or ')} for the other)` : ''}.`
      : `vaectl generate samples from ${info.priors[0].name} by default; --prior ${p.name} gives these.`);
  };
  if (info.seeds) { seed.max = Math.max(...info.seeds); }
  const draw = async () => {
    const s = parseInt(seed.value, 10), t = parseFloat(temperature.value);
    $('temperature-value').textContent = t.toFixed(2);
    if (!(s >= 0)) return;
    const all = info.num_classes && sameZ.checked;
    gridClass.disabled = Boolean(all);
    const per = all ? SAME_Z_PER_CLASS : parseInt(n.value, 10);
    const chosen = !info.num_classes ? null : gridClass.value === 'cycle' ? 'cycle' : parseInt(gridClass.value, 10);
    const label = !info.num_classes ? '' : all ? 'all-same' : String(chosen);
    const parts = await drawsFor(app, prior.value, s, per, label);
    const { labels, total } = sampleLabels(per, info.num_classes, all ? 'all' : chosen);
    const z = latentsFromParts(parts, t, total, all ? i => i % per : i => i);
    const out = await app.model.decode(z, total, labels);
    drawImages($('grid'), out, total, info.image_shape, all ? per : GRID_COLUMNS, 2, 2);
    const flags = [`--seed ${s}`, t !== 1 ? `--temperature ${t}` : '', prior.value !== info.priors[0].name ? `--prior ${prior.value}` : '',
      all ? `-n ${per} --label all --same-z` : `-n ${per}` + (chosen !== null && chosen !== 'cycle' ? ` --label ${info.label_names[chosen]}` : '')];
    $('grid-note').textContent = `The grid of vaectl generate ${flags.filter(Boolean).join(' ')}` +
      (chosen === 'cycle' && !all ? ` (no --label: the classes in turn, ${info.label_names[0]} to ` +
        `${info.label_names[info.num_classes - 1]}, reading along the rows)` : '') +
      (info.seeds ? ` (this static page ships seeds ${info.seeds[0]} to ${info.seeds.at(-1)}).` : '.');
    window.vaectl.lastGrid = { seed: s, temperature: t, n: total, labels, label: all ? 'all' : chosen, prior: prior.value };
  };
  const run = () => app.gridJobs.run(() => draw().catch(e => app.status(e.message, true)));
  for (const el of [seed, temperature, n, sameZ, gridClass]) el.addEventListener('input', run);
  prior.addEventListener('change', () => { describe(); run(); app.onPrior.forEach(f => f()); });
  $('save-grid').addEventListener('click', () => savePng($('grid'), 'vaectl-samples.png', 4));
  app.prior = () => prior.value;
  app.onVariant.push(run);
  app.onZ.push(source => source === 'guidance' && run());
  describe();
  run();
}

// The selected prior's mean and standard deviation of each component (vaectl.prior's Prior.moments, from
// info.json): one row, or one per label for a prior fitted per class.
function priorMoments(app) {
  const p = app.info.priors.find(q => q.name === app.prior());
  const row = p.mean.length > 1 ? app.label : 0;
  return { name: p.name, mean: p.mean[row], std: p.std[row] };
}

export function setupPaths(app) {
  const { info } = app;
  const from = $('path-from'), method = $('method'), steps = $('steps');
  const dim = $('trav-dim'), span = $('span'), tsteps = $('trav-steps');
  dim.innerHTML = info.order.map(d => `<option value="${d}">z${d}</option>`).join('');
  const strip = async () => {
    const k = clamped(steps, 2, MAX_STEPS, 10, $('path-note'), 'steps');
    const said = $('path-note').textContent;
    let a, b, what;
    if (from.value === 'map') {
      if (app.mapPicks.length < 2) { $('path-note').textContent = 'Click two points on the map.'; return; }
      [a, b] = app.mapPicks.map(i => (i === 'upload' ? app.upload.mu : Float32Array.from(app.map.mu[i])));
      what = 'between the two map points clicked last (their posterior means)';
    } else {
      const label = info.num_classes ? String(app.label) : '';
      const [pa, pb] = [await drawsFor(app, app.prior(), parseInt($('seed-a').value, 10), 1, label),
        await drawsFor(app, app.prior(), parseInt($('seed-b').value, 10), 1, label)];
      [a, b] = [latentsFromParts(pa, 1), latentsFromParts(pb, 1)];  // as `vaectl interpolate --seed-a --seed-b`
      what = 'between the first draws of the two seeds, as vaectl interpolate --seed-a --seed-b';
    }
    $('path-note').textContent = said ? `${said}; ${what}` : `${what[0].toUpperCase()}${what.slice(1)}.`;
    const z = (method.value === 'slerp' ? slerp : lerp)(a, b, k);
    const out = await app.model.decode(z, k, new Array(k).fill(app.label));
    drawImages($('strip'), out, k, info.image_shape, k, 2, 2);
    window.vaectl.lastStrip = { from: from.value, method: method.value, steps: k };
  };
  // The traversal: component d over the selected prior's mean +- span of its standard deviation, the others
  // at the current z (as `vaectl traverse` with --seed or --image; from the prior's mean, traverse's own row).
  const trav = async () => {
    const note = $('trav-note');
    const k = clamped(tsteps, 2, MAX_STEPS, 9, note, 'steps');
    const stepsSaid = note.textContent;
    const s = clamped(span, 0.1, 10, 3, note, 'span');
    if (stepsSaid) note.textContent = [stepsSaid, note.textContent].filter(Boolean).join('; ');
    note.classList.toggle('warn', note.textContent !== '');
    const d = parseInt(dim.value, 10), z0 = Float32Array.from(app.z), label = app.label;
    const { name, mean, std } = priorMoments(app);
    const z = traverse(z0, d, s, k, mean[d], std[d]);
    const out = await app.model.decode(z, k, new Array(k).fill(label));
    drawImages($('traversal'), out, k, info.image_shape, k, 2, 2);
    const [first, last] = [z[d], z[(k - 1) * z0.length + d]], num = v => formatTick(v, 0.01).replace('-', '−');
    const ends = $('trav-axis').children;
    ends[0].textContent = `z${d} = ${num(first)} (−${s} prior std)`;
    ends[1].textContent = `${num(mean[d])} (the ${name} prior's mean; std ${num(std[d])})`;
    ends[2].textContent = `${num(last)} (+${s} prior std)`;
    $('trav-axis').style.width = $('traversal').style.width;
    const flags = [`--dim ${d} --span ${s} --steps ${k}`, name !== info.priors[0].name ? `--prior ${name}` : '',
      info.num_classes ? `--label ${info.label_names[label]}` : ''];
    const command = `vaectl traverse ${flags.filter(Boolean).join(' ')}`;
    $('trav-cli').textContent = z0.every((v, j) => v === Math.fround(mean[j]))
      ? `The row of ${command}, which starts at the prior's mean.`
      : `The other components stay at the current z, as vaectl traverse --seed or --image keeps a draw's or an ` +
        `image's; ${command} starts at the prior's mean.`;
    window.vaectl.lastTraversal = { z0: Array.from(z0), dim: d, steps: k, span: s, prior: name, center: mean[d], scale: std[d], z: Array.from(z) };
  };
  const runStrip = () => app.stripJobs.run(() => strip().catch(e => app.status(e.message, true)));
  const runTrav = () => app.travJobs.run(() => trav().catch(e => app.status(e.message, true)));
  for (const el of [from, method, steps, $('seed-a'), $('seed-b')]) el.addEventListener('input', runStrip);
  for (const el of [dim, span, tsteps]) el.addEventListener('input', runTrav);
  $('trav-mean').addEventListener('click', () => {
    const { name, mean } = priorMoments(app);
    app.z.set(mean);  // rounded to float32, as `vaectl traverse` rounds the prior's mean
    app.zChanged('button', `the mean of the ${name} prior`);
  });
  app.pathsChanged = runStrip;
  app.onZ.push(runTrav);
  app.onPrior.push(() => { runStrip(); runTrav(); });  // the seeds' draws and the traversal's steps
  app.onLabel.push(() => { runStrip(); runTrav(); });
  app.onVariant.push(() => { runStrip(); runTrav(); });
  runStrip();
  runTrav();
}

// -log p(x | decoded) summed over pixels, as training scores it (bernoulli: cross-entropy; gaussian: squared error)
function reconstructionError(x, mean, likelihood) {
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    if (likelihood === 'gaussian') { sum += (mean[i] - x[i]) ** 2; continue; }
    const p = Math.min(1 - 1e-7, Math.max(1e-7, mean[i]));
    sum -= x[i] * Math.log(p) + (1 - x[i]) * Math.log(1 - p);
  }
  return sum;
}

function klToPrior(mu, logvar) {  // KL(N(mu, exp(logvar)) || N(0, I)), summed over dimensions
  let sum = 0;
  for (let j = 0; j < mu.length; j++) sum += 0.5 * (mu[j] ** 2 + Math.exp(logvar[j]) - 1 - logvar[j]);
  return sum;
}

// Your image: the server's image loader (allowlist, bomb limit, resize) -> encoder and decoder in the page.
// A conditional model reads the image as one class (by default the one under which the model explains it
// best) and decodes that encoding under every class: the image's style drawn as each class.
export function setupUpload(app) {
  const { info } = app;
  const message = $('upload-message'), drop = $('drop'), input = $('file'), readAs = $('read-as');
  if (!info.upload || !info.encoder_file) {
    $('upload-note').textContent = !info.encoder_file ? 'Needs encoder.onnx, which this export does not have.'
      : 'Encoding your own image needs the server (vaectl explore): a static page cannot run vaectl\'s image loader.';
    drop.hidden = true;
    return;
  }
  $('upload-note').textContent = 'Read by vaectl\'s own image loader on this machine (PNG, JPEG, BMP, WebP, GIF), resized ' +
    'and made grey as the CLI does; encoded and decoded here in the page.';
  const slots = info.label_names.length, pixels = info.image_shape.reduce((a, b) => a * b, 1), D = info.latent_dim;
  if (info.num_classes) {
    $('read-as-box').hidden = false;
    info.label_names.forEach((name, k) => readAs.add(new Option(name === 'none' ? 'none (no label)' : name, String(k))));
  }
  let current = null;  // { x, encodings: { mu, logvar } per label, guess, scores }

  const clear = () => {
    $('upload-result').hidden = true;
    $('upload-row').replaceChildren();
    if (app.upload) { app.upload = null; app.mapPicks = app.mapPicks.filter(i => i !== 'upload'); app.onUpload.forEach(f => f()); }
    current = null;
    window.vaectl.lastUpload = null;
  };
  const cell = (pixelsOf, caption, chosen) => {
    const figure = document.createElement('figure'), canvas = document.createElement('canvas'), text = document.createElement('figcaption');
    canvas.className = 'pixels recon';
    drawImages(canvas, pixelsOf, 1, info.image_shape);
    text.textContent = caption;  // class names are data: text, never HTML
    figure.append(canvas, text);
    figure.classList.toggle('chosen', chosen);
    return figure;
  };
  // the row: the encoding under the class the image is read as, decoded under every class (or once, unconditional)
  const show = async () => {
    const { x, encodings } = current;
    const as = info.num_classes ? parseInt(readAs.value, 10) : null;
    const mu = info.num_classes ? encodings.mu.slice(as * D, (as + 1) * D) : encodings.mu;
    const n = info.num_classes ? slots : 1;
    const z = new Float32Array(n * D);
    for (let k = 0; k < n; k++) z.set(mu, k * D);
    const labels = info.num_classes ? Array.from({ length: n }, (_, k) => k) : null;
    const out = await app.model.decode(z, n, labels);
    const row = $('upload-row');
    row.classList.toggle('single', n === 1);
    row.replaceChildren(...Array.from({ length: n }, (_, k) => cell(out.subarray(k * pixels, (k + 1) * pixels),
      info.num_classes ? info.label_names[k] : 'reconstruction', !info.num_classes || k === as)));
    if (info.num_classes) {
      const guess = info.label_names[current.guess];
      $('upload-read').textContent = `The model explains your image best as ${withArticle(guess)}: that class gives the lowest ` +
        'loss (reconstruction error + KL). Below, your image encoded as the chosen class and decoded under every class: ' +
        'its style, drawn as each class. The framed one is its reconstruction.';
    } else {
      $('upload-read').textContent = 'The reconstruction: the posterior mean, decoded.';
    }
    app.upload = { x, mu: Float32Array.from(mu), label: as, recon: out.subarray(info.num_classes ? as * pixels : 0, (info.num_classes ? as + 1 : 1) * pixels) };
    app.onUpload.forEach(f => f());
    window.vaectl.lastUpload = {
      input: Array.from(x), mu: Array.from(mu), readAs: as, guess: current.guess, scores: current.scores,
      recon: Array.from(app.upload.recon), row: Array.from(out), labels,
    };
  };
  const send = async file => {
    message.textContent = '';
    clear();
    const response = await fetch('api/upload', { method: 'POST', body: file });
    if (!response.ok) {
      message.textContent = `${file.name}: ${(await response.text()).trim()}`;
      window.vaectl.lastUpload = { error: message.textContent };
      return;
    }
    const { pixels: values } = await response.json();
    const x = Float32Array.from(values);
    await app.model.loadEncoder();
    let encodings, guess = null, scores = null;
    if (info.num_classes) {  // encode under every label at once; score each real class by its own reconstruction
      const xs = new Float32Array(slots * pixels);
      for (let k = 0; k < slots; k++) xs.set(x, k * pixels);
      const labels = Array.from({ length: slots }, (_, k) => k);
      encodings = await app.model.encode(xs, slots, labels);
      const recons = await app.model.decode(encodings.mu, slots, labels);
      scores = labels.slice(0, info.num_classes).map(k => reconstructionError(x, recons.subarray(k * pixels, (k + 1) * pixels), info.likelihood) +
        klToPrior(encodings.mu.subarray(k * D, (k + 1) * D), encodings.logvar.subarray(k * D, (k + 1) * D)));
      guess = scores.indexOf(Math.min(...scores));
      readAs.value = String(guess);
    } else {
      encodings = await app.model.encode(x, 1, null);
    }
    current = { x, encodings, guess, scores };
    drawImages($('upload-original'), x, 1, info.image_shape);
    $('upload-result').hidden = false;
    await show();
  };
  app.useUpload = () => {
    if (!app.upload) return;
    if (info.num_classes) app.setLabel(app.upload.label);
    app.z.set(app.upload.mu);
    app.zChanged('upload', 'your image\'s posterior mean' + (info.num_classes ? `, read as ${info.label_names[app.upload.label]}` : ''));
  };
  const go = file => send(file).catch(e => { clear(); message.textContent = e.message; });
  input.addEventListener('change', () => input.files[0] && go(input.files[0]));
  readAs.addEventListener('change', () => current && show().catch(e => { message.textContent = e.message; }));
  $('upload-use').addEventListener('click', app.useUpload);
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
    `classes     ${info.class_names.join(', ') || 'none (unconditional)'}` +
      (info.label_names.length > info.class_names.length ? ' + none (no label: trained with label dropout)' : ''),
    `beta        ${info.beta}`,
    `priors      ${info.priors.map((p, k) => p.name + (k === 0 ? ' (default)' : '')).join(', ')}`,
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
  window.vaectl.charts = drawRun({ loss: $('curves-loss'), kl: $('curves-kl'), units: $('curves-units'), variance: $('curves-var') },
    run, app.info);
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
