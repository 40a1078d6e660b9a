// The views that move the current z: sliders, the 2-D pad, the latent map.
import { colour, drawBytes, drawImages } from './draw.mjs';

const $ = id => document.getElementById(id);
const RANGE = 3;  // sliders and pad cover -3..3 prior standard deviations
const INFORMATIVE_KL = 0.05;  // nats: components below this are hidden behind "show all"
const MAX_FIRST = 12;

export function setupSliders(app) {
  const { info } = app;
  const box = $('sliders');
  const kl = info.kl_per_dim;
  $('order-note').textContent = `ordered by ${info.order_by}` +
    (kl ? '; KL in nats beside each' : '');
  let shown = info.order.filter(d => !kl || kl[d] >= INFORMATIVE_KL).slice(0, MAX_FIRST);
  if (shown.length < Math.min(2, info.latent_dim)) shown = info.order.slice(0, Math.min(MAX_FIRST, info.latent_dim));
  const inputs = new Map();
  const add = d => {
    const row = document.createElement('div');
    row.className = 'slider';
    row.innerHTML = `<span>z${d}${kl ? ` <small>${kl[d].toFixed(2)}</small>` : ''}</span>` +
      `<input type="range" min="${-RANGE}" max="${RANGE}" step="0.01" data-dim="${d}"><span></span>`;
    const input = row.querySelector('input'), value = row.querySelectorAll('span')[1];
    input.value = app.z[d];
    value.textContent = app.z[d].toFixed(2);
    input.addEventListener('input', () => {
      app.z[d] = Math.fround(parseFloat(input.value));
      app.zChanged('slider');
    });
    inputs.set(d, { input, value });
    box.appendChild(row);
  };
  shown.forEach(add);
  const rest = info.order.filter(d => !shown.includes(d));
  const button = $('show-all');
  if (rest.length) {
    button.hidden = false;
    button.textContent = `show all ${info.latent_dim} components`;
    button.addEventListener('click', () => { rest.forEach(add); button.hidden = true; }, { once: true });
  }
  app.onZ.push(source => {
    if (source === 'slider') return;
    for (const [d, { input, value }] of inputs) { input.value = app.z[d]; value.textContent = app.z[d].toFixed(2); }
  });
  app.onZ.push(() => { for (const [d, { value }] of inputs) value.textContent = app.z[d].toFixed(2); });
}

export function setupPad(app) {
  const { info } = app;
  if (info.latent_dim < 2) { $('pad-card').hidden = true; return; }
  const pad = $('pad'), px = $('pad-x'), py = $('pad-y');
  for (const select of [px, py]) {
    select.innerHTML = info.order.map(d => `<option value="${d}">z${d}</option>`).join('');
  }
  px.value = info.order[0];
  py.value = info.order[1];
  const ctx = pad.getContext('2d');
  const toPx = v => ((v + RANGE) / (2 * RANGE)) * pad.width;
  const draw = () => {
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.strokeStyle = '#e3e6ec';
    for (let v = -RANGE; v <= RANGE; v++) {
      ctx.beginPath(); ctx.moveTo(toPx(v), 0); ctx.lineTo(toPx(v), pad.height); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(0, toPx(v)); ctx.lineTo(pad.width, toPx(v)); ctx.stroke();
    }
    const x = toPx(app.z[+px.value]), y = pad.height - toPx(app.z[+py.value]);
    ctx.fillStyle = '#2a62c9';
    ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.fill();
  };
  const move = event => {
    if (!(event.buttons & 1) && event.type !== 'pointerdown') return;
    const r = pad.getBoundingClientRect();
    const fx = (event.clientX - r.left) / r.width, fy = (event.clientY - r.top) / r.height;
    app.z[+px.value] = Math.fround(Math.max(-RANGE, Math.min(RANGE, (fx * 2 - 1) * RANGE)));
    app.z[+py.value] = Math.fround(Math.max(-RANGE, Math.min(RANGE, (1 - fy * 2) * RANGE)));
    app.zChanged('pad');
  };
  pad.addEventListener('pointerdown', move);
  pad.addEventListener('pointermove', move);
  px.addEventListener('change', draw);
  py.addEventListener('change', draw);
  app.onZ.push(draw);
  draw();
}

// The encoded test images as a scatter: hover shows a point, click makes its mean the current z.
export function setupMap(app, map) {
  const note = $('map-note');
  if (!map.available) {
    note.textContent = `No map: ${map.reason}.`;
    $('map').hidden = true;
    return;
  }
  const { info } = app;
  note.textContent = `${map.count} test images at their posterior means, ` + (map.method === 'latent'
    ? 'drawn in the 2-D latent itself.'
    : `projected on the first two principal components of the means (PCA, ${(100 * (map.explained[0] + map.explained[1])).toFixed(0)}% of their variance).`) +
    ' Hover to decode, click to make it the current z.';
  const canvas = $('map'), ctx = canvas.getContext('2d');
  const xs = map.points.map(p => p[0]), ys = map.points.map(p => p[1]);
  const lo = [Math.min(...xs), Math.min(...ys)], hi = [Math.max(...xs), Math.max(...ys)];
  const m = 10;
  const screen = map.points.map(([x, y]) => [
    m + ((x - lo[0]) / (hi[0] - lo[0] || 1)) * (canvas.width - 2 * m),
    canvas.height - m - ((y - lo[1]) / (hi[1] - lo[1] || 1)) * (canvas.height - 2 * m)]);
  const images = Uint8Array.from(atob(map.images), ch => ch.charCodeAt(0));
  const size = info.image_shape.reduce((a, b) => a * b, 1);
  let hot = -1;
  const draw = () => {
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    screen.forEach(([x, y], i) => {
      ctx.fillStyle = colour(map.labels ? map.labels[i] : null);
      ctx.beginPath(); ctx.arc(x, y, 2.5, 0, 2 * Math.PI); ctx.fill();
    });
    for (const [i, style] of [[hot, '#000'], ...app.mapPicks.map(i => [i, '#d00'])]) {
      if (i < 0) continue;
      ctx.strokeStyle = style;
      ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(screen[i][0], screen[i][1], 6, 0, 2 * Math.PI); ctx.stroke();
    }
  };
  const nearest = event => {
    const r = canvas.getBoundingClientRect();
    const x = (event.clientX - r.left) * (canvas.width / r.width), y = (event.clientY - r.top) * (canvas.height / r.height);
    let best = -1, bestD = 64;  // within 8 canvas pixels
    screen.forEach(([px, py], i) => { const d = (px - x) ** 2 + (py - y) ** 2; if (d < bestD) { best = i; bestD = d; } });
    return best;
  };
  const show = async i => {
    drawBytes($('map-original'), images.subarray(i * size, (i + 1) * size), info.image_shape);
    const label = map.labels && info.num_classes ? map.labels[i] : app.label;
    const out = await app.model.decode(Float32Array.from(map.mu[i]), 1, [label]);
    drawImages($('map-decoded'), out, 1, info.image_shape);
  };
  canvas.addEventListener('pointermove', event => {
    const i = nearest(event);
    if (i === hot) return;
    hot = i;
    draw();
    if (i >= 0) app.mapHover.run(() => show(i));
  });
  canvas.addEventListener('click', event => {
    const i = nearest(event);
    if (i < 0) return;
    app.mapPicks = [...app.mapPicks, i].slice(-2);  // the last two clicks: the interpolation's ends
    if (map.labels && info.num_classes) app.setLabel(map.labels[i]);
    app.z.set(map.mu[i]);
    app.zChanged('map');
    app.mapHover.run(() => show(i));
    app.pathsChanged();
    draw();
  });
  if (map.labels) {
    const names = map.label_names.length ? map.label_names : [...new Set(map.labels)].map(String);
    for (const [k, name] of names.entries()) {  // class names are data: text nodes, never HTML
      const item = document.createElement('span'), dot = document.createElement('i');
      dot.style.background = colour(k);
      item.append(dot, name);
      $('map-legend').append(item);
    }
  }
  app.screenPoints = screen;
  draw();
  app.mapHover.run(() => show(0));
}
