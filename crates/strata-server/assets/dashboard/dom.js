// DOM helpers the dashboard's modules share: elements are built with the DOM API (never
// innerHTML), so names and messages from the server are always text.

export const $ = (selector, root = document) => root.querySelector(selector);

/** Creates an element: `h("td", {class: "num", "data-field": "size"}, "1.0 MiB")`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function badge(text, kind, field) {
  return h("span", { class: `badge ${kind}`, "data-field": field }, text);
}

export const STATUS_KIND = {
  complete: "ok",
  succeeded: "ok",
  partial: "warn",
  // Table retention runs and their steps.
  done: "ok",
  busy: "warn",
  failed: "bad",
  running: "info",
  started: "info",
};

export function statusBadge(status, field = "status") {
  return badge(status, STATUS_KIND[status] || "neutral", field);
}

export function table(headers, rows, attrs = {}) {
  return h("div", { class: "table-wrap" },
    h("table", attrs,
      h("thead", {}, h("tr", {}, headers.map((c) => {
        const [text, cls] = Array.isArray(c) ? c : [c, ""];
        return h("th", { class: cls }, text);
      }))),
      h("tbody", {}, rows)));
}

export function empty(text) {
  return h("p", { class: "empty" }, text);
}
