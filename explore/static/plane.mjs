// Two latent components as a plane, in units of the prior (standard deviations of N(0, I)): the geometry,
// round ticks, the prior's 1σ and 2σ rings and the current-z marker. The pad and the map both draw with this,
// so they show the same components on the same labelled axes.
import { formatTick, ticks } from './axes.mjs';

// Margins around the square plot, in canvas pixels: tick labels at the left and bottom
const LEFT = 34, TOP = 8, RIGHT = 8, BOTTOM = 30;

// The square [-range, range]^2 on a canvas: value <-> pixel both ways
export function geometry(canvas, range) {
  const size = Math.min(canvas.width - LEFT - RIGHT, canvas.height - TOP - BOTTOM);
  const g = {
    range, size, left: LEFT, top: TOP,
    x: v => LEFT + ((v + range) / (2 * range)) * size,
    y: v => TOP + ((range - v) / (2 * range)) * size,
    // a pointer event -> the (x, y) values under it, clamped to the square
    at(event) {
      const r = canvas.getBoundingClientRect();
      const px = (event.clientX - r.left) * (canvas.width / r.width), py = (event.clientY - r.top) * (canvas.height / r.height);
      const clamp = v => Math.max(-range, Math.min(range, v));
      return [clamp(((px - LEFT) / size) * 2 * range - range), clamp(range - ((py - TOP) / size) * 2 * range)];
    },
    inside: (x, y) => Math.abs(x) <= range && Math.abs(y) <= range,
  };
  return g;
}

// The plot's background (white, or what paint() draws: the decoded manifold), grid lines at round ticks,
// their labels, the axis names.
export function drawAxes(ctx, g, xName, yName, paint = null) {
  const { values, step } = ticks(-g.range, g.range, { maxTicks: 7 });
  const end = g.left + g.size, bottom = g.top + g.size;
  ctx.save();
  ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  if (paint) {
    paint();
  } else {
    ctx.fillStyle = '#fff';
    ctx.fillRect(g.left, g.top, g.size, g.size);
  }
  ctx.lineWidth = 1;
  ctx.strokeStyle = paint ? 'rgba(255, 255, 255, 0.16)' : '#e3e6ec';
  for (const v of values) {
    ctx.beginPath(); ctx.moveTo(g.x(v), g.top); ctx.lineTo(g.x(v), bottom); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(g.left, g.y(v)); ctx.lineTo(end, g.y(v)); ctx.stroke();
  }
  ctx.strokeStyle = '#9aa3b2';
  ctx.strokeRect(g.left + 0.5, g.top + 0.5, g.size - 1, g.size - 1);
  ctx.fillStyle = '#556';
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'top';
  for (const v of values) {  // the corner labels inwards, clear of the other axis's
    ctx.textAlign = v === -g.range ? 'left' : v === g.range ? 'right' : 'center';
    ctx.fillText(formatTick(v, step), g.x(v), bottom + 3);
  }
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const v of values) ctx.fillText(formatTick(v, step), g.left - 4, g.y(v));
  ctx.font = 'bold 12px system-ui, sans-serif';
  ctx.fillStyle = '#1d2330';
  ctx.textAlign = 'right';
  ctx.textBaseline = 'bottom';
  ctx.fillText(`${xName} →`, end, ctx.canvas.height - 1);
  ctx.save();
  ctx.translate(11, g.top);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  ctx.fillText(`${yName} →`, 0, 0);
  ctx.restore();
  ctx.restore();
  return values;
}

// The prior's 1σ and 2σ circles: N(0, I) restricted to two components is N(0, I) in 2-D. Drawn last on the map,
// over its dots.
export function drawRings(ctx, g, onImage = false) {
  ctx.save();
  ctx.beginPath();
  ctx.rect(g.left, g.top, g.size, g.size);
  ctx.clip();
  ctx.lineWidth = onImage ? 1.5 : 1.2;
  ctx.font = '11px system-ui, sans-serif';
  ctx.textAlign = 'left';
  ctx.textBaseline = 'bottom';
  for (const r of [1, 2]) {
    const px = (r / (2 * g.range)) * g.size;
    ctx.setLineDash(r === 2 ? [5, 4] : []);
    if (!onImage) {  // a white edge under the line: it stays visible drawn over the map's coloured dots
      ctx.strokeStyle = 'rgba(255, 255, 255, 0.9)';
      ctx.lineWidth = 3.5;
      ctx.beginPath(); ctx.arc(g.x(0), g.y(0), px, 0, 2 * Math.PI); ctx.stroke();
      ctx.lineWidth = 1.5;
    }
    ctx.strokeStyle = onImage ? 'rgba(255, 196, 0, 0.85)' : 'rgb(42, 98, 201)';
    ctx.beginPath(); ctx.arc(g.x(0), g.y(0), px, 0, 2 * Math.PI); ctx.stroke();
    if (px > 14) {
      ctx.fillStyle = onImage ? 'rgba(255, 196, 0, 0.95)' : 'rgb(42, 98, 201)';
      ctx.fillText(`${r}σ`, g.x(0) + px * 0.72 + 2, g.y(0) - px * 0.72 - 1);
    }
  }
  ctx.restore();
}

// The current z: a ring with a dot, visible on white and on decoded images
export function drawMarker(ctx, g, x, y) {
  const cx = g.x(Math.max(-g.range, Math.min(g.range, x))), cy = g.y(Math.max(-g.range, Math.min(g.range, y)));
  ctx.save();
  ctx.lineWidth = 4;
  ctx.strokeStyle = '#fff';
  ctx.beginPath(); ctx.arc(cx, cy, 7, 0, 2 * Math.PI); ctx.stroke();
  ctx.lineWidth = 2;
  ctx.strokeStyle = '#d0021b';
  ctx.beginPath(); ctx.arc(cx, cy, 7, 0, 2 * Math.PI); ctx.stroke();
  ctx.fillStyle = '#d0021b';
  ctx.beginPath(); ctx.arc(cx, cy, 2, 0, 2 * Math.PI); ctx.fill();
  ctx.restore();
}
