// The strata dashboard: hand-written, no framework, nothing loaded from elsewhere.
//
// Every figure comes from the JSON API of the server that served this page, asked with the
// token the user signed in with (kept in sessionStorage: it ends with the tab). Elements
// are built with the DOM API (never innerHTML), so names and messages from the server are
// always text. Panels whose endpoint the server lacks say "not available".

import { Api, ApiError } from "./api.js";
import { $, h, append, badge, statusBadge, STATUS_KIND, table, empty } from "./dom.js";
import { loadTables } from "./tables.js";
import * as fmt from "./format.js";
import { barChart, legend } from "./chart.js";

const TOKEN_KEY = "strata.token";
const REFRESH_MS = 20_000;
const PAGE_SIZE = 20;
const CHART_POINTS = 40;
/** Backups the dashboard reads per request: the newest first, older pages on demand. */
const FETCH_PAGE = 100;

const state = {
  api: null,
  view: "overview",
  /** Backups newest first, as last listed. */
  backups: [],
  /** Operations seen live in this tab, by id: the newest status of each. */
  operations: new Map(),
  /** Streams being followed, by operation id. */
  following: new Map(),
  /** Operations shown in the "Running" panel of the backups view (dismissed ones leave). */
  shown: new Set(),
  /** The cluster status of the last refresh (nodes, for the config view and dialogs). */
  status: null,
  /** The features the server offers (`GET /api/v1/version`): a Set, or null while not
   * known (asked again with the backups). */
  features: null,
  page: 0,
  timer: null,
  loading: false,
  /** A refresh was asked for while one ran. */
  again: false,
};

// ---------------------------------------------------------------------------------------
// DOM helpers

/** Replaces the body of panel `id` with `children`. */
function fill(id, ...children) {
  const body = $(`#${id} .body`);
  body.replaceChildren();
  append(body, children);
}

/** What a panel shows when its request failed. */
function failure(error, endpoint) {
  if (error instanceof ApiError && error.unavailable) {
    return h("p", { class: "unavailable", "data-field": "unavailable" },
      "Not available: this server does not provide ", h("code", {}, endpoint), ".");
  }
  return h("p", { class: "error", "data-field": "error" }, error.message || String(error));
}

/**
 * The features the server offers (`GET /api/v1/version`), as a Set; an empty one from a
 * server without the endpoint (it predates every feature asked for), null when the
 * question failed (asked again later). Never rejects.
 */
async function fetchFeatures(api) {
  const version = await settle(api.get("/api/v1/version"));
  if (version.ok) return new Set(version.value.features || []);
  return version.error instanceof ApiError && version.error.unavailable ? new Set() : null;
}

/** Whether the server offers `feature` (an action it lacks is not shown). */
function offers(feature) {
  return !!state.features && state.features.has(feature);
}

/**
 * The newest backups, one API page (it costs the server a page of its backup listing,
 * whatever the number of backups), with what the page says of the rest.
 */
async function fetchBackups(api) {
  const { data, headers } = await api.page(`/api/v1/backups?limit=${FETCH_PAGE}`);
  return {
    list: data,
    next: headers.get("x-next-cursor"),
    total: Number(headers.get("x-total-count") || data.length),
    note: headers.get("x-listing-note"),
  };
}

/** Keeps a page of backups the server answered (see `fetchBackups`). */
function adoptBackups(page) {
  state.backups = sortBackups(page.list);
  state.backupsNext = page.next;
  state.backupsTotal = page.total;
  state.listingNote = page.note;
}

/** Appends the next older page of backups. */
async function loadOlderBackups() {
  if (!state.backupsNext) return;
  const cursor = encodeURIComponent(state.backupsNext);
  const { data, headers } = await state.api.page(`/api/v1/backups?limit=${FETCH_PAGE}&cursor=${cursor}`);
  state.backups = sortBackups(state.backups.concat(data));
  state.backupsNext = headers.get("x-next-cursor");
}

/** Resolves to `{ok: true, value}` or `{ok: false, error}`, never rejects. */
async function settle(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}

// ---------------------------------------------------------------------------------------
// Toasts and dialogs

function toast(message, kind = "info") {
  const close = h("button", { type: "button", class: "ghost small", "aria-label": "Dismiss" }, "×");
  const el = h("div", { class: `toast ${kind}`, role: kind === "bad" ? "alert" : "status" },
    h("span", {}, message), close);
  close.addEventListener("click", () => el.remove());
  const toasts = $("#toasts");
  toasts.append(el);
  // The newest few: older ones are in the activity page.
  while (toasts.children.length > 3) toasts.firstElementChild.remove();
  setTimeout(() => el.remove(), kind === "bad" ? 15_000 : 7_000);
}

/** Counts the dialogs opened: a request still running for a dialog that is gone (closed,
 * another one opened) reports its answer as a toast instead. */
let dialogs = 0;

/**
 * A modal confirmation. Resolves to the dialog's form values, or null when cancelled.
 * `typeToConfirm`: the confirm button stays disabled until this exact text is typed.
 * `validate(formData)`: a message keeps the dialog open and shows it; null lets it close.
 * `run(formData)`: the dialog stays open while this runs (its fields and button disabled,
 * `working` on the button and a busy line), then shows `{content}` under the fields;
 * `final` turns the button into "Close", otherwise the fields can be changed and sent
 * again. Closing the dialog meanwhile does not stop the request: its `notice` ([text,
 * kind]) comes as a toast when it ends. Resolves to the final answer once closed after it,
 * or null.
 */
function ask({ title, body, confirm = "Confirm", danger = false, typeToConfirm = null, infoOnly = false, validate = null, run = null, working = "Working…", busy = "Working…" }) {
  const dialog = $("#confirm");
  const form = $("#confirm-form");
  const ok = $("#confirm-ok");
  const cancel = $("#confirm-cancel");
  const generation = ++dialogs;
  dialog.classList.remove("working");
  $("#confirm-title").textContent = title;
  const bodyEl = $("#confirm-body");
  bodyEl.replaceChildren();
  append(bodyEl, [body]);
  ok.textContent = confirm;
  ok.className = danger ? "danger" : "primary";
  ok.disabled = false;
  cancel.hidden = infoOnly;
  cancel.textContent = "Cancel";
  if (typeToConfirm) {
    const input = h("input", {
      type: "text", name: "typed", autocomplete: "off", spellcheck: "false", "data-field": "type-to-confirm",
    });
    ok.disabled = true;
    input.addEventListener("input", () => {
      ok.disabled = input.value.trim() !== typeToConfirm;
    });
    bodyEl.append(h("label", { class: "type-confirm" },
      "Type ", h("code", {}, typeToConfirm), " to confirm", input));
  }
  const invalid = h("p", { class: "error", role: "alert", "data-field": "dialog-error", hidden: true });
  bodyEl.append(invalid);
  const output = h("div", { "data-field": "dialog-result" });
  if (run) bodyEl.append(output);
  return new Promise((resolve) => {
    let closed = false;
    let last = null;
    let ended = false;
    const done = (value) => {
      closed = true;
      form.onsubmit = null;
      cancel.onclick = null;
      dialog.oncancel = null;
      dialog.classList.remove("working");
      if (dialog.open) dialog.close();
      resolve(value);
    };
    form.onsubmit = async (event) => {
      event.preventDefault();
      if (ok.disabled) return;
      if (ended) return done(last);
      const values = new FormData(form);
      const why = validate ? validate(values) : null;
      if (why) {
        invalid.textContent = why;
        invalid.hidden = false;
        return;
      }
      invalid.hidden = true;
      if (!run) return done(values);
      // Read above, before the fields are disabled (FormData leaves disabled fields out).
      const fields = [...bodyEl.querySelectorAll("input, select, textarea, button")].filter((f) => !f.disabled);
      for (const f of fields) f.disabled = true;
      const label = ok.textContent;
      ok.disabled = true;
      ok.textContent = working;
      cancel.textContent = "Close";
      dialog.classList.add("working");
      output.replaceChildren(h("p", { class: "busy-note", role: "status", "data-field": "dialog-busy" },
        h("span", { class: "spinner", "aria-hidden": "true" }), h("span", {}, busy)));
      let answer;
      try {
        answer = await run(values);
      } catch (error) {
        answer = { content: h("p", { class: "error", role: "alert" }, error.message || String(error)) };
      }
      last = answer;
      if (closed || generation !== dialogs) {
        if (answer.notice) toast(...answer.notice);
        return;
      }
      dialog.classList.remove("working");
      output.replaceChildren(answer.content);
      ok.disabled = false;
      if (answer.final) {
        ended = true;
        ok.textContent = "Close";
        ok.className = "primary";
        cancel.hidden = true;
        ok.focus();
      } else {
        for (const f of fields) f.disabled = false;
        // An answer may rename the button for the next press (a preview, then "Save").
        ok.textContent = answer.confirm || label;
        cancel.textContent = "Cancel";
      }
    };
    cancel.onclick = () => done(null);
    dialog.oncancel = (event) => {
      event.preventDefault();
      done(null);
    };
    dialog.showModal();
    const first = $("input, select", bodyEl);
    (first || (infoOnly ? ok : cancel)).focus();
  });
}

// ---------------------------------------------------------------------------------------
// Session

function showLogin(message) {
  clearInterval(state.timer);
  for (const controller of state.following.values()) controller.abort();
  state.following.clear();
  state.api = null;
  $("#tabs").hidden = true;
  $("#session").hidden = true;
  $("#storage-name").textContent = "";
  for (const view of document.querySelectorAll(".view")) view.hidden = true;
  $("#banner").hidden = true;
  $("#login").hidden = false;
  const error = $("#login-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("#token").value = "";
  $("#token").focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(message);
}

/** Checks `token` against the server; on success the dashboard opens. */
async function signIn(token) {
  const probe = new Api(token);
  const [status, features, session] = await Promise.all([
    probe.get("/api/v1/status"), fetchFeatures(probe), settle(probe.get("/api/v1/session"))]);
  state.features = features;
  // A read token cannot change anything: its page offers no action the server would
  // refuse. A server without /api/v1/session predates roles: every token may act.
  const readOnly = session.ok && session.value.role === "read";
  document.body.classList.toggle("read-only", readOnly);
  $("#read-only").hidden = !readOnly;
  sessionStorage.setItem(TOKEN_KEY, token);
  state.api = new Api(token, () =>
    signOut("The server no longer accepts this token. Sign in again."));
  state.status = status;
  $("#login").hidden = true;
  $("#tabs").hidden = false;
  $("#session").hidden = false;
  route();
  clearInterval(state.timer);
  state.timer = setInterval(() => {
    if (document.visibilityState === "visible" && !$("#confirm").open) refresh();
  }, REFRESH_MS);
}

// ---------------------------------------------------------------------------------------
// Views

const VIEWS = ["overview", "backups", "components", "configuration", "tables", "activity"];

function route() {
  const wanted = location.hash.replace(/^#/, "") || "overview";
  state.view = VIEWS.includes(wanted) ? wanted : "overview";
  for (const view of document.querySelectorAll(".view")) {
    view.hidden = view.id !== `view-${state.view}`;
  }
  for (const link of document.querySelectorAll("#tabs a")) {
    link.classList.toggle("active", link.dataset.tab === state.view);
    if (link.dataset.tab === state.view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  refresh();
}

async function refresh() {
  if (!state.api) return;
  if (state.loading) {
    // Asked again while loading (another view, a finished operation): once more after.
    state.again = true;
    return;
  }
  state.loading = true;
  state.again = false;
  document.body.classList.add("loading");
  try {
    if (state.view === "overview") await loadOverview();
    else if (state.view === "backups") await loadBackups();
    else if (state.view === "components") await loadComponents();
    else if (state.view === "configuration") await loadConfiguration();
    else if (state.view === "tables") await loadTables(tablesUi());
    else await loadActivity();
    $("#refreshed").textContent = `Updated ${fmt.dateTime(new Date()).slice(11)}`;
  } catch (error) {
    toast(`Refresh failed: ${error.message}`, "bad");
  } finally {
    state.loading = false;
    document.body.classList.remove("loading");
  }
  if (state.again) refresh();
}

/** Shows `status`'s problem in the banner, or hides it. */
function banner(result) {
  const el = $("#banner");
  if (result.ok) {
    el.hidden = true;
    return;
  }
  el.hidden = false;
  el.textContent = `The server did not answer: ${result.error.message}`;
}

// --- Overview ----------------------------------------------------------------------------

async function loadOverview() {
  const api = state.api;
  const [status, backups, operations, schedules, check, archiver] = await Promise.all([
    settle(api.get("/api/v1/status")),
    settle(fetchBackups(api)),
    settle(api.get("/api/v1/operations")),
    settle(api.get("/api/v1/schedules")),
    settle(api.get("/api/v1/check")),
    settle(api.get("/api/v1/wal/archiver")),
  ]);
  if (!state.api) return;
  banner(status);
  if (status.ok) {
    state.status = status.value;
    $("#storage-name").textContent = `storage ${status.value.storage}`;
  }
  if (backups.ok) adoptBackups(backups.value);
  adoptOperations(operations, status);
  renderStats(status, backups, archiver);
  renderNodes(status);
  renderCheck(check);
  renderOperations(operations, status);
  renderSchedules(schedules);
}

function sortBackups(list) {
  return [...list].sort((a, b) => (b.started + b.name).localeCompare(a.started + a.name));
}

function stat(label, field, value, sub, kind = "") {
  return h("div", { class: `card stat ${kind}`, "data-stat": field },
    h("div", { class: "stat-label" }, label),
    h("div", { class: "stat-value", "data-field": field }, value),
    h("div", { class: "stat-sub" }, sub));
}

/** The WAL archiver's card: the archive lag, the last file archived, failures. */
function archiverStat(archiver) {
  if (!archiver.ok) return stat("WAL archiving", "wal-lag", "—", archiver.error.message, "bad");
  const a = archiver.value;
  // None listening is a state the server answers (200), not an error.
  if (a.listening === false) {
    return stat("WAL archiving", "wal-lag", "—",
      h("span", { "data-field": "wal-none", title: a.detail || "" }, "no archiver on this host"));
  }
  const behind = a.ready_segments > 8 || a.oldest_ready_secs > 300;
  const last = a.last_archived
    ? [h("code", { "data-field": "wal-last" }, a.last_archived), ` · ${fmt.age(new Date(a.last_archived_at))}`]
    : "nothing archived since it started";
  const failures = a.failures ? ` · ${a.failures} failed batches` : "";
  const dropped = a.dropped && a.dropped.count
    ? h("span", { "data-field": "wal-dropped" }, ` · ${a.dropped.count} segments DROPPED unarchived, the last ${a.dropped.last.name}`)
    : "";
  return stat("WAL archive lag", "wal-lag",
    `${a.ready_segments} segments · ${a.oldest_ready_secs} s`,
    h("span", {}, last, failures, dropped), behind || a.failures || dropped ? "bad" : "ok");
}

function renderStats(status, backups, archiver) {
  const cards = [];
  if (status.ok) {
    const nodes = status.value.nodes;
    const up = nodes.filter((n) => n.reachable).length;
    const down = nodes.filter((n) => !n.reachable).map((n) => n.name);
    cards.push(stat("Nodes reachable", "nodes-reachable", `${up} / ${nodes.length}`,
      down.length ? `down: ${down.join(", ")}` : "all nodes answer", down.length ? "bad" : "ok"));
  } else {
    cards.push(stat("Nodes reachable", "nodes-reachable", "—", status.error.message, "bad"));
  }
  if (backups.ok) {
    const list = state.backups;
    const by = { complete: 0, partial: 0, failed: 0 };
    for (const b of list) by[b.status] = (by[b.status] || 0) + 1;
    cards.push(h("div", { class: "card stat", "data-stat": "backups" },
      h("div", { class: "stat-label" }, "Backups by status"),
      h("div", { class: "stat-split" },
        ["complete", "partial", "failed"].map((s) =>
          h("div", { class: `split ${STATUS_KIND[s]}` },
            h("span", { class: "stat-value", "data-field": `count-${s}` }, String(by[s] || 0)),
            h("span", { class: "split-label" }, s)))),
      h("div", { class: "stat-sub", "data-field": "count-total" },
        state.backupsNext
          ? `${state.backupsTotal} in total (counts of the newest ${list.length})`
          : `${state.backupsTotal} in total`)));
    const good = list.find((b) => b.status === "complete");
    cards.push(stat("Last good backup", "last-good-age",
      good ? fmt.age(new Date(good.started)) : "none",
      good ? h("code", { "data-field": "last-good-name" }, good.name) : "no complete backup yet",
      good ? "" : "bad"));
    const newest = list[0];
    cards.push(h("div", { class: "card stat", "data-stat": "latest" },
      h("div", { class: "stat-label" }, "Latest backup"),
      h("div", { class: "stat-value" }, newest ? statusBadge(newest.status, "latest-status") : "none"),
      h("div", { class: "stat-sub" },
        newest
          ? [h("code", { "data-field": "latest-name" }, newest.name), " · ", fmt.age(new Date(newest.started))]
          : "no backup yet")));
  } else {
    cards.push(h("div", { class: "card stat bad" }, h("div", { class: "stat-label" }, "Backups"),
      failure(backups.error, "GET /api/v1/backups")));
  }
  if (archiver) cards.push(archiverStat(archiver));
  $("#stats").replaceChildren(...cards);
}

function renderNodes(status) {
  if (!status.ok) return fill("panel-nodes", failure(status.error, "GET /api/v1/status"));
  const s = status.value;
  const rows = s.nodes.map((n) => {
    const m = n.metadata || {};
    const lease = m.lease
      ? h("span", { title: `held by ${m.lease.holder}` },
        h("code", {}, m.lease.operation), ` · ${fmt.duration(m.lease.expires_in_ms)} left`)
      : h("span", { class: "muted" }, "free");
    return h("tr", { "data-node": n.name },
      h("td", {}, h("strong", {}, n.name), h("div", { class: "muted small" }, n.location)),
      h("td", {}, n.reachable ? badge("reachable", "ok", "reachable") : badge("unreachable", "bad", "reachable"),
        n.error ? h("div", { class: "error small" }, n.error) : null),
      h("td", { "data-field": "version" }, m.version || "—",
        m.api_version ? h("span", { class: "muted small" }, ` (API ${m.api_version})`) : null),
      h("td", {}, m.postgres || h("span", { class: "muted" }, "—")),
      h("td", {}, n.reachable ? lease : "—"));
  });
  const locks = (s.locks || []).map((l) =>
    h("li", {}, `Cluster lock: ${l.kind} `, h("code", {}, l.operation), ` by ${l.holder}, since `,
      fmt.dateTime(new Date(l.started_ms)), `, expires ${fmt.until(new Date(l.expires_ms))}`));
  // What hooks hold paused now: an operator must see it, a failed resume above all.
  const paused = (s.paused || []).map((p) => {
    const scope = p.node ? ` (node ${p.node})` : p.component ? ` (component ${p.component})` : "";
    return h("li", { class: p.resume_error ? "bad" : "warn", "data-paused": p.hook },
      `Paused: ${p.hook}${scope} since `, fmt.dateTime(new Date(p.since)), " by ", h("code", {}, p.operation),
      p.resume_error ? h("span", { class: "error" }, ` — its resume failed: ${p.resume_error}`) : null);
  });
  const problems = (s.pause_problems || []).map((p) => h("li", { class: "bad", "data-paused": "untrusted" }, p));
  fill("panel-nodes",
    s.nodes.length
      ? table(["Node", "State", "Version", "PostgreSQL", "Lease"], rows)
      : empty("No nodes are configured."),
    locks.length ? h("ul", { class: "locks" }, locks) : h("p", { class: "muted small" }, "The cluster lock is free."),
    paused.length || problems.length
      ? h("ul", { class: "paused", "data-field": "paused" }, [...paused, ...problems])
      : h("p", { class: "muted small", "data-field": "paused" }, "Nothing is paused."));
}

function renderCheck(check) {
  if (!check.ok) return fill("panel-check", failure(check.error, "GET /api/v1/check"));
  const checks = check.value.checks || [];
  const failed = checks.filter((c) => !c.ok).length;
  // Passed, with something down that backups work around (an optional component).
  const warned = checks.filter((c) => c.ok && c.warning).length;
  const summary = failed
    ? `${failed} of ${checks.length} checks failed`
    : warned
      ? `All ${checks.length} checks passed, ${warned} with a warning`
      : `All ${checks.length} checks passed`;
  fill("panel-check",
    h("p", { class: failed ? "error" : warned ? "warn-text" : "ok-text", "data-field": "check-summary" }, summary),
    h("ul", { class: "checks" }, checks.map((c) =>
      h("li", { class: !c.ok ? "bad" : c.warning ? "warn" : "ok", "data-check": c.name },
        h("span", { class: "check-mark", "aria-hidden": "true" }, !c.ok ? "✕" : c.warning ? "!" : "✓"),
        h("span", {}, h("strong", {}, c.name), c.detail ? h("span", { class: "muted" }, ` — ${c.detail}`) : null)))));
}

/** Starts following every running operation the server reported. */
function adoptOperations(operations, status) {
  const list = operations.ok ? operations.value : status.ok ? status.value.operations : [];
  for (const op of list || []) {
    if (!state.operations.has(op.id) || op.state !== "running") state.operations.set(op.id, op);
    if (op.state === "running") {
      state.shown.add(op.id);
      follow(op.id);
    }
  }
  renderLive();
}

function renderOperations(operations, status) {
  const live = [...state.operations.values()].filter((op) => op.state === "running");
  const parts = [];
  parts.push(h("div", { class: "live" },
    live.length ? live.map(operationCard) : h("p", { class: "muted", "data-field": "idle" }, "No operation is running.")));
  if (operations.ok) {
    const recent = operations.value.filter((op) => op.state !== "running").slice(0, 5);
    if (recent.length) parts.push(h("h3", {}, "Recent"), operationsTable(recent));
  } else if (!(operations.error instanceof ApiError && operations.error.unavailable)) {
    parts.push(failure(operations.error, "GET /api/v1/operations"));
  } else if (status.ok) {
    parts.push(h("p", { class: "muted small" }, "The history of operations is not available on this server."));
  }
  fill("panel-operation", parts);
}

/** A finished restore's external components, as its result has them (`[]` otherwise). */
function restoredComponents(op) {
  const r = op.result;
  return op.kind === "restore" && op.state !== "running" && r && Array.isArray(r.components) ? r.components : [];
}

/** The checklists a finished restore handed over (Camunda's: strata wrote nothing there). */
function checklistsOf(op) {
  return restoredComponents(op).filter((c) => !c.error && c.checklist_steps);
}

/**
 * A finished operation's state as a badge, saying what was done: a restore that handed
 * over a checklist did not restore that component, so it does not read "succeeded".
 */
function stateBadge(op) {
  const lists = checklistsOf(op);
  if (op.state !== "succeeded" || !lists.length) return statusBadge(op.state, "state");
  const wrote = (op.result.nodes || []).some((n) => n.report) ||
    restoredComponents(op).some((c) => !c.error && !c.checklist_steps);
  return badge(wrote ? "restored · checklist to run" : "checklist to run", "warn", "state");
}

/** What a finished restore did for its external components: a checklist drawn in full,
 * a system's own report, or why not. */
function componentOutcomes(op) {
  const list = restoredComponents(op);
  if (!list.length) return null;
  return h("div", { class: "component-outcomes", "data-field": "component-outcomes" }, list.map((c) =>
    h("div", { class: "component-outcome", "data-component": c.component },
      c.error
        ? h("p", { class: "error", "data-field": "component-error" }, h("strong", {}, c.component), ` not restored: ${c.error}`)
        : c.checklist_steps
        ? [h("p", { class: "checklist-summary", "data-field": "checklist-summary" }, h("strong", {}, c.component),
          `: restore checklist (${fmt.plural(c.checklist_steps, "step")}); strata wrote nothing here — run the steps against the engines, in order.`),
          h("pre", { class: "checklist", "data-field": "checklist" }, c.detail || "")]
        : h("p", { "data-field": "component-restored" }, h("strong", {}, c.component), ` restored${c.detail ? `: ${c.detail}` : ""}`))));
}

function operationResult(op) {
  const r = op.result;
  if (op.error) return h("span", { class: "error" }, op.error);
  if (!r) return h("span", { class: "muted" }, "—");
  if (r.name && r.status) {
    // A backup's name is its operation's id: name it only where it differs.
    return [statusBadge(r.status, "result-status"), r.name !== op.id ? [" ", h("code", {}, r.name)] : null];
  }
  if (r.backup) {
    const steps = checklistsOf(op).reduce((n, c) => n + c.checklist_steps, 0);
    return ["from ", h("code", {}, r.backup),
      steps ? h("span", { "data-field": "checklist-steps" }, ` · a checklist of ${fmt.plural(steps, "step")} to run`) : null];
  }
  return h("span", { class: "muted" }, "done");
}

function operationsTable(ops) {
  return table(["Operation", "State", "Started", "Result"], ops.map((op) =>
    h("tr", { "data-op": op.id },
      h("td", {}, h("strong", {}, op.kind), " ", h("code", { class: "muted" }, op.id)),
      h("td", {}, stateBadge(op)),
      h("td", { class: "nowrap" }, fmt.dateTime(op.started)),
      h("td", {}, operationResult(op)))));
}

/** An operation with a progress bar per node. */
function operationCard(op) {
  // A finished backup's figures are in its summary (the live counters restart with each
  // phase); while running, the node's counters.
  const finished = op.state !== "running" && op.result && Array.isArray(op.result.nodes);
  const summaries = finished && op.kind === "backup"
    ? new Map(op.result.nodes.map((n) => [n.name, n]))
    : new Map();
  const restored = finished && op.kind === "restore"
    ? new Map(op.result.nodes.filter((n) => n.report).map((n) => [n.node, n.report]))
    : new Map();
  const nodes = op.nodes.map((n) => {
    const p = n.progress || {};
    const summary = summaries.get(n.name);
    const report = restored.get(n.name);
    const pct = n.phase === "done" ? 100 : fmt.percent(p.bytes, p.total_bytes);
    const fillEl = h("div", { class: `bar-fill ${n.phase === "failed" ? "bad" : n.phase === "done" ? "ok" : ""}` });
    if (pct === null) fillEl.classList.add("indeterminate");
    else fillEl.style.width = `${pct.toFixed(1)}%`;
    const total = p.total_bytes ? ` of ${fmt.bytes(p.total_bytes)}` : "";
    return h("div", { class: "node-progress", "data-node": n.name },
      h("div", { class: "node-line" },
        h("strong", {}, n.name),
        h("span", { class: `phase phase-${n.phase}`, "data-field": "phase" }, n.phase),
        h("span", { class: "spacer" }),
        report && report.written
          ? h("span", { class: "muted small", "data-field": "written" }, report.written,
            report.errors && report.errors.length ? h("span", { class: "error" }, ` · ${fmt.plural(report.errors.length, "error")}`) : null)
          : report
          ? h("span", { class: "muted small", "data-field": "progress" },
            `${fmt.plural(report.files, "file")} · ${fmt.bytes(report.bytes)} · ${fmt.count(report.files_kept)} kept · ${fmt.count(report.removed)} removed`,
            report.recovery ? ` · ${report.recovery}` : null,
            report.errors && report.errors.length ? h("span", { class: "error" }, ` · ${fmt.plural(report.errors.length, "error")}`) : null)
          : summary
          ? h("span", { class: "muted small", "data-field": "progress" },
            `${fmt.plural(summary.files, "file")} · ${fmt.bytes(summary.bytes)} · ${fmt.bytes(summary.new_bytes)} new`,
            summary.warning_count ? h("span", { class: "error" }, ` · ${fmt.count(summary.warning_count)} warnings`) : null)
          : h("span", { class: "muted small", "data-field": "progress" },
            `${fmt.plural(p.files, "file")} · ${fmt.bytes(p.bytes)}${total}`,
            p.failed ? h("span", { class: "error" }, ` · ${fmt.count(p.failed)} failed`) : null)),
      h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct ?? undefined }, fillEl),
      n.error ? h("div", { class: "error small" }, n.error) : null);
  });
  const done = op.state !== "running";
  const dismiss = done
    ? h("button", { type: "button", class: "ghost small", onclick: () => { state.shown.delete(op.id); renderLive(); } }, "Dismiss")
    : null;
  return h("div", { class: `operation ${op.state}`, "data-op-id": op.id },
    h("div", { class: "operation-head" },
      h("strong", {}, op.kind === "backup" ? "Backup" : op.kind === "restore" ? "Restore" : op.kind),
      h("code", { class: "muted" }, op.id),
      stateBadge(op),
      h("span", { class: "muted small" }, `started ${fmt.dateTime(op.started)}`),
      h("span", { class: "spacer" }),
      done ? h("span", { "data-field": "result" }, operationResult(op)) : null,
      dismiss),
    op.error && !done ? h("p", { class: "error" }, op.error) : null,
    h("div", { class: "nodes" }, nodes),
    componentOutcomes(op));
}

/** Redraws the live operation panels of the overview and the backups view. */
function renderLive() {
  const overview = $("#panel-operation .live");
  if (overview) {
    const live = [...state.operations.values()].filter((op) => op.state === "running");
    overview.replaceChildren(...(live.length
      ? live.map(operationCard)
      : [h("p", { class: "muted", "data-field": "idle" }, "No operation is running.")]));
  }
  const shown = [...state.shown].map((id) => state.operations.get(id)).filter(Boolean);
  const panel = $("#panel-live");
  panel.hidden = shown.length === 0;
  const running = shown.some((op) => op.state === "running");
  $("#panel-live h2").textContent = running ? "Running" : "Finished";
  fill("panel-live", shown.map(operationCard));
  $("#backup-now").disabled = running;
}

/**
 * Follows operation `id` through its event stream until it ends; on a lost stream it
 * reconnects (the stream starts with the current status, so nothing is missed).
 */
async function follow(id) {
  if (state.following.has(id)) return;
  const controller = new AbortController();
  state.following.set(id, controller);
  let last = state.operations.get(id);
  try {
    for (let attempt = 0; attempt < 30 && !controller.signal.aborted; attempt++) {
      try {
        await state.api.stream(`/api/v1/operations/${encodeURIComponent(id)}/events`, (status) => {
          last = status;
          state.operations.set(id, status);
          renderLive();
        }, controller.signal);
        if (!last || last.state !== "running") break;
      } catch (error) {
        if (error.status === 404 || error.status === 401) break;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000 + attempt * 500));
    }
  } finally {
    state.following.delete(id);
  }
  if (!controller.signal.aborted && last && last.state !== "running") finished(last);
}

function finished(op) {
  const what = op.kind === "backup" ? "Backup" : op.kind === "restore" ? "Restore" : op.kind;
  const kind = STATUS_KIND[op.state] || "info";
  const r = op.result || {};
  const name = r.name ? ` ${r.name}` : r.backup ? ` of ${r.backup}` : "";
  const lists = op.state === "succeeded" ? checklistsOf(op) : [];
  if (lists.length) {
    // Not "succeeded": strata handed over steps for the operator to run.
    const which = lists.map((c) => c.component).join(", ");
    toast(`${what}${name}: ${which} is a checklist to run against the engines (nothing written by strata there); see the operation's card`, "warn");
  } else {
    toast(`${what}${name} ${op.state}${op.error ? `: ${op.error}` : ""}`, kind);
  }
  refresh();
}

function renderSchedules(schedules) {
  if (!schedules.ok) return fill("panel-schedules", failure(schedules.error, "GET /api/v1/schedules"));
  const jobs = [...schedules.value].sort((a, b) => (a.next || "~").localeCompare(b.next || "~"));
  if (!jobs.length) {
    return fill("panel-schedules", empty("No schedules: add [[schedules]] to the configuration to run backups, cleanups and verifications on a timetable."));
  }
  fill("panel-schedules", table(["Schedule", "Job", "When", "Next run", "Last run"], jobs.map((j) =>
    h("tr", { "data-schedule": j.name },
      h("td", {}, h("strong", {}, j.name)),
      h("td", {}, j.job),
      h("td", {}, h("code", {}, j.cron), h("span", { class: "muted small" }, ` ${j.timezone}`)),
      h("td", { "data-field": "next" }, j.next
        ? [fmt.dateTime(j.next), h("div", { class: "muted small" }, fmt.until(new Date(j.next)))]
        : h("span", { class: "muted" }, "never")),
      h("td", {}, j.last
        ? [statusBadge(j.last.outcome, "last-outcome"), " ", fmt.dateTime(j.last.started),
          j.last.detail ? h("div", { class: "muted small" }, j.last.detail) : null,
          j.skipped ? h("div", { class: "muted small" }, `${j.skipped} runs skipped (previous still running)`) : null]
        : h("span", { class: "muted" }, "not yet"))))));
}

// --- Backups -----------------------------------------------------------------------------

async function loadBackups() {
  const api = state.api;
  const [backups, status, operations, features] = await Promise.all([
    settle(fetchBackups(api)),
    settle(api.get("/api/v1/status")),
    settle(api.get("/api/v1/operations")),
    state.features ? state.features : fetchFeatures(api),
  ]);
  if (!state.api) return;
  state.features = features;
  banner(status.ok ? backups : status);
  if (status.ok) {
    state.status = status.value;
    $("#storage-name").textContent = `storage ${status.value.storage}`;
  }
  adoptOperations(operations, status);
  if (!backups.ok) {
    const error = failure(backups.error, "GET /api/v1/backups");
    fill("panel-backups", error);
    fill("chart-size", error.cloneNode(true));
    fill("chart-duration", error.cloneNode(true));
    return;
  }
  adoptBackups(backups.value);
  renderCharts();
  renderBackupTable();
}

const total = (b, figure) => b.nodes.reduce((sum, n) => sum + (n[figure] || 0), 0);

function byteUnit(max) {
  return 1024 ** Math.max(0, Math.floor(Math.log(Math.max(max, 1)) / Math.log(1024)));
}

function durationUnit(max) {
  return max < 1000 ? 1 : max < 60_000 ? 1000 : max < 3_600_000 ? 60_000 : 3_600_000;
}

function durationTick(ms) {
  if (ms === 0) return "0";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${+(ms / 60_000).toFixed(1)} min`;
  return `${+(ms / 3_600_000).toFixed(1)} h`;
}

/** Axis labels as precise as the span of the chart needs. */
function labeller(list) {
  if (list.length < 2) return (b) => fmt.shortDate(b.started);
  const span = new Date(list[list.length - 1].started) - new Date(list[0].started);
  if (span < 10 * 60_000) return (b) => fmt.dateTime(b.started).slice(11);
  if (span < 36 * 3600_000) return (b) => fmt.dateTime(b.started).slice(11, 16);
  return (b) => fmt.shortDate(b.started);
}

function renderCharts() {
  const recent = state.backups.slice(0, CHART_POINTS).reverse();
  const label = labeller(recent);
  const sizeSeries = [
    { name: "Size", className: "s-size" },
    { name: "Stored", className: "s-stored" },
  ];
  const points = recent.map((b) => ({
    label: label(b),
    status: b.status,
    title: `${b.name} (${b.status})\nsize ${fmt.bytes(total(b, "bytes"))}, stored ${fmt.bytes(total(b, "stored_bytes"))}, new ${fmt.bytes(total(b, "new_bytes"))}\nduration ${fmt.duration(b.duration_ms)}`,
    values: [total(b, "bytes"), total(b, "stored_bytes")],
  }));
  const note = state.backups.length > CHART_POINTS
    ? h("p", { class: "muted small" }, `The last ${CHART_POINTS} of ${state.backups.length} backups.`)
    : null;
  fill("chart-size",
    legend(sizeSeries),
    barChart({ points, series: sizeSeries, format: (v) => (v === 0 ? "0" : fmt.bytes(v).replace(".0 ", " ")), unit: byteUnit, emptyText: "No backups yet" }),
    note);
  const durationSeries = [{ name: "Duration", className: "s-duration" }];
  fill("chart-duration",
    h("div", { class: "legend" },
      ["complete", "partial", "failed"].map((s) => h("span", {}, h("i", { class: `swatch s-duration status-${s}` }), s))),
    barChart({
      points: recent.map((b) => ({ label: label(b), status: b.status, title: `${b.name} (${b.status}): ${fmt.duration(b.duration_ms)}`, values: [b.duration_ms] })),
      series: durationSeries,
      format: durationTick,
      unit: durationUnit,
      emptyText: "No backups yet",
    }),
    note ? note.cloneNode(true) : null);
}

function verifiedCell(b) {
  // A server that lists pins lists verifications too (absent: never verified).
  if (!("verification" in b) && !("pinned" in b)) {
    return h("td", { "data-field": "verified", title: "this server does not report verifications in the list" },
      h("span", { class: "muted" }, "—"));
  }
  const v = b.verification;
  if (!v) return h("td", { "data-field": "verified" }, h("span", { class: "muted" }, "never"));
  const when = new Date(v.when_ms);
  return h("td", { "data-field": "verified", title: `${fmt.dateTime(when)} (${v.mode})` },
    v.ok ? badge("ok", "ok", "verified-outcome") : badge("damaged", "bad", "verified-outcome"),
    h("div", { class: "muted small" }, `${v.mode} · ${fmt.age(when)}`));
}

/** A backup's components, each with its status (absent: an optional one not deployed). */
function componentChips(b) {
  if (!Array.isArray(b.components) || !b.components.length) return null;
  return h("div", { class: "chips components" }, b.components.map((c) => {
    const snapshot = c.external && c.external.snapshot_id ? ` · snapshot ${c.external.snapshot_id}` : "";
    return h("span", {
      class: `chip component ${STATUS_KIND[c.status] || "neutral"}`,
      "data-component": c.name,
      "data-status": c.status,
      title: `${c.name} (${c.plugin}${c.optional ? ", optional" : ""}): ${c.status}${c.error ? ` — ${c.error}` : ""}${snapshot}`,
    }, c.name);
  }));
}

function nodeChips(b) {
  return h("div", { class: "chips" }, b.nodes.map((n) =>
    h("span", {
      class: `chip ${STATUS_KIND[n.status] || "neutral"}`,
      "data-node": n.name,
      "data-status": n.status,
      title: `${n.name}: ${n.status}${n.error ? ` — ${n.error}` : ""}${n.warning_count ? ` (${n.warning_count} warnings)` : ""}`,
    }, n.name)));
}

function renderBackupTable() {
  const list = state.backups;
  const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const start = state.page * PAGE_SIZE;
  const slice = list.slice(start, start + PAGE_SIZE);
  if (!list.length) {
    return fill("panel-backups", empty(document.body.classList.contains("read-only")
      ? "No backups yet."
      : "No backups yet. “Back up now” takes the first one."));
  }
  const rows = slice.map((b) => {
    const pinned = b.pinned === true;
    return h("tr", { "data-backup": b.name, class: `row-${b.status}` },
      h("td", {},
        h("button", { type: "button", class: "link mono", "data-field": "name", onclick: () => showBackup(b) }, b.name),
        h("div", { class: "muted small" }, fmt.dateTime(b.started))),
      h("td", {}, statusBadge(b.status),
        stillPaused(b).length ? [" ", badge("still paused", "bad", "still-paused-badge")] : null,
        componentChips(b), nodeChips(b)),
      h("td", { class: "num", "data-field": "size" }, fmt.bytes(total(b, "bytes"))),
      h("td", { class: "num", "data-field": "stored" }, fmt.bytes(total(b, "stored_bytes"))),
      h("td", { class: "num", "data-field": "new" }, fmt.bytes(total(b, "new_bytes"))),
      h("td", { class: "num", "data-field": "files" }, fmt.count(total(b, "files"))),
      h("td", { class: "num", "data-field": "duration" }, fmt.duration(b.duration_ms)),
      verifiedCell(b),
      h("td", { "data-field": "pinned" },
        pinned ? badge("pinned", "info", "pin") : "pinned" in b ? h("span", { class: "muted" }, "no") : h("span", { class: "muted", title: "this server does not report pins in the list" }, "—")),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "small", "data-action": "verify", onclick: () => verifyBackup(b) }, "Verify"),
        h("button", { type: "button", class: "small", "data-action": pinned ? "unpin" : "pin", onclick: () => pinBackup(b, !pinned) }, pinned ? "Unpin" : "Pin"),
        h("button", { type: "button", class: "small", "data-action": "restore", onclick: () => restoreBackup(b) }, "Restore"),
        h("button", { type: "button", class: "small danger-text", "data-action": "delete", onclick: () => deleteBackup(b) }, "Delete")));
  });
  const older = async () => {
    // The last loaded page: ask the server for the next one first.
    if (state.page >= pages - 1 && state.backupsNext) await settle(loadOlderBackups());
    state.page += 1;
    renderBackupTable();
  };
  const pager = h("div", { class: "pager" },
    h("span", { class: "muted", "data-field": "range" },
      `${start + 1}–${start + slice.length} of ${Math.max(state.backupsTotal || 0, list.length)}`),
    state.listingNote ? h("span", { class: "muted small", "data-field": "listing-note", title: state.listingNote }, "some backups were read from their summaries") : null,
    h("span", { class: "spacer" }),
    h("button", { type: "button", class: "small", disabled: state.page === 0, onclick: () => { state.page -= 1; renderBackupTable(); } }, "Newer"),
    h("button", { type: "button", class: "small", disabled: state.page >= pages - 1 && !state.backupsNext, onclick: older }, "Older"));
  fill("panel-backups",
    table(["Backup", "Status per node", ["Size", "num"], ["Stored", "num"], ["New", "num"], ["Files", "num"], ["Duration", "num"], "Verified", "Pin", ""], rows, { id: "backups-table" }),
    pager);
}

/** What a backup left paused: pauses whose resume still failed when it ended. */
function stillPaused(b) {
  return Array.isArray(b.still_paused) ? b.still_paused : [];
}

/** What an external system recorded, `snapshot_id` and `state` after a preset's parts. */
const RECORD_KEYS = ["state", "snapshot_id", "backup_id"];

/** How a part's state reads: done, left out, failed, or other. */
function partKind(value) {
  if (/^(completed?|success|done)\b/i.test(value)) return "ok";
  if (/^absent\b/i.test(value)) return "warn";
  if (/^(failed|incomplete|incompatible)\b/i.test(value)) return "bad";
  return "";
}

/**
 * A component's `external` parts: each part with its state (Camunda's `operate`, `zeebe`,
 * ...), its snapshots under it (`operate_snapshots`, a list), then what every external
 * component records (`state`, `snapshot_id`, `backup_id`).
 */
function externalParts(c) {
  const ext = c.external || {};
  const keys = Object.keys(ext);
  if (!keys.length) return null;
  const list = (key) => h("div", { class: "part-snapshots", "data-snapshots": key },
    (Array.isArray(ext[key]) ? ext[key] : String(ext[key]).split(",")).filter(Boolean).map((name, i) => [i ? " " : "", h("code", {}, name)]));
  const parts = keys.filter((k) => !k.endsWith("_snapshots") && !RECORD_KEYS.includes(k));
  // Lists of snapshots of no part of their own are shown as parts.
  const lists = keys.filter((k) => k.endsWith("_snapshots") && !(k.slice(0, -"_snapshots".length) in ext));
  const row = (key, kind, ...content) => [h("dt", {}, key), h("dd", { "data-part": key, class: kind }, content)];
  const state = (key) => h(key === "state" || parts.includes(key) ? "span" : "code", { "data-field": "part-state" }, ext[key]);
  return h("dl", { class: "kv parts", "data-field": "parts" },
    parts.map((k) => row(k, partKind(ext[k]), state(k), `${k}_snapshots` in ext ? list(`${k}_snapshots`) : null)),
    lists.map((k) => row(k, "", list(k))),
    RECORD_KEYS.filter((k) => k in ext).map((k) => row(k, k === "state" ? partKind(ext[k]) : "", state(k))));
}

/** A backup's details: what it left paused, its components and parts, the per-node
 * figures, and what can be taken from it besides a restore (tables). */

// The host's clock beside the storage's (which names and orders backups), when they differ
// by a second or more.
function hostClock(b) {
  if (!b.host_started) return "";
  const off = Math.round((Date.parse(b.host_started) - Date.parse(b.started)) / 1000);
  if (!Number.isFinite(off) || Math.abs(off) < 1) return "";
  return ` by the storage's clock (the host's said ${fmt.dateTime(b.host_started)}, ${fmt.duration(Math.abs(off) * 1000)} ${off < 0 ? "behind" : "ahead"})`;
}

async function showBackup(b) {
  const rows = b.nodes.map((n) => h("tr", {},
    h("td", {}, h("strong", {}, n.name), n.zone ? h("div", { class: "muted small" }, `zone ${n.zone}`) : null),
    h("td", {}, statusBadge(n.status), n.error ? h("div", { class: "error small" }, n.error) : null),
    h("td", { class: "num" }, fmt.count(n.files)),
    h("td", { class: "num" }, fmt.count(n.files_read)),
    h("td", { class: "num" }, fmt.bytes(n.bytes)),
    h("td", { class: "num" }, fmt.bytes(n.stored_bytes)),
    h("td", { class: "num" }, fmt.bytes(n.new_bytes)),
    h("td", { class: "num" }, fmt.count(n.warning_count))));
  const warnings = b.nodes.flatMap((n) => (n.warnings || []).map((w) => `${n.name}: ${w}`));
  const components = (b.components || []).map((c) => h("tr", { "data-component": c.name },
    h("td", {}, h("strong", {}, c.name), h("div", { class: "muted small" }, `${c.plugin}${c.optional ? " · optional" : ""} · order ${c.order}`)),
    h("td", {}, statusBadge(c.status, "component-status"), c.error ? h("div", { class: "error small" }, c.error) : null),
    h("td", {}, c.nodes && c.nodes.length ? c.nodes.join(", ") : externalParts(c) || "—")));
  const paused = stillPaused(b);
  // An action of the details closes them first, then opens its own dialog.
  let then = null;
  const action = (name) => () => {
    then = name;
    $("#confirm-form").requestSubmit();
  };
  const answer = await ask({
    title: `Backup ${b.name}`,
    confirm: "Close",
    infoOnly: true,
    body: [
      h("p", { class: "muted" }, `Started ${fmt.dateTime(b.started)}${hostClock(b)}, took ${fmt.duration(b.duration_ms)}, written by strata ${b.strata_version}.`),
      paused.length
        ? h("div", { class: "still-paused", role: "alert", "data-field": "still-paused" },
          h("strong", {}, "STILL PAUSED when the backup ended"),
          h("span", {}, " (its resume failed; the components view shows what is paused now):"),
          h("ul", {}, paused.map((line) => h("li", { "data-field": "still-paused-line" }, line))))
        : null,
      components.length ? table(["Component", "Status", "Nodes or parts"], components) : null,
      table(["Node", "Status", ["Files", "num"], ["Read", "num"], ["Size", "num"], ["Stored", "num"], ["New", "num"], ["Warnings", "num"]], rows),
      warnings.length ? [h("h3", {}, "Warnings"), h("ul", { class: "warnings" }, warnings.map((w) => h("li", {}, w)))] : null,
      // Offered for a backup with a PostgreSQL node, when the server can do it.
      offers("tables") && isPostgres(b)
        ? h("div", { class: "details-actions" },
          h("button", { type: "button", class: "small", "data-action": "tables", onclick: action("tables") }, "Bring tables back (PostgreSQL)…"),
          h("span", { class: "muted small", "data-field": "tables-hint" },
            "tables or a whole database of this backup into the live database, under new names"))
        : null,
    ],
  });
  if (answer && then === "tables") await tablesBack(b);
}

/** Runs `action` with the buttons of the page disabled, reporting errors as toasts. */
async function act(label, action) {
  document.body.classList.add("busy");
  try {
    return await action();
  } catch (error) {
    if (error instanceof ApiError && error.unavailable) {
      toast(`${label}: not available on this server.`, "bad");
    } else {
      toast(`${label} failed: ${error.message}`, "bad");
    }
    return null;
  } finally {
    document.body.classList.remove("busy");
  }
}

function watchStarted(reply) {
  const op = reply.operation;
  state.operations.set(op.id, op);
  state.shown.add(op.id);
  renderLive();
  follow(op.id);
  return op;
}

async function backupNow() {
  const nodes = state.status ? state.status.nodes.map((n) => n.name) : [];
  const answer = await ask({
    title: "Back up now",
    confirm: "Start backup",
    body: h("p", {}, nodes.length
      ? [`Start a backup of all ${nodes.length} nodes (`, nodes.join(", "), ") now?"]
      : "Start a backup of every node now?"),
  });
  if (!answer) return;
  const reply = await act("Backup", () => state.api.post("/api/v1/backups"));
  if (reply) {
    const op = watchStarted(reply);
    toast(`Backup ${op.id} started`, "info");
  }
}

function verifyBody(what) {
  return [
    h("p", {}, what),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "read_data", value: "1" }),
      " Also read every pack and check every blob (reads all stored data; slower)"),
  ];
}

async function verifyBackup(b) {
  const answer = await ask({
    title: b ? `Verify ${b.name}` : "Verify all backups",
    confirm: "Verify",
    body: verifyBody(b ? "Check that this backup's manifests and every blob they use are in the repository." : "Check every backup's manifests and that every blob they use is in the repository."),
  });
  if (!answer) return;
  const body = { backup: b ? b.name : null, read_data: answer.get("read_data") === "1" };
  toast(`Verifying ${b ? b.name : "all backups"}…`, "info");
  const report = await act("Verify", () => state.api.post("/api/v1/verify", body));
  if (report) {
    const problems = report.problems || [];
    const what = b ? b.name : "all backups";
    if (problems.length === 0) {
      toast(`Verification of ${what} passed: ${fmt.plural(report.backups, "backup")}, ${fmt.plural(report.files, "file")} checked`, "ok");
    } else {
      const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : "";
      toast(`Verification of ${what} found ${fmt.plural(problems.length, "problem")}: ${problems[0]}${more}`, "bad");
    }
    refresh();
  }
}

async function pinBackup(b, pin) {
  const answer = await ask({
    title: pin ? `Pin ${b.name}` : `Unpin ${b.name}`,
    confirm: pin ? "Pin" : "Unpin",
    body: h("p", {}, pin
      ? "A pinned backup is kept by every retention policy and cannot be deleted until it is unpinned."
      : "Retention may remove this backup once it is unpinned."),
  });
  if (!answer) return;
  const path = `/api/v1/backups/${encodeURIComponent(b.name)}/pin`;
  const reply = await act(pin ? "Pin" : "Unpin", () => (pin ? state.api.post(path) : state.api.delete(path)));
  if (reply) {
    toast(`${pin ? "Pinned" : "Unpinned"} ${b.name}`, "ok");
    refresh();
  }
}

/** Whether a backup is a PostgreSQL base backup (it can be recovered to a point in time). */
function isPostgres(b) {
  return b.nodes.some((n) => n.plugin && n.plugin["postgres.start_lsn"]);
}

/**
 * `OLD=NEW` rules, one per line (blank lines ignored): `{rules}` or `{error}` naming the
 * first line that is not a rule.
 */
function renameRules(text) {
  const rules = [];
  for (const line of String(text || "").split("\n")) {
    const rule = line.trim();
    if (!rule) continue;
    const at = rule.indexOf("=");
    if (at <= 0) return { error: `Rename rule “${rule}” is not OLD=NEW (one rule per line).` };
    rules.push(rule);
  }
  return { rules };
}

/** The restore dialog's choice of components: a box per component the backup holds. */
function componentPicker(b) {
  // A component absent from the backup (an optional one that was down) has nothing to
  // restore: not offered.
  const components = (Array.isArray(b.components) ? b.components : []).filter((c) => c.status !== "absent");
  if (!components.length) return null;
  return h("fieldset", { class: "pick", "data-field": "restore-components" },
    h("legend", {}, "Components ", h("span", { class: "muted small" }, "(none ticked: every component)")),
    components.map((c) => h("label", { class: "check", "data-component": c.name },
      h("input", { type: "checkbox", name: "components", value: c.name }),
      h("span", {}, h("strong", {}, c.name), " ",
        h("span", { class: "muted small" }, c.plugin, c.status !== "complete" ? `, ${c.status} in this backup` : "")))));
}

async function restoreBackup(b) {
  const select = h("select", { name: "node" },
    h("option", { value: "" }, `every node (${b.nodes.length})`),
    b.nodes.map((n) => h("option", { value: n.name }, n.name)));
  const answer = await ask({
    title: `Restore ${b.name}`,
    confirm: "Restore in place",
    danger: true,
    typeToConfirm: b.name,
    body: [
      h("p", { class: "warning" }, "A restore in place overwrites the data directories of the nodes with the content of this backup: files that are not in the backup are removed (paths the node excludes are left alone)."),
      b.status !== "complete" ? h("p", { class: "error" }, `This backup is ${b.status}: some data may be missing.`) : null,
      h("label", { class: "field" }, "Restore", select),
      h("label", { class: "field" }, "Only this path",
        h("input", { type: "text", name: "include", placeholder: "everything (or a path such as base/16384)" })),
      isPostgres(b)
        ? h("label", { class: "field" }, "Recover to",
          h("input", { type: "text", name: "target_time", placeholder: "the latest state (or a time: 2026-11-23 05:00:00+00)" }))
        : null,
      componentPicker(b),
      h("label", { class: "field" }, "Rename rules ",
        h("span", { class: "muted small" }, "(OLD=NEW, one per line: names and endpoints rewritten in stores that hold them, such as etcd; after the configuration's own rules)"),
        h("textarea", { name: "rename", rows: 3, spellcheck: "false", autocomplete: "off", placeholder: "db1=db9\n10.0.0.1:5432=10.1.0.1:5432" })),
    ],
    validate: (values) => renameRules(values.get("rename")).error || null,
  });
  if (!answer) return;
  const body = { backup: b.name };
  if (answer.get("node")) body.node = answer.get("node");
  const components = answer.getAll("components").filter(Boolean);
  if (components.length) body.components = components;
  const { rules } = renameRules(answer.get("rename"));
  if (rules.length) body.rename = rules;
  const include = (answer.get("include") || "").trim();
  if (include) body.include = include;
  const time = (answer.get("target_time") || "").trim();
  if (time) body.recovery = { target: { time }, action: "promote", start: true };
  const reply = await act("Restore", () => state.api.post("/api/v1/restores", body));
  if (reply) {
    const op = watchStarted(reply);
    toast(`Restore ${op.id} started`, "info");
  }
}

/** A plain PostgreSQL name as the server parses table names (`TableName::parse`). */
const PLAIN_NAME = /^[A-Za-z_$][A-Za-z0-9_$]{0,62}$/;
/** A database name the server creates (`as` of a whole database). */
const DATABASE_NAME = /^[A-Za-z0-9_]{1,63}$/;

/**
 * `SCHEMA.TABLE` or `TABLE` lines (blank lines ignored): `{tables}` as typed, or `{error}`
 * naming the first line the server would refuse.
 */
function tableLines(text) {
  const tables = [];
  for (const line of String(text || "").split("\n")) {
    const table = line.trim();
    if (!table) continue;
    const dot = table.indexOf(".");
    const parts = dot < 0 ? [table] : [table.slice(0, dot), table.slice(dot + 1)];
    if (!parts.every((part) => PLAIN_NAME.test(part))) {
      return { error: `Table “${table}” is not SCHEMA.TABLE or TABLE with plain names (letters, digits, _ and $, not starting with a digit), one per line.` };
    }
    tables.push(table);
  }
  return { tables };
}

const formValue = (values, name) => String(values.get(name) || "").trim();

/** Why the table dialog's values cannot be sent, or null. */
function tablesProblem(values) {
  if (!formValue(values, "database")) return "Give the database the tables are in.";
  const { tables, error } = tableLines(values.get("tables"));
  if (error) return error;
  const as = formValue(values, "as");
  if (!as) return null;
  if (tables.length > 1) {
    return `“As” names one table: give it with one table, or with none (the whole database); these ${tables.length} tables each come back as TABLE_restored.`;
  }
  if (tables.length === 1 && !PLAIN_NAME.test(as)) {
    return `“${as}” is not a table name (letters, digits, _ and $, not starting with a digit, at most 63).`;
  }
  if (!tables.length && !DATABASE_NAME.test(as)) {
    return `“${as}” is not a database name (letters, digits and _, at most 63).`;
  }
  return null;
}

/** The body of `POST /api/v1/backups/{name}/tables` from the dialog's values. */
function tablesBody(values) {
  const body = { database: formValue(values, "database"), tables: tableLines(values.get("tables")).tables };
  const as = formValue(values, "as");
  if (as) body.as = as;
  const time = formValue(values, "target_time");
  if (time) body.target_time = time;
  return body;
}

/**
 * Tables (or a whole database) of a PostgreSQL backup back into the live database under
 * new names (`POST /api/v1/backups/{name}/tables`): the server answers when it is done,
 * which can take minutes; the dialog waits, then shows the report's lines or the error.
 */
async function tablesBack(b) {
  const path = `/api/v1/backups/${encodeURIComponent(b.name)}/tables`;
  await ask({
    title: `Bring tables back from ${b.name}`,
    confirm: "Bring back",
    working: "Bringing back…",
    busy: "The server is restoring a copy of the backup in scratch space, recovering it and loading the tables: this can take minutes. Closing this dialog does not stop it; its outcome then comes as a notice.",
    body: [
      h("p", {}, "Brings tables of this backup (or a whole database) back into the live PostgreSQL database, under new names, without touching the running cluster: a copy of the backup's PostgreSQL node is recovered in scratch space on the server's host to the target, and the tables are loaded from it in one transaction."),
      h("label", { class: "field" }, "Database ", h("span", { class: "muted small" }, "(required)"),
        h("input", { type: "text", name: "database", autocomplete: "off", spellcheck: "false", placeholder: "shop" })),
      h("label", { class: "field" }, "Tables ",
        h("span", { class: "muted small" }, "(SCHEMA.TABLE or TABLE, one per line; none: the whole database)"),
        h("textarea", { name: "tables", rows: 4, spellcheck: "false", autocomplete: "off", placeholder: "public.orders\npublic.order_lines" })),
      h("label", { class: "field" }, "As ",
        h("span", { class: "muted small" }, "(optional, with one table or the whole database only: the new name; by default TABLE_restored or DATABASE_restored)"),
        h("input", { type: "text", name: "as", autocomplete: "off", spellcheck: "false", placeholder: "orders_back" })),
      h("label", { class: "field" }, "Recover to ",
        h("span", { class: "muted small" }, "(optional)"),
        h("input", { type: "text", name: "target_time", autocomplete: "off", spellcheck: "false", placeholder: "the end of the archive (or a time: 2026-11-26 09:14:00+00)" })),
    ],
    validate: tablesProblem,
    run: async (values) => {
      try {
        const report = await state.api.post(path, tablesBody(values));
        const lines = report.lines || [];
        return {
          final: true,
          content: h("div", { class: "tables-report", "data-field": "tables-report" },
            h("p", { class: "ok-text" }, "Brought back from ", h("code", {}, report.backup), ", node ", h("code", {}, report.node), ":"),
            h("ul", {}, lines.map((line) => h("li", { "data-field": "tables-line" }, line)))),
          notice: [`Tables back from ${b.name}${lines.length ? `: ${lines[lines.length - 1]}` : ""}`, "ok"],
        };
      } catch (error) {
        const message = error instanceof ApiError && error.unavailable
          ? "This server does not offer it (POST /api/v1/backups/{name}/tables)."
          : error.message;
        return {
          content: h("p", { class: "error", role: "alert", "data-field": "tables-error" },
            h("strong", {}, "Not brought back: "), h("span", { "data-field": "tables-error-message" }, message)),
          notice: [`Bringing tables back from ${b.name} failed: ${message}`, "bad"],
        };
      }
    },
  });
}

async function deleteBackup(b) {
  const complete = state.backups.filter((x) => x.status === "complete");
  const last = b.status === "complete" && complete.length === 1;
  const answer = await ask({
    title: `Delete ${b.name}`,
    confirm: "Delete backup",
    danger: true,
    typeToConfirm: b.name,
    body: [
      h("p", {}, "The backup's summary and manifests are removed, then the data no other backup uses is freed. This cannot be undone."),
      last ? h("p", { class: "error" }, "This is the only complete backup.") : null,
    ],
  });
  if (!answer) return;
  const reply = await act("Delete", () => state.api.delete(`/api/v1/backups/${encodeURIComponent(b.name)}`));
  if (reply) {
    toast(`Deleted ${b.name}`, "ok");
    refresh();
  }
}

/**
 * Retention: asks the server what its `[retention]` policy would remove (a dry run), shows
 * every backup with its decision, and applies the policy only when confirmed.
 */
async function cleanup() {
  const preview = await act("Clean-up preview", () => state.api.post("/api/v1/cleanup", { dry_run: true }));
  if (!preview) return;
  const rows = [...preview.backups].reverse();
  const removed = rows.filter((r) => !r.keep);
  const body = [
    h("p", { "data-field": "cleanup-summary" }, removed.length
      ? `The retention policy keeps ${rows.length - removed.length} and removes ${fmt.plural(removed.length, "backup")}; then the data no remaining backup uses is freed.`
      : `The retention policy keeps all ${fmt.plural(rows.length, "backup")}: nothing to remove.`),
    h("div", { class: "scroll" }, table(["Backup", "Status", "Decision", "Why"], rows.map((r) =>
      h("tr", { "data-cleanup": r.name, class: r.keep ? "" : "row-removed" },
        h("td", { class: "nowrap" }, h("code", {}, r.name)),
        h("td", {}, statusBadge(r.status)),
        h("td", { "data-field": "decision" }, r.keep ? badge("keep", "ok") : badge("remove", "bad")),
        h("td", { class: "muted small" }, (r.reasons || []).join(", ") || (r.keep ? "" : "no rule keeps it")))))),
  ];
  const answer = await ask({
    title: "Clean up by the retention policy",
    confirm: removed.length ? `Remove ${fmt.plural(removed.length, "backup")}` : "Close",
    danger: removed.length > 0,
    infoOnly: removed.length === 0,
    body,
  });
  if (!answer || !removed.length) return;
  const report = await act("Clean-up", () => state.api.post("/api/v1/cleanup", { dry_run: false }));
  if (report) {
    const gone = report.backups.filter((r) => !r.keep).length;
    const freed = report.gc ? `, ${fmt.bytes(report.gc.bytes_freed)} freed` : "";
    toast(`Clean-up removed ${fmt.plural(gone, "backup")}${freed}`, "ok");
    refresh();
  }
}

// --- Components --------------------------------------------------------------------------

/**
 * The components a backup is made of, read from the configuration as the server reads it:
 * the `[[components]]`, or, without any, one component named after the top-level `plugin`
 * over every node. Nodes no component names go to the `files` component (a new one if
 * there is none), as the coordinator puts them.
 */
function componentsOf(config) {
  const nodes = (config.nodes || []).map((n) => n.name);
  const plugin = config.plugin || "files";
  if (!Array.isArray(config.components) || !config.components.length) {
    return [{
      name: plugin, plugin, nodes, optional: false, implicit: true,
      note: `Named after the top-level plugin = "${plugin}": no [[components]] configured.`,
    }];
  }
  const list = config.components.map((c) => ({ ...c, nodes: [...(c.nodes || [])] }));
  const loose = nodes.filter((n) => !list.some((c) => c.nodes.includes(n)));
  if (loose.length) {
    const files = list.find((c) => c.plugin === "files");
    if (files) files.nodes.push(...loose);
    else {
      list.push({
        name: "files", plugin: "files", nodes: loose, optional: false, implicit: true,
        note: "The nodes no [[components]] entry names, backed up as plain files.",
      });
    }
  }
  return list;
}

/** A URL as far as its host, as the server masks it (`strata_util::mask_url`). */
function maskUrl(url) {
  const at = url.indexOf("://");
  if (at < 0) return "***";
  const scheme = url.slice(0, at);
  const rest = url.slice(at + 3);
  const found = rest.search(/[/?#]/);
  const end = found < 0 ? rest.length : found;
  const authority = rest.slice(0, end);
  const host = authority.includes("@") ? authority.slice(authority.lastIndexOf("@") + 1) : authority;
  return end < rest.length && rest.length > end + 1 ? `${scheme}://${host}/***` : `${scheme}://${host}`;
}

/** A hook's name as pause records carry it: `name`, else its action (a program, or the
 * method and URL), any URL cut to its host. */
function hookLabel(hook) {
  let label = hook.name;
  if (!label) {
    const action = hook.run ?? hook.pause;
    if (Array.isArray(action)) label = action[0] || "";
    else {
      const line = String(action || "").trim();
      const space = line.indexOf(" ");
      label = space < 0 ? maskUrl(line) : `${line.slice(0, space)} ${maskUrl(line.slice(space + 1).trim())}`;
    }
  }
  return label.split(" ").map((w) => (w.includes("://") ? maskUrl(w) : w)).join(" ");
}

/** An action as the configuration view has it (URLs already cut to their hosts). */
function actionText(action) {
  if (action === undefined || action === null) return null;
  return h("code", {}, Array.isArray(action) ? action.join(" ") : String(action));
}

/** Whether a pause record lies in `component`'s scope (the component, or one of its nodes). */
function inScope(record, component) {
  return record.component === component.name || (!!record.node && component.nodes.includes(record.node));
}

/** The hooks of `component`: those naming it, and those on its nodes (a hook on a node
 * and another component never runs). `index` is the hook's place in `[[hooks]]`. */
function hooksOf(component, hooks) {
  return hooks.filter((h) => (h.node
    ? component.nodes.includes(h.node) && (!h.component || h.component === component.name)
    : h.component === component.name));
}

/** Whether `record` is a pause of `hook`: its name, or (a coordinator's record) its
 * index among the coordinator's hooks (a pair a plugin issues itself has none). */
function pauseOf(record, hook) {
  return record.hook === hook.label ||
    (hook.index !== undefined && hook.index !== null && record.id === `${record.operation}-${hook.index}`);
}

/** "paused since X by operation Y", and a failed resume, loudly. */
function pauseLine(p) {
  const where = p.node ? ` on node ${p.node}` : "";
  return h("div", { class: p.resume_error ? "pause bad" : "pause warn", "data-pause": p.id },
    h("span", { "data-field": "paused-since" },
      `paused${where} since ${fmt.dateTime(new Date(p.since))} by operation `, h("code", {}, p.operation)),
    p.resume_error
      ? h("div", { class: "resume-failed", "data-field": "resume-error" },
        "RESUME FAILED — still paused: ", p.resume_error)
      : null);
}

function pauseState(records) {
  if (!records.length) return h("span", { class: "muted", "data-field": "pause-state" }, "not paused");
  return h("div", { "data-field": "pause-state" }, records.map(pauseLine));
}

function hookWhen(hook) {
  const operation = hook.operation || "backup";
  if (hook.pause) return `${operation} · pause before the snapshots, resume after`;
  return `${operation} · at ${hook.at || "—"}`;
}

function hookRows(hooks, paused, scope) {
  return hooks.map((hook) => {
    const records = paused.filter((p) => (!scope || inScope(p, scope)) && pauseOf(p, hook));
    return h("tr", { "data-hook": hook.label, class: records.some((p) => p.resume_error) ? "row-bad" : "" },
      h("td", {}, h("strong", {}, hook.label),
        hook.node ? h("div", { class: "muted small", "data-field": "hook-scope" }, `node ${hook.node}`)
          : hook.component ? h("div", { class: "muted small", "data-field": "hook-scope" }, `component ${hook.component}`)
          : null,
        hook.source
          ? h("div", { class: "muted small", "data-field": "hook-source" },
            hook.source === "implied" ? "issued by the plugin itself" : "added by the plugin")
          : null),
      h("td", {}, hookWhen(hook), h("div", { class: "muted small" }, `timeout ${hook.timeout || "60s"}`)),
      h("td", {}, hook.pause
        ? [h("div", {}, "pause ", actionText(hook.pause)), h("div", {}, "resume ", actionText(hook.resume))]
        : actionText(hook.run)),
      h("td", {}, hook.pause ? pauseState(records) : h("span", { class: "muted" }, "—")));
  });
}

function hooksTable(hooks, paused, scope) {
  return table(["Hook", "When", "Action", "Pause state"], hookRows(hooks, paused, scope), { "data-field": "hooks" });
}

/** A value of the configuration view as text: lists joined, objects as JSON. */
function settingValue(value) {
  if (Array.isArray(value)) {
    return value.length ? value.map((v, i) => [i ? ", " : "", h("code", {}, typeof v === "object" ? JSON.stringify(v) : String(v))]) : h("span", { class: "muted" }, "none");
  }
  if (value && typeof value === "object") return h("code", {}, JSON.stringify(value));
  return h("code", {}, String(value));
}

/** A component's own settings, `section.key` flat, from the configuration view (secrets
 * masked by the server). */
function componentSettings(component) {
  const skip = new Set(["name", "plugin", "nodes", "optional", "order", "implicit", "note"]);
  const pairs = [];
  const walk = (key, value) => {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(`${key}.${k}`, v);
    } else if (value !== undefined && value !== null) {
      pairs.push([key, value]);
    }
  };
  for (const [key, value] of Object.entries(component)) if (!skip.has(key)) walk(key, value);
  if (!pairs.length) {
    return h("p", { class: "muted small", "data-field": "settings" }, component.implicit
      ? "None of its own: its nodes' settings are on the configuration page."
      : "No settings of its own.");
  }
  return h("dl", { class: "kv", "data-field": "settings" },
    pairs.map(([k, v]) => [h("dt", {}, k), h("dd", { "data-setting": k }, settingValue(v))]));
}

/**
 * The `component NAME` line of `GET /api/v1/check`: whether the component's systems
 * answer (external components only: the nodes of the others are checked as nodes). An
 * optional component that is down passes the check (its backups record it absent): its
 * detail is shown as the server gives it, in amber.
 */
function componentCheckLine(component, check) {
  const detail = h("span", { "data-field": "check-detail" }, check.detail || "");
  const down = check.ok && String(check.detail || "").startsWith(`${component.plugin} (optional) is down`);
  const [kind, mark, lead] = !check.ok ? ["bad", "✕", "systems do not answer: "]
    : down ? ["warn", "!", ""]
    : ["ok", "✓", "systems answer: "];
  return h("p", {
    class: `component-check ${kind}`,
    "data-field": "component-check",
    "data-ok": String(check.ok),
    role: check.ok ? null : "alert",
  }, h("span", { class: "check-mark", "aria-hidden": "true" }, mark), " ", lead, detail);
}

/** Fills each card's systems line from the check's answer (see `componentCheckLine`). */
function renderComponentChecks(components, check) {
  for (const component of components) {
    const card = $(`#components-list > article[data-component="${CSS.escape(component.name)}"]`);
    if (!card) continue;
    const slot = $("[data-component-check]", card);
    const line = check.ok ? (check.value.checks || []).find((c) => c.name === `component ${component.name}`) : null;
    if (line) {
      slot.replaceChildren(componentCheckLine(component, line));
      card.classList.toggle("bad", card.classList.contains("bad") || !line.ok);
    } else if (!check.ok && !component.nodes.length) {
      slot.replaceChildren(h("p", { class: "component-check pending", "data-field": "component-check" },
        `Not checked: GET /api/v1/check failed (${check.error.message}).`));
    } else {
      slot.replaceChildren();
    }
  }
}

function componentCard(component, hooks, paused, seen) {
  const mine = hooksOf(component, hooks);
  const records = paused.filter((p) => inScope(p, component));
  const stray = records.filter((p) => !mine.some((hook) => hook.pause && pauseOf(p, hook)));
  const failed = records.some((p) => p.resume_error);
  const nodes = component.nodes.map((name) => {
    const live = seen.get(name);
    const kind = !live ? "neutral" : live.reachable ? "ok" : "bad";
    return h("span", { class: `chip ${kind}`, "data-node": name, title: live ? (live.reachable ? `${name}: reachable` : `${name}: unreachable${live.error ? ` — ${live.error}` : ""}`) : name }, name);
  });
  return h("article", { class: `card component${failed ? " bad" : ""}`, "data-component": component.name },
    h("div", { class: "component-head" },
      h("h2", {}, component.name),
      badge(component.plugin, "info", "plugin"),
      component.optional ? badge("optional", "neutral", "optional") : null,
      component.order !== undefined && component.order !== null ? h("span", { class: "muted small" }, `restore order ${component.order}`) : null,
      h("span", { class: "spacer" }),
      failed ? badge("resume failed", "bad", "component-paused")
        : records.length ? badge("paused", "warn", "component-paused")
        : badge("not paused", "neutral", "component-paused")),
    component.note ? h("p", { class: "muted small", "data-field": "note" }, component.note) : null,
    h("h3", {}, "Nodes"),
    nodes.length
      ? h("div", { class: "chips", "data-field": "nodes" }, nodes)
      : h("p", { class: "muted small", "data-field": "nodes" }, "None: an external system, reached through its own API."),
    // Filled when the check answers (it asks every external system, a few seconds at most).
    h("div", { "data-component-check": component.name },
      nodes.length ? null : h("p", { class: "component-check pending", "data-field": "component-check-pending" },
        "Asking whether its systems answer…")),
    h("h3", {}, "Settings"),
    componentSettings(component),
    h("h3", {}, "Hooks"),
    mine.length ? hooksTable(mine, paused, component) : h("p", { class: "muted small", "data-field": "hooks" }, "No hooks on this component or its nodes."),
    stray.length
      ? [h("h3", {}, "Paused by hooks no longer declared (by the configuration or the plugin)"),
        h("div", { "data-field": "stray-pauses" }, stray.map((p) =>
          h("div", { "data-paused": p.hook }, h("strong", {}, p.hook), " ", pauseLine(p))))]
      : null);
}

async function loadComponents() {
  // The check probes every external system: asked at once, shown when it answers.
  const checking = settle(state.api.get("/api/v1/check"));
  const [config, status] = await Promise.all([
    settle(state.api.get("/api/v1/config")),
    settle(state.api.get("/api/v1/status")),
  ]);
  if (!state.api) return;
  if (status.ok) state.status = status.value;
  const list = $("#components-list");
  if (!config.ok) {
    list.replaceChildren(h("article", { class: "card" }, failure(config.error, "GET /api/v1/config")));
    fill("panel-operation-hooks", failure(config.error, "GET /api/v1/config"));
    fill("panel-other-pauses", failure(config.error, "GET /api/v1/config"));
    return;
  }
  const c = config.value;
  const components = componentsOf(c);
  // The configuration's `[[hooks]]`, then those the components' plugins declare (a
  // Patroni pause, Camunda's exporting pause): their pauses are declared too.
  const hooks = [
    ...(c.hooks || []).map((hook, index) => ({ ...hook, index, label: hookLabel(hook) })),
    ...(c.plugin_hooks || []).map((hook) => ({ ...hook, label: hookLabel(hook) })),
  ];
  const paused = status.ok ? status.value.paused || [] : [];
  const seen = new Map((status.ok ? status.value.nodes : []).map((n) => [n.name, n]));
  const statusNote = status.ok ? null
    : h("article", { class: "card" }, h("p", { class: "error", "data-field": "error" },
      `Pause states unknown: GET /api/v1/status failed (${status.error.message}).`));
  list.replaceChildren(...[statusNote, ...components.map((component) => componentCard(component, hooks, paused, seen))].filter(Boolean));

  const whole = hooks.filter((hook) => !hook.component && !hook.node);
  fill("panel-operation-hooks", whole.length
    ? hooksTable(whole, paused.filter((p) => !p.component && !p.node), null)
    : empty("No hooks around whole operations."));

  // Pauses of no configured component (a component renamed or removed since): still
  // paused, so shown.
  const others = paused.filter((p) => !components.some((component) => inScope(p, component)) &&
    !(!p.component && !p.node && whole.some((hook) => hook.pause && pauseOf(p, hook))));
  const problems = status.ok ? status.value.pause_problems || [] : [];
  fill("panel-other-pauses",
    others.length || problems.length
      ? h("ul", { class: "paused", "data-field": "other-pauses" },
        others.map((p) => h("li", { class: p.resume_error ? "bad" : "warn", "data-paused": p.hook },
          h("strong", {}, p.hook), p.component ? ` (component ${p.component}, not configured)` : p.node ? ` (node ${p.node})` : "",
          pauseLine(p))),
        problems.map((why) => h("li", { class: "bad", "data-paused": "untrusted" }, why)))
      : h("p", { class: "muted small", "data-field": "other-pauses" }, "None: every pause strata holds belongs to a configured component."));

  const check = await checking;
  if (!state.api) return;
  renderComponentChecks(components, check);
}

// --- Configuration -----------------------------------------------------------------------

function kv(pairs) {
  const shown = pairs.filter(([, v]) => v !== undefined && v !== null && v !== "");
  if (!shown.length) return h("span", { class: "muted" }, "—");
  return h("dl", { class: "kv" }, shown.map(([k, v]) => [h("dt", {}, k), h("dd", { "data-key": k }, v)]));
}

function secretSource(source) {
  if (!source) return "—";
  const parts = [];
  if (source.env) parts.push(["environment ", h("code", {}, `$${source.env}`)]);
  if (source.file) parts.push(["file ", h("code", {}, source.file)]);
  return parts.length ? parts.map((p, i) => (i ? [" or ", p] : p)) : "—";
}

async function loadConfiguration() {
  const [config, status] = await Promise.all([
    settle(state.api.get("/api/v1/config")),
    settle(state.api.get("/api/v1/status")),
  ]);
  if (!state.api) return;
  if (status.ok) state.status = status.value;
  if (!config.ok) {
    for (const id of ["panel-storages", "panel-config-nodes", "panel-config-schedules", "panel-config-server", "panel-config-raw"]) {
      fill(id, failure(config.error, "GET /api/v1/config"));
    }
    return;
  }
  const c = config.value;
  const storages = Object.entries(c.storages || {});
  fill("panel-storages", storages.length ? table(["Storage", "Type", "Location", "Options"], storages.map(([name, s]) =>
    h("tr", { "data-storage": name },
      h("td", {}, h("strong", {}, name), name === c.default_storage ? [" ", badge("default", "info")] : null),
      h("td", {}, s.type || (s.url ? s.url.split(":")[0] : "local")),
      h("td", {}, h("code", {}, s.path || s.url || "—")),
      h("td", {}, kv([
        ...Object.entries(s.options || {}).map(([k, v]) => [k, h("code", {}, v)]),
        ...Object.entries(s.secret_env || {}).map(([k, v]) => [k, ["from ", h("code", {}, `$${v}`)]]),
      ]))))) : empty("No storages configured."));

  const seen = new Map((state.status ? state.status.nodes : []).map((n) => [n.name, n]));
  const nodes = c.nodes || [];
  // A node's plugin is its component's (an etcd member is not `files` because the
  // top-level plugin is).
  const components = componentsOf(c);
  fill("panel-config-nodes", nodes.length ? table(["Node", "Component", "Plugin", "Agent", "Data", "Zone", "Features"], nodes.map((n) => {
    const live = seen.get(n.name);
    const meta = live && live.metadata;
    const data = n.postgres ? [n.postgres.data_dir] : n.roots || [];
    const component = components.find((x) => x.nodes.includes(n.name));
    return h("tr", { "data-node": n.name },
      h("td", {}, h("strong", {}, n.name)),
      h("td", { "data-field": "component" }, component ? h("a", { href: "#components" }, component.name) : "—"),
      h("td", { "data-field": "plugin" }, component ? component.plugin : "files"),
      h("td", {}, n.url ? h("code", {}, n.url) : "in this server",
        live ? h("div", {}, live.reachable ? badge("reachable", "ok") : badge("unreachable", "bad")) : null),
      h("td", {}, data.length ? data.map((r) => h("div", {}, h("code", {}, r))) : h("span", { class: "muted" }, n.url ? "in the agent's configuration" : "—"),
        n.exclude && n.exclude.length ? h("div", { class: "muted small" }, `excluding ${n.exclude.join(", ")}`) : null),
      h("td", {}, n.zone || h("span", { class: "muted" }, "—")),
      h("td", {}, meta && meta.features && meta.features.length
        ? h("div", { class: "chips" }, meta.features.map((f) => h("span", { class: "chip neutral" }, f)))
        : h("span", { class: "muted" }, "—")));
  })) : empty("No [[nodes]] configured."));

  const schedules = c.schedules || [];
  const retention = Object.entries(c.retention || {}).filter(([k]) => k !== "timezone" || Object.keys(c.retention).some((x) => x.startsWith("keep_")));
  fill("panel-config-schedules",
    schedules.length
      ? table(["Schedule", "Job", "Cron"], schedules.map((s) => h("tr", {},
        h("td", {}, s.name || s.job),
        h("td", {}, s.job, s.read_data ? h("span", { class: "muted small" }, " (read data)")
          : s.read_data_subset ? h("span", { class: "muted small" }, ` (read ${s.read_data_subset})`) : null),
        h("td", {}, h("code", {}, s.cron), h("span", { class: "muted small" }, ` ${s.timezone || "UTC"}`)))))
      : empty("No schedules."),
    h("h3", {}, "Retention"),
    retention.some(([k]) => k.startsWith("keep_"))
      ? kv(retention.map(([k, v]) => [k, String(v)]))
      : empty("No retention policy: backups are kept until deleted."));

  const server = c.server || {};
  fill("panel-config-server", kv([
    ["Listen (config)", server.listen && h("code", {}, server.listen)],
    ["Coordinator", server.coordinator === undefined ? undefined : server.coordinator ? "on" : "off"],
    ["Lease TTL", server.lease_ttl_secs !== undefined ? `${server.lease_ttl_secs} s` : undefined],
    ["TLS", server.tls_cert ? ["on, ", h("code", {}, server.tls_cert)] : "off"],
    ["User token", secretSource(server.user_token)],
    ["More user tokens", (server.tokens || []).length
      ? server.tokens.map((t, i) => [i ? ", " : "", h("strong", {}, t.name), " (", secretSource(t), ")"])
      : undefined],
    ["Agent token", secretSource(server.agent_token)],
    ["Password", secretSource(c.password)],
    ["Encryption", c.repository && c.repository.encryption],
    ["Default storage", c.default_storage],
  ]));

  fill("panel-config-raw", h("details", {},
    h("summary", {}, "Show as JSON (secrets masked by the server)"),
    h("pre", { class: "json", "data-field": "config-json" }, JSON.stringify(c, null, 2))));
}

// --- Tables ------------------------------------------------------------------------------

/** What the tables view (tables.js) uses of this page: the session's API and the panels,
 * dialogs and toasts every view shares. */
function tablesUi() {
  return { api: state.api, settle, fill, failure, ask, toast, refresh, dateTime: fmt.dateTime };
}

// --- Activity ----------------------------------------------------------------------------

async function loadActivity() {
  const since = new Date(Date.now() - 7 * 24 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  const [operations, audit] = await Promise.all([
    settle(state.api.get("/api/v1/operations")),
    settle(state.api.get(`/api/v1/audit?since=${encodeURIComponent(since)}`)),
  ]);
  if (!state.api) return;
  if (operations.ok) {
    fill("panel-recent-ops", operations.value.length ? operationsTable(operations.value) : empty("No operations since the server started."));
  } else {
    fill("panel-recent-ops", failure(operations.error, "GET /api/v1/operations"));
  }
  if (audit.ok) {
    const entries = [...audit.value].reverse();
    fill("panel-audit", entries.length ? table(["Time", "Who", "Action", "Target", "Outcome", "Detail"], entries.map((e) =>
      h("tr", { "data-audit-action": e.action, "data-audit-outcome": e.outcome },
        h("td", { class: "nowrap" }, fmt.dateTime(e.time)),
        h("td", {}, e.who),
        h("td", {}, h("strong", {}, e.action)),
        h("td", {}, e.target ? h("code", {}, e.target) : "—"),
        h("td", {}, statusBadge(e.outcome, "outcome")),
        h("td", { class: "muted small" }, e.detail || "")))) : empty("Nothing was changed in the last 7 days."));
  } else {
    fill("panel-audit", failure(audit.error, "GET /api/v1/audit"));
  }
}

// ---------------------------------------------------------------------------------------
// Start

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("#token").value.trim();
  if (!token) return;
  const button = $("#login-form button[type=submit]");
  button.disabled = true;
  try {
    await signIn(token);
  } catch (error) {
    const message = error.status === 401
      ? "The server refused this token."
      : `Cannot sign in: ${error.message}`;
    showLogin(message);
  } finally {
    button.disabled = false;
  }
});
$("#logout").addEventListener("click", () => signOut(null));
$("#refresh").addEventListener("click", () => refresh());
$("#backup-now").addEventListener("click", () => backupNow());
$("#verify-all").addEventListener("click", () => verifyBackup(null));
$("#cleanup").addEventListener("click", () => cleanup());
window.addEventListener("hashchange", () => state.api && route());

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) {
  signIn(saved).catch((error) =>
    signOut(error.status === 401 ? "The server no longer accepts this token. Sign in again." : `Cannot reach the server: ${error.message}`));
} else {
  showLogin(null);
}
