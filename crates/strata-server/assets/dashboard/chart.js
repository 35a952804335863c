// Bar charts drawn as inline SVG: no library, nothing fetched.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) {
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

/** A "nice" step (1, 2 or 5 times a power of ten) near `raw`. */
function niceStep(raw) {
  if (raw <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  const f = raw / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
}

/**
 * Axis ticks for values up to `max`, counted in `unit` (1024 for bytes, 1000 ms for
 * seconds...) so the labels come out round in the unit they are shown in.
 */
function ticks(max, unit) {
  const step = niceStep(max / unit / 4) * unit;
  const out = [];
  for (let v = 0; v <= max + step * 0.001; v += step) out.push(v);
  if (out[out.length - 1] < max) out.push(out[out.length - 1] + step);
  return out;
}

/**
 * A grouped bar chart over time.
 *
 * - `points`: `[{label, title, values: [number...], status}]`, oldest first;
 * - `series`: `[{name, className}]`, one per value;
 * - `format`: number -> axis label; `unit`: the unit of round ticks (see `ticks`).
 */
export function barChart({ points, series, format, unit, emptyText }) {
  const width = 640;
  const height = 230;
  const left = 64;
  const right = 12;
  const top = 14;
  const bottom = 40;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
  });
  if (points.length === 0) {
    root.append(svg("text", { x: width / 2, y: height / 2, class: "chart-empty", "text-anchor": "middle" },
      emptyText || "no data yet"));
    return root;
  }
  const max = Math.max(1, ...points.flatMap((p) => p.values));
  const axis = ticks(max, unit(max));
  const top_value = axis[axis.length - 1];
  const y = (v) => top + plotH - (v / top_value) * plotH;

  for (const t of axis) {
    root.append(svg("line", { x1: left, x2: width - right, y1: y(t), y2: y(t), class: "grid" }));
    root.append(svg("text", { x: left - 8, y: y(t) + 4, class: "tick", "text-anchor": "end" }, format(t)));
  }

  const slot = plotW / points.length;
  const groupW = Math.min(slot * 0.78, 46);
  const barW = groupW / series.length;
  points.forEach((point, i) => {
    const x0 = left + i * slot + (slot - groupW) / 2;
    const group = svg("g", { class: `bar-group status-${point.status || "none"}` });
    group.append(svg("title", {}, point.title));
    point.values.forEach((value, s) => {
      const h = Math.max(value > 0 ? 1.5 : 0, top + plotH - y(value));
      group.append(svg("rect", {
        x: x0 + s * barW,
        y: top + plotH - h,
        width: Math.max(barW - 1, 1),
        height: h,
        rx: Math.min(2, barW / 4),
        class: series[s].className,
      }));
    });
    // An invisible full-height target so the tooltip shows anywhere in the column.
    group.append(svg("rect", { x: left + i * slot, y: top, width: slot, height: plotH, class: "hit" }));
    root.append(group);
  });

  // Label the first and last point, and a few between when there is room.
  const every = Math.max(1, Math.ceil(points.length / 5));
  points.forEach((point, i) => {
    if (i % every !== 0 && i !== points.length - 1) return;
    if (i !== points.length - 1 && points.length - 1 - i < every / 2) return;
    root.append(svg("text", {
      x: left + i * slot + slot / 2,
      y: height - bottom + 18,
      class: "tick",
      "text-anchor": "middle",
    }, point.label));
  });
  root.append(svg("line", { x1: left, x2: width - right, y1: top + plotH, y2: top + plotH, class: "axis" }));
  return root;
}

/** The legend of a chart's series. */
export function legend(series) {
  const el = document.createElement("div");
  el.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.className = `swatch ${s.className}`;
    item.append(swatch, document.createTextNode(s.name));
    el.append(item);
  }
  return el;
}
