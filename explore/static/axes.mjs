// Round axis ticks: steps of 1, 2 or 5 times a power of ten, as a person would label an axis by hand.

// The smallest step of 1, 2 or 5 x 10^k that cuts `span` into at most `maxTicks - 1` pieces
export function niceStep(span, maxTicks = 5) {
  const raw = span / Math.max(1, maxTicks - 1);
  if (!(raw > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map(m => m * p).find(s => s >= raw * (1 - 1e-9));
}

// digits after the point that show every multiple of `step` exactly (0.25 -> 2, 5 -> 0)
function decimals(step) {
  return Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
}

export function formatTick(v, step) {
  const text = v.toFixed(decimals(step));
  return text === '-0' || /^-0\.0*$/.test(text) ? text.slice(1) : text;
}

// The multiples of a round step inside [lo, hi]: { step, values }. integer: whole-number steps only (counts).
export function ticks(lo, hi, { maxTicks = 5, integer = false } = {}) {
  let step = niceStep(hi - lo, maxTicks);
  if (integer) step = Math.max(1, Math.round(step));
  const d = decimals(step), values = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) values.push(Number((k * step).toFixed(d)));
  return { step, values };
}

// A data range widened to round numbers, and its ticks: the axis of a line chart.
export function niceRange(lo, hi, { maxTicks = 5, integer = false } = {}) {
  if (!(hi > lo)) {
    const pad = integer ? 1 : Math.abs(lo) * 0.1 || 1;
    [lo, hi] = [lo - pad, hi + pad];
  }
  let step = niceStep(hi - lo, maxTicks);
  if (integer) step = Math.max(1, Math.round(step));
  const a = Math.floor(lo / step + 1e-9) * step, b = Math.ceil(hi / step - 1e-9) * step;
  return { lo: a, hi: b, ...ticks(a, b, { maxTicks: Math.round((b - a) / step) + 1, integer }) };
}

// A log10 axis over data in [lo, hi] (values, not logs): bounds and ticks at 1, 2 and 5 times powers of ten,
// or at the powers of ten alone when those would be too many.
export function logRange(lo, hi, maxTicks = 7) {
  const a = Math.floor(Math.log10(lo) + 1e-9), b = Math.ceil(Math.log10(hi) - 1e-9);
  const candidates = [];
  for (let k = a; k <= b; k++) for (const m of [1, 2, 5]) candidates.push(Number((m * 10 ** k).toPrecision(1)));
  const below = candidates.filter(v => v <= lo * (1 + 1e-9)).at(-1) ?? 10 ** a;
  const above = candidates.find(v => v >= hi * (1 - 1e-9)) ?? 10 ** b;
  const values = candidates.filter(v => v >= below && v <= above);
  if (values.length <= maxTicks) return { lo: below, hi: above === below ? above * 10 : above, values };
  const decades = [];
  for (let k = a; k <= b; k++) decades.push(Number((10 ** k).toPrecision(1)));
  return { lo: 10 ** a, hi: 10 ** b, values: decades };
}

export function formatLogTick(v) {
  return v >= 1e-4 && v < 1e5 ? String(Number(v.toPrecision(1))) : v.toExponential(0).replace('e+', 'e');
}

// 'a 3', 'an 8', 'an eel': the article a class name takes in English (8, 11, 18, 80-89 and vowels read with 'an')
export function withArticle(name) {
  return `${/^(8|11(?!\d)|18(?!\d)|[aeiou])/i.test(String(name)) ? 'an' : 'a'} ${name}`;
}
