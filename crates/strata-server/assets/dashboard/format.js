// Formatting of figures for people. One place, so every panel shows a number the same way
// (and the end-to-end test can check the page against the API).

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** Bytes in binary units with one decimal: "512 B", "1.5 KiB", "12.0 GiB". */
export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  if (n < 1024) return `${n} B`;
  let unit = 0;
  let value = n;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** A duration in milliseconds: "850 ms", "4.2 s", "3 min 05 s", "2 h 10 min". */
export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const total = Math.round(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h === 0) return `${m} min ${String(sec).padStart(2, "0")} s`;
  if (h < 48) return `${h} h ${String(m).padStart(2, "0")} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** How long ago `date` was, coarse: "just now", "5 min ago", "3 h 12 min ago", "4 d 2 h ago". */
export function age(date, now = new Date()) {
  const ms = now - date;
  if (ms < 0) return "in the future";
  if (ms < 60_000) return "just now";
  const min = Math.floor(ms / 60_000);
  if (min < 60) return `${min} min ago`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h} h ${min % 60} min ago`;
  return `${Math.floor(h / 24)} d ${h % 24} h ago`;
}

/** How far ahead `date` is: "in 4 min", "in 2 h 5 min", "in 3 d 1 h". */
export function until(date, now = new Date()) {
  const ms = date - now;
  if (ms <= 0) return "due";
  const min = Math.ceil(ms / 60_000);
  if (min < 60) return `in ${min} min`;
  const h = Math.floor(min / 60);
  if (h < 48) return `in ${h} h ${min % 60} min`;
  return `in ${Math.floor(h / 24)} d ${h % 24} h`;
}

const pad = (n) => String(n).padStart(2, "0");

/** A moment in the browser's time zone: "2026-11-23 14:05:09". */
export function dateTime(value) {
  if (!value) return "—";
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A short date for chart axes: "11-23 14:05". */
export function shortDate(value) {
  const d = value instanceof Date ? value : new Date(value);
  return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** An integer with thousands separators: "12,345". */
export function count(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en-US");
}

/** A count with its noun: "1 file", "12,345 files". */
export function plural(n, noun) {
  return `${count(n)} ${n === 1 ? noun : `${noun}s`}`;
}

/** A percentage of `part` in `whole`, 0–100, or null when the whole is unknown. */
export function percent(part, whole) {
  if (!whole) return null;
  return Math.max(0, Math.min(100, (100 * part) / whole));
}
