// The views that move the current z: sliders, the 2-D pad with the decoded manifold behind it, the latent map.
// The pad and the map show the same two components (app.axes) on the same axes, in prior units.
import { colour, drawBytes, drawImages } from './draw.mjs';
import { drawAxes, drawMarker, drawRings, geometry } from './plane.mjs';
import { withArticle } from './axes.mjs';

const $ = id => document.getElementById(id);
// How far the sliders and the pad reach: info.ranges, per component (at least 3 prior standard deviations,
// wider where the encoded test images or the prior go further: explore/model.py view_ranges)
const padRange = app => Math.max(app.info.ranges[app.axes.x], app.info.ranges[app.axes.y]);
const MANIFOLD = 16;  // the decoded manifold: a 16 x 16 grid of images behind the pad
const MANIFOLD_BATCH = 64;  // images per decoder run (a divisor of 16 x 16)
const MAP_VIEWS = [3, 6, 12, 25, 50, 100, 250, 500, 1000];  // the map's half-widths to choose from
const f32 = Math.fround;
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

export function setupSliders(app) {
  const { info } = app;
  const box = $('sliders');
  const kl = info.kl_per_dim, rule = info.informative;
  let shown;
  if (rule.dims === null) {
    shown = info.order;
    $('order-note').textContent = `All components, by index: ${info.order_by}.`;
  } else {
    shown = rule.dims;
    const hidden = info.latent_dim - shown.length;
    $('order-note').textContent = (shown.length
      ? `Shown: the ${shown.length === 1 ? 'component' : `${shown.length} components`} that carry information ` +
        `(${rule.rule}), most informative first, each with its KL in nats.`
      : `No component carries information (${rule.rule}): this decoder ignores z.`) +
      (hidden ? ` ${plural(hidden, 'component')} hidden: below ${rule.threshold} nats the encoder leaves a ` +
        'component at the prior, so moving it barely changes the image.' : '');
  }
  const inputs = new Map();
  const add = d => {
    const row = document.createElement('div');
    row.className = 'slider';
    row.innerHTML = `<span>z${d}${kl ? ` <small>${kl[d].toFixed(2)}</small>` : ''}</span>` +
      `<input type="range" min="${-info.ranges[d]}" max="${info.ranges[d]}" step="0.01" data-dim="${d}" aria-label="z${d}"><span></span>`;
    const input = row.querySelector('input'), value = row.querySelectorAll('span')[1];
    input.value = app.z[d];
    value.textContent = app.z[d].toFixed(2);
    input.addEventListener('input', () => {
      app.z[d] = f32(parseFloat(input.value));
      app.zChanged('slider');
    });
    inputs.set(d, { input, value });
    box.appendChild(row);
  };
  shown.forEach(add);
  const wide = shown.filter(d => info.ranges[d] > 3);
  if (wide.length) {  // where the encoded test images (or the prior) go further than 3 prior standard deviations
    const which = wide.length <= 3 ? wide.map(d => `z${d}`).join(', ') : `${wide.length} of these sliders`;
    $('order-note').textContent += ` ${which} reach${wide.length === 1 ? 'es' : ''} beyond ±3 (up to ` +
      `±${Math.max(...wide.map(d => info.ranges[d]))}): the encoded test images or the prior go that far.`;
  }
  const rest = info.order.filter(d => !shown.includes(d));
  const button = $('show-all');
  if (rest.length) {
    button.hidden = false;
    button.textContent = `show all ${info.latent_dim} components`;
    button.addEventListener('click', () => { rest.forEach(add); button.hidden = true; }, { once: true });
  }
  app.onZ.push(source => {
    for (const [d, { input, value }] of inputs) {
      if (source !== 'slider') input.value = app.z[d];
      value.textContent = app.z[d].toFixed(2);
    }
  });
}

// The two components the pad and the map show: for a 2-D model z0 across and z1 up, else the two most informative
export function setupAxes(app) {
  const { info } = app;
  const px = $('pad-x'), py = $('pad-y');
  const kl = info.kl_per_dim;
  for (const select of [px, py]) {
    select.innerHTML = info.order.map(d => `<option value="${d}">z${d}${kl ? ` (KL ${kl[d].toFixed(2)})` : ''}</option>`).join('');
  }
  app.axes = info.latent_dim === 2 ? { x: 0, y: 1 } : { x: info.order[0], y: info.order[1] ?? info.order[0] };
  px.value = app.axes.x;
  py.value = app.axes.y;
  const changed = (which, other) => {
    const v = parseInt(which === 'x' ? px.value : py.value, 10);
    if (v === app.axes[other]) app.axes[other] = app.axes[which];  // picking the other axis's component swaps them
    app.axes[which] = v;
    px.value = app.axes.x;
    py.value = app.axes.y;
    app.onAxes.forEach(f => f());
  };
  px.addEventListener('change', () => changed('x', 'y'));
  py.addEventListener('change', () => changed('y', 'x'));
}

export function setupPad(app) {
  const { info } = app;
  if (info.latent_dim < 2) { $('pad-card').hidden = true; return; }
  const pad = $('pad'), ctx = pad.getContext('2d'), toggle = $('manifold');
  let g = null;
  const tiles = document.createElement('canvas');  // the decoded manifold, one image per grid cell
  let drawnKey = null, ready = false;
  const fit = () => {  // the square the current axes reach
    g = geometry(pad, padRange(app));
    $('pad-note').textContent = `Behind the pad: ${MANIFOLD} × ${MANIFOLD} images decoded at evenly spaced points ` +
      `from −${g.range} to ${g.range}` + (g.range > 3 ? ' (wider than ±3: the encoded test images or the prior reach that far)' : '') +
      `. The rings hold 39 % (1σ) and 86 % (2σ) of N(0, I)'s draws in these two components.`;
  };
  fit();

  const draw = () => {
    const showTiles = toggle.checked && ready;
    app.padTicks = drawAxes(ctx, g, `z${app.axes.x}`, `z${app.axes.y}`, showTiles ? () => {
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(tiles, g.left, g.top, g.size, g.size);
    } : null);
    drawRings(ctx, g, showTiles);
    drawMarker(ctx, g, app.z[app.axes.x], app.z[app.axes.y]);
  };
  // what the manifold depends on: the components shown, every other component of z, the class, guidance, decoder
  const key = () => {
    const rest = Array.from(app.z).filter((_, d) => d !== app.axes.x && d !== app.axes.y);
    return JSON.stringify([app.axes, g.range, rest, app.label, app.model.guidance, app.model.variant]);
  };
  const decodeTiles = async () => {
    const k = key();
    if (k === drawnKey) return;
    const t0 = performance.now();
    const { x, y } = app.axes, n = MANIFOLD * MANIFOLD, D = info.latent_dim, range = g.range, step = (2 * range) / MANIFOLD;
    const z = new Float32Array(n * D);
    for (let r = 0; r < MANIFOLD; r++) {
      for (let c = 0; c < MANIFOLD; c++) {  // each cell decoded at its centre; row 0 is the top (y = +range)
        const i = r * MANIFOLD + c;
        z.set(app.z, i * D);
        z[i * D + x] = f32(-range + (c + 0.5) * step);
        z[i * D + y] = f32(range - (r + 0.5) * step);
      }
    }
    // in a few batches, so the main image's decode (queued meanwhile) waits for one batch at most, not the grid
    const pixels = info.image_shape.reduce((a, b) => a * b, 1), out = new Float32Array(n * pixels);
    for (let start = 0; start < n; start += MANIFOLD_BATCH) {
      const part = await app.model.decode(z.subarray(start * D, (start + MANIFOLD_BATCH) * D), MANIFOLD_BATCH,
        new Array(MANIFOLD_BATCH).fill(app.label));
      out.set(part, start * pixels);
    }
    drawImages(tiles, out, n, info.image_shape, MANIFOLD, 0, 0);
    drawnKey = k;
    ready = true;
    draw();
    window.vaectl.manifolds += 1;
    window.vaectl.lastManifold = { ms: performance.now() - t0, grid: MANIFOLD, axes: { x, y }, label: app.label, z: z.slice(0, D * n) };
  };
  const refresh = () => {
    draw();
    if (toggle.checked && key() !== drawnKey) app.manifoldJobs.run(decodeTiles);
  };
  app.padGeometry = () => ({ left: g.left, top: g.top, size: g.size, range: g.range, width: pad.width });
  let dragging = false;
  const move = event => {
    const [x, y] = g.at(event);
    app.z[app.axes.x] = f32(x);
    app.z[app.axes.y] = f32(y);
    app.zChanged('pad');
  };
  pad.addEventListener('pointerdown', event => { dragging = true; pad.setPointerCapture(event.pointerId); move(event); });
  pad.addEventListener('pointermove', event => { if (dragging && event.buttons & 1) move(event); });
  pad.addEventListener('pointerup', () => { dragging = false; });
  toggle.addEventListener('change', refresh);
  app.onZ.push(refresh);
  app.onLabel.push(refresh);
  app.onVariant.push(refresh);
  app.onAxes.push(() => { fit(); refresh(); });
  refresh();
}

// The encoded test images at their posterior means on the pad's two components: hover shows a point's image
// beside the cursor, click makes its mean the current z. An uploaded image joins them (app.upload).
export function setupMap(app, map) {
  const note = $('map-note');
  const { info } = app;
  if (!map.available || info.latent_dim < 2) {
    note.textContent = map.available ? 'No map: a 1-D latent has no plane to draw.' : `No map: ${map.reason}.`;
    $('map').hidden = true;
    return;
  }
  const canvas = $('map'), ctx = canvas.getContext('2d'), view = $('map-view'), tip = $('map-tip');
  $('map-controls').hidden = false;
  const images = Uint8Array.from(atob(map.images), ch => ch.charCodeAt(0));
  const size = info.image_shape.reduce((a, b) => a * b, 1);
  const names = map.label_names.length ? map.label_names : [...new Set(map.labels || [])].map(String);
  note.textContent = `${map.count} test images (numbered 0 to ${map.count - 1}, as vaectl data-images --index numbers them)` +
    (map.labels ? ', coloured by label.' : '.') + (info.num_classes
    ? ' This model is given the class beside z, so z need not hold it: the classes overlap, and z holds the style.' : '');
  let g = null, hot = null;
  const coords = i => [map.mu[i][app.axes.x], map.mu[i][app.axes.y]];

  // the half-widths offered for the current axes, and the smallest that shows 95 % of the points
  const fitViews = () => {
    const reach = map.mu.map((_, i) => Math.max(...coords(i).map(Math.abs))).sort((a, b) => a - b);
    const most = reach[Math.floor(0.95 * (reach.length - 1))], all = reach.at(-1);
    const pad = padRange(app);
    const views = [...new Set([...MAP_VIEWS, pad])].sort((a, b) => a - b).filter((v, k, all_) => k === 0 || all_[k - 1] < all);
    view.innerHTML = views.map(v => `<option value="${v}">±${v}${v === pad ? ' (as the pad)' : ''}</option>`).join('');
    view.value = String(views.find(v => v >= most) ?? views.at(-1));
    g = geometry(canvas, parseFloat(view.value));
  };
  const pointAt = i => (i === 'upload' ? [app.upload.mu[app.axes.x], app.upload.mu[app.axes.y]] : coords(i));
  const draw = () => {
    app.mapTicks = drawAxes(ctx, g, `z${app.axes.x}`, `z${app.axes.y}`);
    let outside = 0;
    map.mu.forEach((_, i) => {
      const [x, y] = coords(i);
      if (!g.inside(x, y)) { outside += 1; return; }
      ctx.fillStyle = colour(map.labels ? map.labels[i] : null);
      ctx.beginPath(); ctx.arc(g.x(x), g.y(y), 2.5, 0, 2 * Math.PI); ctx.fill();
    });
    drawRings(ctx, g);  // above the dots, which would hide them where the points crowd the prior's centre
    $('map-outside').textContent = outside
      ? `${outside} of ${map.count} points ${outside === 1 ? 'lies' : 'lie'} outside this view: choose a wider one to see them.`
      : `all ${map.count} points in view.`;
    $('map-outside').classList.toggle('warn', outside > 0);
    if (app.upload) {  // your image: a black diamond
      const [x, y] = pointAt('upload');
      const cx = g.x(Math.max(-g.range, Math.min(g.range, x))), cy = g.y(Math.max(-g.range, Math.min(g.range, y)));
      ctx.fillStyle = '#000';
      ctx.strokeStyle = '#fff';
      ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(cx, cy - 7); ctx.lineTo(cx + 7, cy); ctx.lineTo(cx, cy + 7); ctx.lineTo(cx - 7, cy); ctx.closePath();
      ctx.fill(); ctx.stroke();
    }
    for (const [i, style] of [[hot, '#000'], ...app.mapPicks.map(i => [i, '#d00'])]) {
      if (i === null || (i === 'upload' && !app.upload)) continue;
      const [x, y] = pointAt(i);
      if (!g.inside(x, y)) continue;
      ctx.strokeStyle = style;
      ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(g.x(x), g.y(y), 6, 0, 2 * Math.PI); ctx.stroke();
    }
    drawMarker(ctx, g, app.z[app.axes.x], app.z[app.axes.y]);
  };
  const screen = () => map.mu.map((_, i) => { const [x, y] = coords(i); return g.inside(x, y) ? [g.x(x), g.y(y)] : null; });
  const nearest = event => {
    const r = canvas.getBoundingClientRect();
    const x = (event.clientX - r.left) * (canvas.width / r.width), y = (event.clientY - r.top) * (canvas.height / r.height);
    let best = null, bestD = 64;  // within 8 canvas pixels
    const candidates = screen().map((p, i) => [i, p]);
    if (app.upload) { const [ux, uy] = pointAt('upload'); candidates.push(['upload', g.inside(ux, uy) ? [g.x(ux), g.y(uy)] : null]); }
    for (const [i, p] of candidates) {
      if (!p) continue;
      const d = (p[0] - x) ** 2 + (p[1] - y) ** 2;
      if (d < bestD || (i === 'upload' && d < 100)) { best = i; bestD = d; }
    }
    return best;
  };
  // the point's image and its decoded posterior mean, in a box beside the cursor
  const show = async (i, event) => {
    const own = i === 'upload';
    const label = own ? app.upload.label : (map.labels && info.num_classes ? map.labels[i] : app.label);
    if (own) drawImages($('map-original'), app.upload.x, 1, info.image_shape);
    else drawBytes($('map-original'), images.subarray(i * size, (i + 1) * size), info.image_shape);
    $('map-tip-text').textContent = own ? 'your image'
      : `test image ${i}${map.labels ? ` · ${names[map.labels[i]] ?? map.labels[i]}` : ''}`;
    if (event) {
      const wrap = canvas.parentElement.getBoundingClientRect();
      tip.hidden = false;
      // right of and below the cursor; flipped to its left or above it where the box would leave the map
      const left = event.clientX - wrap.left + 14, top = event.clientY - wrap.top + 14;
      const flipped = left + tip.offsetWidth > wrap.width ? left - tip.offsetWidth - 28 : left;
      tip.style.left = `${Math.max(0, flipped)}px`;
      tip.style.top = `${top + tip.offsetHeight > wrap.height ? top - tip.offsetHeight - 24 : top}px`;
    }
    const mu = own ? app.upload.mu : Float32Array.from(map.mu[i]);
    const out = await app.model.decode(mu, 1, [label]);
    drawImages($('map-decoded'), out, 1, info.image_shape);
    window.vaectl.lastHover = { index: i, label };
  };
  canvas.addEventListener('pointermove', event => {
    const i = nearest(event);
    if (i === null) { tip.hidden = true; if (hot !== null) { hot = null; draw(); } return; }
    if (i !== hot) { hot = i; draw(); }
    app.mapHover.run(() => show(i, event));
  });
  canvas.addEventListener('pointerleave', () => { tip.hidden = true; hot = null; draw(); });
  canvas.addEventListener('click', event => {
    const i = nearest(event);
    if (i === null) return;
    if (i === 'upload') { app.useUpload(); return; }
    app.mapPicks = [...app.mapPicks, i].slice(-2);  // the last two clicks: the interpolation's ends
    if (map.labels && info.num_classes) app.setLabel(map.labels[i]);
    app.z.set(map.mu[i]);
    app.zChanged('map', `the posterior mean of test image ${i}` + (map.labels ? ` (${withArticle(names[map.labels[i]] ?? map.labels[i])})` : ''));
    app.mapHover.run(() => show(i, event));
    app.pathsChanged();
  });
  view.addEventListener('change', () => { g = geometry(canvas, parseFloat(view.value)); draw(); });
  if (map.labels) {
    for (const [k, name] of names.entries()) {  // class names are data: text nodes, never HTML
      const item = document.createElement('span'), dot = document.createElement('i');
      dot.style.background = colour(k);
      item.append(dot, name);
      $('map-legend').append(item);
    }
  }
  fitViews();
  app.mapGeometry = () => ({ left: g.left, top: g.top, size: g.size, range: g.range, width: canvas.width });
  app.mapScreen = () => ({ points: screen(), upload: app.upload ? pointAt('upload').map((v, k) => (k ? g.y(v) : g.x(v))) : null, range: g.range });
  app.onZ.push(draw);
  app.onAxes.push(() => { fitViews(); draw(); });
  app.onUpload.push(draw);
  draw();
}
