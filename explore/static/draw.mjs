// Model output -> pixels, exactly as vaectl writes PNGs: uint8 = rint(float32(x * 255)), clipped.

function toByte(x) {
  const v = Math.fround(x * 255);
  let r = Math.round(v);
  if (r - v === 0.5 && r % 2 !== 0) r -= 1;  // numpy rounds halves to even; Math.round rounds them up
  return Math.min(255, Math.max(0, r));
}

// images: Float32Array (n * C * H * W); draws them as a grid like files.make_grid (2-pixel black padding)
export function drawImages(canvas, images, n, shape, ncol = n, pad = 0, scale = 0) {
  const [c, h, w] = shape;
  ncol = Math.max(1, Math.min(ncol, n));
  const nrow = Math.ceil(n / ncol);
  canvas.width = ncol * (w + pad) + pad;
  canvas.height = nrow * (h + pad) + pad;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(canvas.width, canvas.height);
  img.data.fill(0);
  for (let k = 3; k < img.data.length; k += 4) img.data[k] = 255;
  const plane = h * w;
  for (let i = 0; i < n; i++) {
    const x0 = pad + (i % ncol) * (w + pad), y0 = pad + Math.floor(i / ncol) * (h + pad);
    const base = i * c * plane;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const o = ((y0 + y) * canvas.width + x0 + x) * 4;
        for (let ch = 0; ch < 3; ch++) img.data[o + ch] = toByte(images[base + (c === 1 ? 0 : ch * plane) + y * w + x]);
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  if (scale) canvas.style.width = `${canvas.width * scale}px`;  // the height follows (CSS height: auto)
}

export function drawBytes(canvas, bytes, shape) {  // uint8 (C, H, W) -> canvas
  drawImages(canvas, Float32Array.from(bytes, b => b / 255), 1, shape);
}

// Save a canvas as a PNG, scaled up with nearest-neighbour so the file shows what the page shows.
export function savePng(canvas, name, scale = 8) {
  const big = document.createElement('canvas');
  big.width = canvas.width * scale;
  big.height = canvas.height * scale;
  const ctx = big.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(canvas, 0, 0, big.width, big.height);
  const link = document.createElement('a');
  link.download = name;
  link.href = big.toDataURL('image/png');
  link.click();
}

// one colour per class, well separated (Tableau 10)
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
export const colour = i => (i === null || i === undefined ? '#555' : PALETTE[i % PALETTE.length]);
