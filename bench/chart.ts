/**
 * A small dependency-free SVG line chart: latency against offered load, for BENCHMARKS.md. Both axes may
 * be logarithmic (ticks at 1, 2, 5 × 10^k), which suits latencies from a millisecond to seconds.
 */
import { writeFileSync } from 'node:fs';

export interface Point {
  x: number;
  y: number;
}

export interface Series {
  name: string;
  color: string;
  dashed?: boolean;
  points: Point[];
}

export interface ChartOptions {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logX?: boolean;
  logY?: boolean;
  width?: number;
  height?: number;
  /** a horizontal reference line, e.g. a latency target */
  target?: { y: number; label: string };
}

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const fmt = (v: number) =>
  v >= 1000 ? `${+(v / 1000).toFixed(1)}k` : v >= 10 ? String(Math.round(v)) : String(+v.toFixed(1));

/** Tick values covering [lo, hi]: 1-2-5 steps on a log axis, "nice" linear steps otherwise. */
export function ticks(lo: number, hi: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** e;
        if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
      }
    }
    return out;
  }
  const span = hi - lo || 1;
  const raw = span / 6;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function domain(values: number[], log: boolean): [number, number] {
  const finite = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
  if (!finite.length) return log ? [1, 10] : [0, 1];
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (log) {
    lo = 10 ** Math.floor(Math.log10(lo));
    hi = 10 ** Math.ceil(Math.log10(hi));
    if (lo === hi) hi = lo * 10;
  } else {
    lo = Math.min(0, lo);
    hi = hi === lo ? lo + 1 : hi * 1.05;
  }
  return [lo, hi];
}

export function lineChart(opts: ChartOptions): string {
  const W = opts.width ?? 760;
  const H = opts.height ?? 460;
  const m = { top: 56, right: 210, bottom: 56, left: 70 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const pts = opts.series.flatMap((s) => s.points);
  const ys = pts.map((p) => p.y).concat(opts.target ? [opts.target.y] : []);
  const [x0, x1] = domain(
    pts.map((p) => p.x),
    !!opts.logX,
  );
  const [y0, y1] = domain(ys, !!opts.logY);
  const sx = (x: number) =>
    m.left +
    (opts.logX
      ? (Math.log10(x) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0))
      : (x - x0) / (x1 - x0)) *
      pw;
  const sy = (y: number) =>
    m.top +
    ph -
    (opts.logY
      ? (Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0))
      : (y - y0) / (y1 - y0)) *
      ph;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
    `<title>${esc(opts.title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${m.left}" y="24" font-size="16" font-weight="600">${esc(opts.title)}</text>`,
  );
  if (opts.subtitle) out.push(`<text x="${m.left}" y="42" fill="#555">${esc(opts.subtitle)}</text>`);
  for (const t of ticks(x0, x1, !!opts.logX)) {
    const x = sx(t).toFixed(1);
    out.push(
      `<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + ph}" stroke="#eee"/>`,
      `<text x="${x}" y="${m.top + ph + 16}" text-anchor="middle" fill="#444">${fmt(t)}</text>`,
    );
  }
  for (const t of ticks(y0, y1, !!opts.logY)) {
    const y = sy(t).toFixed(1);
    out.push(
      `<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#eee"/>`,
      `<text x="${m.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#444">${fmt(t)}</text>`,
    );
  }
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
    `<text x="${m.left + pw / 2}" y="${H - 14}" text-anchor="middle">${esc(opts.xLabel)}</text>`,
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(opts.yLabel)}</text>`,
  );
  if (opts.target) {
    const y = sy(opts.target.y).toFixed(1);
    out.push(
      `<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#c00" stroke-dasharray="2 4"/>`,
      `<text x="${m.left + pw - 4}" y="${Number(y) - 5}" text-anchor="end" fill="#c00">${esc(opts.target.label)}</text>`,
    );
  }
  opts.series.forEach((s, i) => {
    const points = s.points
      .filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!opts.logY || p.y > 0))
      .sort((a, b) => a.x - b.x);
    if (points.length) {
      const d = points.map((p, j) => `${j ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
      out.push(
        `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      );
      for (const p of points) {
        out.push(
          `<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3" fill="${s.color}"><title>${esc(s.name)}: ${fmt(p.x)} → ${p.y.toFixed(1)}</title></circle>`,
        );
      }
    }
    const ly = m.top + 10 + i * 20;
    const lx = m.left + pw + 16;
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 24}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<text x="${lx + 30}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

export function writeChart(file: string | URL, opts: ChartOptions) {
  writeFileSync(file, lineChart(opts));
}
