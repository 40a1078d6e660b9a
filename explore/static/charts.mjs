// Line charts on a canvas, for the training run's metrics.jsonl (no plotting library): round 1-2-5 ticks,
// whole-number ticks for counts, and a legend entry per series drawn in that series' own line style, so two
// series that coincide are both visible (a wide pale line under a dashed one).
import { PALETTE } from './draw.mjs';
import { formatLogTick, formatTick, logRange, niceRange, ticks } from './axes.mjs';

// series: [{ name, values: [number|null per epoch], width, dash }]; log: a log y axis; integer: counts
export function lineChart(canvas, title, series, { log = false, integer = false } = {}) {
  const ctx = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height, L = 44, R = 10, B = 22;
  ctx.clearRect(0, 0, W, H);
  ctx.font = 'bold 11px system-ui, sans-serif';
  ctx.fillStyle = '#1d2330';
  ctx.textBaseline = 'alphabetic';
  ctx.fillText(title, 4, 12);
  // the legend, flowing into as many lines as it needs under the title
  ctx.font = '11px system-ui, sans-serif';
  let lx = L, ly = 27;
  const style = (s, k) => {
    ctx.strokeStyle = s.colour ?? PALETTE[k];
    ctx.lineWidth = s.width ?? 2;
    ctx.setLineDash(s.dash ?? []);
  };
  series.forEach((s, k) => {
    const w = 26 + ctx.measureText(s.name).width + 14;
    if (lx + w > W - R && lx > L) { lx = L; ly += 14; }
    style(s, k);
    ctx.beginPath(); ctx.moveTo(lx, ly - 4); ctx.lineTo(lx + 20, ly - 4); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = '#334';
    ctx.fillText(s.name, lx + 24, ly);
    lx += w;
  });
  const T = ly + 10;
  const finite = series.flatMap(s => s.values).filter(v => Number.isFinite(v) && (!log || v > 0));
  if (!finite.length) return;
  const axis = log ? logRange(Math.min(...finite), Math.max(...finite))
    : niceRange(Math.min(...finite), Math.max(...finite), { maxTicks: Math.max(3, Math.floor((H - T - B) / 28)), integer });
  const tf = v => (log ? Math.log10(v) : v);
  const epochs = Math.max(...series.map(s => s.values.length));
  const x = i => L + (epochs > 1 ? (i / (epochs - 1)) * (W - L - R) : (W - L - R) / 2);
  const y = v => T + (1 - (tf(v) - tf(axis.lo)) / (tf(axis.hi) - tf(axis.lo))) * (H - T - B);
  ctx.lineWidth = 1;
  ctx.setLineDash([]);
  ctx.strokeStyle = '#e3e6ec';
  ctx.fillStyle = '#556';
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const v of axis.values) {
    ctx.beginPath(); ctx.moveTo(L, y(v)); ctx.lineTo(W - R, y(v)); ctx.stroke();
    ctx.fillText(log ? formatLogTick(v) : formatTick(v, axis.step), L - 4, y(v));
  }
  // epochs: whole-number ticks along the bottom
  const ex = ticks(1, epochs, { maxTicks: 8, integer: true });
  ctx.textAlign = 'center';
  ctx.textBaseline = 'alphabetic';
  for (const e of ex.values) ctx.fillText(String(e), x(e - 1), H - 8);
  ctx.textAlign = 'left';
  ctx.fillText('epoch', 2, H - 8);
  series.forEach((s, k) => {
    style(s, k);
    ctx.beginPath();
    let started = false;
    s.values.forEach((v, i) => {
      if (!Number.isFinite(v) || (log && v <= 0)) { started = false; return; }
      if (started) ctx.lineTo(x(i), y(v)); else ctx.moveTo(x(i), y(v));
      started = true;
    });
    ctx.stroke();
    if (s.values.length === 1 && Number.isFinite(s.values[0])) {
      ctx.setLineDash([]);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.beginPath(); ctx.arc(x(0), y(s.values[0]), 3, 0, 2 * Math.PI); ctx.fill();
    }
  });
  ctx.setLineDash([]);
  ctx.textAlign = 'left';
  return { lo: axis.lo, hi: axis.hi, ticks: axis.values };
}

const number = v => String(Number(v.toPrecision(3)));

// The run's charts. The validation loss is drawn with its two parts, which add up to it: the reconstruction
// and β × KL (β is the weight the loss gives the KL; validation_loss - recon, so the sum is exact).
export function drawRun(canvases, run, info) {
  const m = run.metrics, col = key => m.map(r => r[key]);
  const beta = number(info.beta);
  const weighted = m.map(r => (Number.isFinite(r.val_loss) && Number.isFinite(r.val_recon) ? r.val_loss - r.val_recon : null));
  const charts = {
    loss: {
      title: `loss per image = reconstruction + ${beta} × KL`,
      series: [
        { name: 'train loss', values: col('train_loss'), colour: PALETTE[0], width: 2 },
        { name: 'validation loss', values: col('val_loss'), colour: '#f5b06b', width: 6 },
        { name: 'validation reconstruction', values: col('val_recon'), colour: PALETTE[2], width: 2, dash: [6, 4] },
        { name: `${beta} × validation KL`, values: weighted, colour: PALETTE[3], width: 2.5, dash: [2, 3] },
      ],
    },
    kl: {
      title: 'KL to the prior per image (validation, nats)',
      series: [{ name: 'validation KL', values: col('val_kl'), colour: PALETTE[3], width: 2 }],
    },
    units: {
      title: `informative components (KL above ${info.informative.threshold} nats)`,
      series: [{ name: 'components', values: run.informative ?? [], colour: PALETTE[4], width: 2 }],
      integer: true,
    },
    variance: {
      title: 'mean posterior variance (validation, log scale)',
      series: [{ name: 'posterior variance', values: col('posterior_var'), colour: PALETTE[6], width: 2 }],
      log: true,
    },
  };
  const drawn = {};
  for (const [key, c] of Object.entries(charts)) {
    const axis = lineChart(canvases[key], c.title, c.series, { log: c.log, integer: c.integer });
    drawn[key] = { title: c.title, series: c.series.map(s => ({ name: s.name, values: s.values })), axis };
  }
  return drawn;
}
