// Line charts on a canvas, for the training run's metrics.jsonl (no plotting library).
import { PALETTE } from './draw.mjs';

// series: [{ name, values: [number|null per epoch] }]; log: a log y axis (posterior variance spans decades)
export function lineChart(canvas, title, series, { log = false } = {}) {
  const ctx = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height, L = 48, R = 8, T = 34, B = 24;
  ctx.clearRect(0, 0, W, H);
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#1d2330';
  ctx.fillText(title, L, 13);
  const tf = v => (log ? Math.log10(Math.max(v, 1e-12)) : v);
  const all = series.flatMap(s => s.values).filter(v => Number.isFinite(v)).map(tf);
  if (!all.length) return;
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi === lo) { hi += 1; lo -= 1; }
  const epochs = Math.max(...series.map(s => s.values.length));
  const x = i => L + (epochs > 1 ? (i / (epochs - 1)) * (W - L - R) : (W - L - R) / 2);
  const y = v => T + (1 - (tf(v) - lo) / (hi - lo)) * (H - T - B);
  ctx.strokeStyle = '#d8dce4';
  ctx.fillStyle = '#667';
  for (let k = 0; k <= 4; k++) {  // horizontal grid lines with their values
    const yy = T + (k / 4) * (H - T - B);
    const v = hi - (k / 4) * (hi - lo);
    ctx.beginPath(); ctx.moveTo(L, yy); ctx.lineTo(W - R, yy); ctx.stroke();
    ctx.fillText((log ? 10 ** v : v).toPrecision(3), 2, yy + 4);
  }
  ctx.fillText('epoch 1', L, H - 6);
  ctx.fillText(`${epochs}`, W - R - 16, H - 6);
  series.forEach((s, k) => {
    ctx.strokeStyle = PALETTE[k];
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    s.values.forEach((v, i) => {
      if (!Number.isFinite(v)) return;
      if (started) ctx.lineTo(x(i), y(v)); else ctx.moveTo(x(i), y(v));
      started = true;
      if (s.values.length === 1) ctx.arc(x(i), y(v), 2, 0, 2 * Math.PI);
    });
    ctx.stroke();
    ctx.fillStyle = PALETTE[k];
    ctx.fillText(`— ${s.name}`, L + k * 95, 27);  // the legend, between the title and the plot
  });
}

export function drawRun(lossCanvas, unitsCanvas, varCanvas, metrics) {
  const col = key => metrics.map(m => m[key]);
  lineChart(lossCanvas, 'loss per image (train, validation) and its parts (validation)', [
    { name: 'train loss', values: col('train_loss') }, { name: 'val loss', values: col('val_loss') },
    { name: 'val recon', values: col('val_recon') }, { name: 'val KL', values: col('val_kl') },
  ]);
  lineChart(unitsCanvas, 'active units (validation)', [{ name: 'active units', values: col('active_units') }]);
  // with beta = 0 the posterior variance collapses towards 0: a log axis shows it
  lineChart(varCanvas, 'mean posterior variance (validation, log scale)', [{ name: 'posterior var', values: col('posterior_var') }],
    { log: true });
}
