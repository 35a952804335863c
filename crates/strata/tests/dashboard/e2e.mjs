// Drives the dashboard in headless Chromium against a running `strata server` with real
// backups (started by crates/strata/tests/dashboard.rs, which passes everything in the
// environment). Checks that what the page shows equals what the API returns, starts a
// backup with the page's button, follows it while it runs and to its end, drives the
// dialog that brings tables back (against the real server, which refuses: no PostgreSQL
// here), and saves screenshots.
//
// STRATA_URL, STRATA_TOKEN, STRATA_CHROMIUM, STRATA_TEST_NODE_MODULES, STRATA_SCREENSHOTS,
// STRATA_DB2 (node db2's root: the script damages it and restores it through the page),
// STRATA_GATE (the gate in front of db2's agent: it holds db2's `finish` until the script
// has seen the running backup's figures, then the script opens it with POST /gate/open),
// STRATA_SECRET (a secret in the server's configuration: shown masked, never sent),
// STRATA_ETCD (the etcd of the `topology` component: the script empties its prefix and
// restores it from the page, renaming `db1` to `newdb1`).
// Runs with TZ=UTC, as the browser context does, so times read the same in both.
// Exit 0 when every check held; otherwise the first failed check is printed.

import { createRequire } from "node:module";
import { join } from "node:path";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env("STRATA_URL").replace(/\/$/, "");
const token = env("STRATA_TOKEN");
const shots = env("STRATA_SCREENSHOTS");
mkdirSync(shots, { recursive: true });
const require = createRequire(join(env("STRATA_TEST_NODE_MODULES"), "resolve-from-here.js"));
const { chromium } = require("playwright-core");

const LONG = 180_000;
const log = (...args) => console.log("[e2e]", ...args);

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

function equal(actual, expected, what) {
  check(actual === expected, `${what}: page shows ${JSON.stringify(actual)}, API says ${JSON.stringify(expected)}`);
}

/** One of the values `expected` allows (a figure that depends on the clock, computed at
 * the moments before and after the page could have drawn it). */
function oneOf(actual, expected, what) {
  check(expected.includes(actual), `${what}: page shows ${JSON.stringify(actual)}, API says one of ${JSON.stringify(expected)}`);
}

/** What `text(now)` gives at every second from `from` to now: the page drew it at one of
 * those moments. */
function sinceThen(from, text) {
  const to = new Date();
  const out = new Set([text(to)]);
  for (let t = from.getTime(); t < to.getTime(); t += 1000) out.add(text(new Date(t)));
  return [...out];
}

/** The API, asked directly (not through the page): the truth the page is checked against.
 * Every endpoint the page uses must be there: a 404 or 405 fails the test. */
async function api(path) {
  const response = await fetch(base + path, { headers: { Authorization: `Bearer ${token}` } });
  check(response.ok, `GET ${path}: HTTP ${response.status}`);
  return { value: await response.json() };
}

/** Bytes as people read them, written again here so the page's formatting is checked too. */
function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** The page's other formats, written again here (see format.js). */
const pad = (n) => String(n).padStart(2, "0");
function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const total = Math.round(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h === 0) return `${m} min ${pad(sec)} s`;
  if (h < 48) return `${h} h ${pad(m)} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}
function age(date, now) {
  const ms = now - date;
  if (ms < 0) return "in the future";
  if (ms < 60_000) return "just now";
  const min = Math.floor(ms / 60_000);
  if (min < 60) return `${min} min ago`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h} h ${min % 60} min ago`;
  return `${Math.floor(h / 24)} d ${h % 24} h ago`;
}
function until(date, now) {
  const ms = date - now;
  if (ms <= 0) return "due";
  const min = Math.ceil(ms / 60_000);
  if (min < 60) return `in ${min} min`;
  const h = Math.floor(min / 60);
  if (h < 48) return `in ${h} h ${min % 60} min`;
  return `in ${Math.floor(h / 24)} d ${h % 24} h`;
}
function dateTime(value) {
  const d = new Date(value);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
const plural = (n, noun) => `${n.toLocaleString("en-US")} ${n === 1 ? noun : `${noun}s`}`;

const sum = (b, field) => b.nodes.reduce((t, n) => t + n[field], 0);

/** etcd's JSON gateway, asked directly: the keys under `prefix` and their values. */
const b64 = (text) => Buffer.from(text).toString("base64");
async function etcd(path, body) {
  const response = await fetch(env("STRATA_ETCD") + path, { method: "POST", body: JSON.stringify(body) });
  check(response.ok, `etcd ${path}: HTTP ${response.status}`);
  return response.json();
}
const prefixEnd = (prefix) => prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
async function etcdKeys(prefix) {
  const reply = await etcd("/v3/kv/range", { key: b64(prefix), range_end: b64(prefixEnd(prefix)) });
  return (reply.kvs || []).map((kv) => [Buffer.from(kv.key, "base64").toString(), Buffer.from(kv.value || "", "base64").toString()]);
}

/** The component of the configuration view that backs up `node` (what the page must show
 * as the node's plugin), or the one component of a configuration without components. */
function componentOfNode(config, node) {
  if (!config.components || !config.components.length) return { name: config.plugin, plugin: config.plugin };
  return config.components.find((c) => (c.nodes || []).includes(node));
}
const CHART_POINTS = 40;

/** The charts: one bar group per backup (the newest CHART_POINTS), oldest first, each
 * titled with its backup's name, and the duration chart's titles with its duration. */
async function checkCharts(page, list) {
  const shown = [...list].slice(0, CHART_POINTS).reverse();
  for (const chart of ["#chart-size", "#chart-duration"]) {
    equal(await page.locator(`${chart} .bar-group`).count(), shown.length, `bars in ${chart}`);
  }
  const titles = await page.locator("#chart-duration .bar-group > title").allTextContents();
  equal(titles.join("\n"), shown.map((b) => `${b.name} (${b.status}): ${duration(b.duration_ms)}`).join("\n"),
    "the duration chart's bars");
  const sizes = await page.locator("#chart-size .bar-group > title").allTextContents();
  equal(sizes.map((t) => t.split(" ")[0]).join(), shown.map((b) => b.name).join(), "the size chart's bars");
}
const newestFirst = (list) => [...list].sort((a, b) => (b.started + b.name).localeCompare(a.started + a.name));

const browser = await chromium.launch({
  executablePath: env("STRATA_CHROMIUM"),
  args: ["--no-sandbox"],
});
const problems = [];
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, timezoneId: "UTC" });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  const origin = new URL(base).origin;
  // The dashboard must work without internet: any request elsewhere fails the test.
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    problems.push(`request to another site: ${url}`);
    return route.abort();
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const text = message.text();
    // A 4xx is an answer the page shows (the wrong token on purpose, the refused delete of
    // a pinned backup), not a fault; a 5xx, a CSP violation or an exception is.
    if (/Failed to load resource: the server responded with a status of 4\d\d/.test(text)) return;
    problems.push(`console error: ${text}`);
  });

  // Sign in: the root leads to the page, a wrong token is refused, the right one opens it.
  await page.goto(`${base}/`);
  check(page.url().endsWith("/ui/"), `/ redirects to /ui/, got ${page.url()}`);
  await page.locator("#token").waitFor({ state: "visible" });
  check(await page.locator("#view-overview").isHidden(), "no data view before signing in");
  await page.fill("#token", `${token}-wrong`);
  await page.click("#login-form button[type=submit]");
  await page.locator("#login-error").filter({ hasText: "refused" }).waitFor();
  log("wrong token refused");
  await page.fill("#token", token);
  const beforeOverview = new Date();
  await page.click("#login-form button[type=submit]");
  await page.locator("[data-field=count-complete]").waitFor();
  await page.locator("#login").waitFor({ state: "hidden" });
  log("signed in");

  // Overview: counts, latest and last good backup, nodes, schedules, check.
  const backups = newestFirst((await api("/api/v1/backups")).value);
  check(backups.length >= 2, "the test made backups before the page loaded");
  const counts = { complete: 0, partial: 0, failed: 0 };
  for (const b of backups) counts[b.status] += 1;
  for (const status of Object.keys(counts)) {
    equal(await page.textContent(`[data-field=count-${status}]`), String(counts[status]), `${status} backups`);
  }
  equal(await page.textContent("[data-field=count-total]"), `${backups.length} in total`, "backups in total");
  equal(await page.textContent("[data-field=latest-name]"), backups[0].name, "latest backup");
  equal(await page.textContent("[data-field=latest-status]"), backups[0].status, "latest backup's status");
  const good = backups.find((b) => b.status === "complete");
  equal(await page.textContent("[data-field=last-good-name]"), good.name, "last good backup");
  oneOf(await page.textContent("[data-field=last-good-age]"),
    sinceThen(beforeOverview, (now) => age(new Date(good.started), now)), "age of the last good backup");
  const status = (await api("/api/v1/status")).value;
  const up = status.nodes.filter((n) => n.reachable).length;
  equal(await page.textContent("[data-field=nodes-reachable]"), `${up} / ${status.nodes.length}`, "reachable nodes");
  for (const node of status.nodes) {
    const row = page.locator(`#panel-nodes tr[data-node="${node.name}"]`);
    equal(await row.locator("[data-field=reachable]").textContent(), node.reachable ? "reachable" : "unreachable", `${node.name} reachability`);
    equal(await row.locator("[data-field=version]").textContent(),
      node.metadata ? `${node.metadata.version} (API ${node.metadata.api_version})` : "—", `${node.name} version`);
  }
  // What hooks hold paused: the test left one; each is shown with its hook, scope and operation.
  check((status.paused || []).length > 0, "the test left a pause record");
  for (const p of status.paused) {
    const item = page.locator(`#panel-nodes [data-field=paused] li[data-paused="${p.hook}"]`);
    const text = await item.textContent();
    check(text.includes(p.operation) && text.includes(`component ${p.component}`), `pause ${p.hook} shown: ${text}`);
  }
  const schedules = (await api("/api/v1/schedules")).value;
  check(schedules.length > 0, "the test configured a schedule");
  for (const job of schedules) {
    check(job.next, `schedule ${job.name} has a next run`);
    const next = new Date(job.next);
    const cell = page.locator(`#panel-schedules tr[data-schedule="${job.name}"] [data-field=next]`);
    await cell.waitFor();
    oneOf(await cell.textContent(),
      sinceThen(beforeOverview, (now) => `${dateTime(next)}${until(next, now)}`), `next run of ${job.name}`);
  }
  const checks = (await api("/api/v1/check")).value;
  check(checks.checks.length > 0, "the server checks its configuration");
  check(await page.locator("#view-overview [data-field=unavailable]").count() === 0, "no panel of the overview says 'not available'");
  for (const c of checks.checks) {
    const item = page.locator(`#panel-check li[data-check="${c.name}"]`);
    equal(await item.getAttribute("class"), !c.ok ? "bad" : c.warning ? "warn" : "ok", `check ${c.name}`);
  }
  const warned = checks.checks.filter((c) => c.ok && c.warning).length;
  equal(await page.textContent("#panel-check [data-field=check-summary]"),
    !checks.ok ? `${checks.checks.filter((c) => !c.ok).length} of ${checks.checks.length} checks failed`
      : warned ? `All ${checks.checks.length} checks passed, ${warned} with a warning`
        : `All ${checks.checks.length} checks passed`,
    "the check's summary");
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "overview.png"), fullPage: true });
  log("overview matches the API");

  // Components: each configured component with its plugin, nodes, settings, hooks and the
  // live pause state of each hook, as the configuration and the status say.
  await page.click("#tabs a[data-tab=components]");
  const configured = (await api("/api/v1/config")).value;
  const live = (await api("/api/v1/status")).value;
  check((configured.components || []).length === 4, `the test configured four components: ${JSON.stringify(configured.components)}`);
  const cards = page.locator("#components-list > article[data-component]");
  await cards.first().waitFor();
  equal(await cards.count(), configured.components.length, "components shown");
  const cardOf = (name) => page.locator(`#components-list > article[data-component="${name}"]`);
  for (const c of configured.components) {
    equal(await cardOf(c.name).locator("[data-field=plugin]").textContent(), c.plugin, `component ${c.name}'s plugin`);
    equal((await cardOf(c.name).locator("[data-field=nodes] [data-node]").allTextContents()).join(), (c.nodes || []).join(), `component ${c.name}'s nodes`);
  }
  // Each external component's line of the check: whether its systems answer (the Zeebe
  // fake does; the optional `reports` is down, which passes the check and says so); a
  // component with nodes has none (its nodes are checked).
  const systems = (await api("/api/v1/check")).value.checks;
  const systemsOf = (name) => systems.find((c) => c.name === `component ${name}`);
  for (const [name, ok, says] of [["workflow", true, "answers"], ["reports", true, "(optional) is down"]]) {
    const c = systemsOf(name);
    check(c && c.ok === ok && c.detail.includes(says), `the check of component ${name}: ${JSON.stringify(c)}`);
  }
  for (const c of configured.components) {
    const line = cardOf(c.name).locator("[data-field=component-check]");
    const expected = systemsOf(c.name);
    if (!expected) {
      check((c.nodes || []).length > 0, `a check line for the external component ${c.name}`);
      await cardOf(c.name).locator("[data-field=component-check-pending]").waitFor({ state: "detached" });
      equal(await line.count(), 0, `check lines on the card of ${c.name}, a component with nodes`);
      continue;
    }
    await line.waitFor();
    equal(await line.locator("[data-field=check-detail]").textContent(), expected.detail, `the check of ${c.name} on its card`);
    equal(await line.getAttribute("data-ok"), String(expected.ok), `the check of ${c.name}: ok`);
    const down = expected.detail.startsWith(`${c.plugin} (optional) is down`);
    const kind = !expected.ok ? "bad" : down ? "warn" : "ok";
    equal(await line.getAttribute("class"), `component-check ${kind}`, `the colour of ${c.name}'s check`);
    const text = await line.textContent();
    check(down || text.includes(`systems ${expected.ok ? "answer" : "do not answer"}: ${expected.detail}`), `${c.name}'s check line: ${text}`);
  }
  equal(await cardOf("reports").locator("[data-field=component-check]").getAttribute("class"), "component-check warn",
    "the optional component that is down");
  check((await cardOf("workflow").locator("[data-field=component-check]").textContent()).startsWith("✓ systems answer: http: "),
    "the workflow component's systems answer");
  equal(await cardOf("topology").locator('[data-setting="etcd.endpoints"]').textContent(),
    configured.components.find((c) => c.name === "topology").etcd.endpoints.join(", "), "topology's etcd endpoints");
  check((configured.hooks || []).length === 3, "the test configured three hooks");
  for (const hook of configured.hooks) {
    const owner = hook.component || componentOfNode(configured, hook.node).name;
    const row = cardOf(owner).locator(`tr[data-hook="${hook.name}"]`);
    equal(await row.count(), 1, `hook ${hook.name} under component ${owner}`);
    equal(await row.locator("[data-field=hook-scope]").textContent(),
      hook.node ? `node ${hook.node}` : `component ${hook.component}`, `hook ${hook.name}'s scope`);
  }
  // The live pause state: the test left a pause of freeze-topology whose resume failed,
  // and one of a component the configuration no longer has.
  const failedResume = (live.paused || []).find((p) => p.component === "topology");
  check(failedResume && failedResume.resume_error, `a failed resume of topology in the status: ${JSON.stringify(live.paused)}`);
  for (const p of live.paused) {
    const expected = `paused since ${dateTime(p.since)} by operation ${p.operation}`;
    if (configured.components.some((c) => c.name === p.component)) {
      const state = cardOf(p.component).locator(`tr[data-hook="${p.hook}"] [data-field=pause-state]`);
      check((await state.textContent()).includes(expected), `pause of ${p.hook}: ${await state.textContent()}`);
      if (p.resume_error) {
        check((await state.locator("[data-field=resume-error]").textContent()).includes(p.resume_error), `${p.hook}'s failed resume shown`);
        equal(await cardOf(p.component).locator("[data-field=component-paused]").textContent(), "resume failed", `${p.component} marked`);
      }
    } else {
      const item = page.locator(`#panel-other-pauses li[data-paused="${p.hook}"]`);
      check((await item.textContent()).includes(expected), `pause of ${p.hook} outside the components: ${await item.textContent()}`);
    }
  }
  equal(await cardOf("data").locator("[data-field=component-paused]").textContent(), "not paused", "data is not paused");
  check(await page.locator("#view-components [data-field=unavailable], #view-components [data-field=error]").count() === 0,
    "no panel of the components view failed");
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "components.png"), fullPage: true });
  log("components view matches the configuration and the status");

  // Backups: every row's status, per-node status and sizes.
  await page.click("#tabs a[data-tab=backups]");
  await page.locator("#backups-table").waitFor();
  const rows = page.locator("#backups-table tbody tr");
  equal(await rows.count(), Math.min(backups.length, 20), "rows on the first page");
  for (const b of backups.slice(0, 20)) {
    const row = page.locator(`#backups-table tr[data-backup="${b.name}"]`);
    equal(await row.locator("[data-field=status]").textContent(), b.status, `${b.name} status`);
    equal(await row.locator("[data-field=size]").textContent(), bytes(sum(b, "bytes")), `${b.name} size`);
    equal(await row.locator("[data-field=stored]").textContent(), bytes(sum(b, "stored_bytes")), `${b.name} stored size`);
    equal(await row.locator("[data-field=new]").textContent(), bytes(sum(b, "new_bytes")), `${b.name} new data`);
    equal(await row.locator("[data-field=duration]").textContent(), duration(b.duration_ms), `${b.name} duration`);
    for (const n of b.nodes) {
      equal(await row.locator(`.chip[data-node="${n.name}"]`).getAttribute("data-status"), n.status, `${b.name} node ${n.name}`);
    }
    check((b.components || []).length > 0, `${b.name} lists its components`);
    for (const c of b.components) {
      equal(await row.locator(`.chip[data-component="${c.name}"]`).getAttribute("data-status"), c.status, `${b.name} component ${c.name}`);
    }
    equal(await row.locator("[data-field=still-paused-badge]").count(), (b.still_paused || []).length ? 1 : 0, `${b.name} marked still paused`);
  }
  // A backup's details: each component's external parts with their states, and, loudly,
  // what it left paused (the test's first backup could not resume hold-workflow).
  for (const b of backups) {
    await page.locator(`#backups-table tr[data-backup="${b.name}"] [data-field=name]`).click();
    const dialog = page.locator("#confirm[open]");
    await dialog.waitFor();
    const paused = b.still_paused || [];
    equal((await dialog.locator("[data-field=still-paused-line]").allTextContents()).join("\n"), paused.join("\n"), `what ${b.name} left paused`);
    if (paused.length) {
      check(paused.some((line) => line.includes("hold-workflow")), `the first backup names the hook it left paused: ${paused}`);
      equal(await dialog.locator("[data-field=still-paused]").evaluate((el) => getComputedStyle(el).color), "rgb(180, 35, 24)",
        `${b.name}'s still paused lines in red`);
      await page.mouse.move(0, 0);
      await page.screenshot({ path: join(shots, "backup-details.png") });
    }
    for (const c of b.components) {
      const cell = dialog.locator(`tr[data-component="${c.name}"]`);
      const parts = Object.entries(c.external || {}).filter(([k]) => !k.endsWith("_snapshots"));
      for (const [part, value] of parts) {
        equal(await cell.locator(`[data-part="${part}"] [data-field=part-state]`).textContent(), value, `${b.name} component ${c.name} part ${part}`);
      }
      // A part's list of snapshots is shown under it, not as a part of its own.
      const shown = Object.keys(c.external || {}).filter((k) => !(k.endsWith("_snapshots") && k.slice(0, -"_snapshots".length) in c.external));
      equal(await cell.locator("[data-part]").count(), shown.length, `${b.name} component ${c.name}: parts shown`);
    }
    const workflow = b.components.find((c) => c.name === "workflow");
    if (b.status === "complete") {
      check(workflow.external && workflow.external.state === "COMPLETED" && workflow.external.snapshot_id, `workflow's parts in ${b.name}: ${JSON.stringify(workflow)}`);
    }
    await page.click("#confirm-ok");
    await dialog.waitFor({ state: "detached" });
  }
  check(backups.some((b) => (b.still_paused || []).length), "a backup the API lists with what it left paused");

  // Tables back (POST /api/v1/backups/{name}/tables) from a backup's details, offered when
  // the server has the `tables` feature. The test has no PostgreSQL, so the dialog is
  // driven against the real server, which refuses the backup: the dialog's own checks
  // send nothing, a valid form sends exactly its body, the page waits (held here until
  // the busy state is seen) and shows the server's error in red.
  check((await api("/api/v1/version")).value.features.includes("tables"), "the server offers the tables feature");
  const tablesPath = `/api/v1/backups/${good.name}/tables`;
  check(good.nodes.every((n) => !(n.plugin || {})["postgres.start_lsn"]), `${good.name} has no PostgreSQL node`);
  const sent = [];
  let hold = null;
  let answerWith = null;
  const tablesRoute = (url) => url.pathname === tablesPath;
  const tablesHandler = async (route) => {
    sent.push({ method: route.request().method(), body: route.request().postData() });
    if (hold) await hold;
    // The rendering of a report (no PostgreSQL here to make one): answered by the test,
    // shaped as the server's TableRestoreReport.
    if (answerWith) return route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(answerWith) });
    return route.continue();
  };
  await page.route(tablesRoute, tablesHandler);
  const openTables = async () => {
    await page.locator(`#backups-table tr[data-backup="${good.name}"] [data-field=name]`).click();
    await page.locator("#confirm[open]").waitFor();
    await page.locator("#confirm [data-action=tables]").click();
    await page.locator("#confirm-title").filter({ hasText: `Bring tables back from ${good.name}` }).waitFor();
  };
  // A backup without a PostgreSQL node offers no such action.
  await page.locator(`#backups-table tr[data-backup="${good.name}"] [data-field=name]`).click();
  await page.locator("#confirm[open]").waitFor();
  equal(await page.locator("#confirm [data-action=tables]").count(), 0, "the tables action on a backup without PostgreSQL");
  await page.click("#confirm-ok");
  await page.locator("#confirm[open]").waitFor({ state: "detached" });
  // The same backup listed with a PostgreSQL node (the listing rewritten on its way to
  // the page): offered, and the dialog is driven against the real server, which refuses.
  await page.route((url) => url.pathname === "/api/v1/backups", async (route) => {
    if (route.request().method() !== "GET") return route.continue();
    const response = await route.fetch();
    const listed = await response.json();
    check(Array.isArray(listed), `the backup listing: ${response.status()} ${JSON.stringify(listed)}`);
    for (const b of listed) {
      if (b.name === good.name) b.nodes[0].plugin = { ...(b.nodes[0].plugin || {}), "postgres.start_lsn": "0/2000028" };
    }
    return route.fulfill({ response, json: listed });
  });
  await page.reload();
  await page.locator(`#backups-table tr[data-backup="${good.name}"]`).waitFor();
  await openTables();
  const tablesForm = async ({ database = "", tables = "", as = "", time = "" }) => {
    await page.fill("#confirm input[name=database]", database);
    await page.fill("#confirm textarea[name=tables]", tables);
    await page.fill("#confirm input[name=as]", as);
    await page.fill("#confirm input[name=target_time]", time);
    await page.click("#confirm-ok");
  };
  for (const [form, says] of [
    [{ tables: "public.orders" }, "Give the database"],
    [{ database: "shop", tables: "public.orders\npublic.order-lines" }, "“public.order-lines” is not SCHEMA.TABLE"],
    [{ database: "shop", tables: "public.orders.x" }, "“public.orders.x” is not SCHEMA.TABLE"],
    [{ database: "shop", tables: "1orders" }, "“1orders” is not SCHEMA.TABLE"],
    [{ database: "shop", tables: "public.orders\ncustomers", as: "back" }, "“As” names one table"],
    [{ database: "shop", tables: "public.orders", as: "orders back" }, "“orders back” is not a table name"],
    [{ database: "shop", as: "shop-back" }, "“shop-back” is not a database name"],
  ]) {
    await tablesForm(form);
    await page.locator("#confirm [data-field=dialog-error]").filter({ hasText: says }).waitFor();
    check(await page.locator("#confirm[open]").count() === 1, `the tables dialog stays open after ${JSON.stringify(form)}`);
    equal(sent.length, 0, `requests sent for ${JSON.stringify(form)}`);
  }
  // A valid form: exactly this body, the page busy while the server works.
  const canonical = (value) => JSON.stringify(value, (_, v) => (v && typeof v === "object" && !Array.isArray(v)
    ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v));
  const sentBody = (i) => canonical(JSON.parse(sent[i].body));
  let release;
  hold = new Promise((resolve) => { release = resolve; });
  await tablesForm({ database: " shop ", tables: "\n public.orders \n\n", as: "orders_back", time: "2026-11-26 09:14:00+00" });
  await page.locator("#confirm [data-field=dialog-busy]").waitFor();
  const expectedBody = { database: "shop", tables: ["public.orders"], as: "orders_back", target_time: "2026-11-26 09:14:00+00" };
  for (const deadline = Date.now() + 10_000; sent.length === 0;) {
    check(Date.now() < deadline, "the valid form was not sent");
    await page.waitForTimeout(50);
  }
  equal(sent.length, 1, "requests sent for the valid form");
  equal(sent[0].method, "POST", "the method of the tables request");
  equal(sentBody(0), canonical(expectedBody), "the body the page sent");
  check(await page.locator("#confirm-ok").isDisabled(), "the button is disabled while the server works");
  equal(await page.textContent("#confirm-ok"), "Bringing back…", "the button while the server works");
  check(await page.locator("#confirm input[name=database]").isDisabled(), "the fields are disabled while the server works");
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "tables-busy.png") });
  release();
  hold = null;
  // The server's own answer to that body, asked directly: the page shows its message.
  const direct = await fetch(base + tablesPath, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(expectedBody),
  });
  const refusal = await direct.json();
  check(direct.status === 404 && refusal.message.includes("has no PostgreSQL node"), `the server's answer: ${direct.status} ${JSON.stringify(refusal)}`);
  const shownError = page.locator("#confirm [data-field=tables-error-message]");
  await shownError.waitFor();
  equal(await shownError.textContent(), refusal.message, "the server's refusal in the tables dialog");
  equal(await page.locator("#confirm [data-field=tables-error]").evaluate((el) => getComputedStyle(el).color), "rgb(180, 35, 24)",
    "the refusal in red");
  check(await page.locator("#confirm [data-field=dialog-busy]").count() === 0, "no busy line once the server answered");
  check(!(await page.locator("#confirm input[name=database]").isDisabled()), "the fields can be changed after a refusal");
  equal(await page.textContent("#confirm-ok"), "Bring back", "the button after a refusal");
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "tables-refused.png") });
  // Again, the whole database: no `as`, no target.
  await tablesForm({ database: "shop" });
  await page.locator("#confirm [data-field=tables-error-message]").filter({ hasText: "has no PostgreSQL node" }).waitFor();
  equal(sent.length, 2, "requests sent after the whole database");
  equal(sentBody(1), canonical({ database: "shop", tables: [] }), "the body for a whole database");
  // A report's lines (answered by the test, see above): shown, and the dialog only closes.
  answerWith = { backup: good.name, node: "pg1", lines: ["restoring node pg1 of the backup", "public.orders as public.orders_back: 3 rows"] };
  await tablesForm({ database: "shop", tables: "orders" });
  await page.locator("#confirm [data-field=tables-report]").waitFor();
  equal(sentBody(2), canonical({ database: "shop", tables: ["orders"] }), "the body for one table without a schema");
  equal((await page.locator("#confirm [data-field=tables-line]").allTextContents()).join("\n"), answerWith.lines.join("\n"), "the report's lines");
  equal(await page.textContent("#confirm-ok"), "Close", "the button after a report");
  await page.click("#confirm-ok");
  await page.locator("#confirm[open]").waitFor({ state: "detached" });
  equal(sent.length, 3, "requests sent by the tables dialog");
  await page.unroute(tablesRoute, tablesHandler);
  // A server without the feature: no such action (the version answered without it).
  const noTables = async (route) => {
    const response = await route.fetch();
    const version = await response.json();
    version.features = version.features.filter((f) => f !== "tables");
    return route.fulfill({ response, json: version });
  };
  const versionRoute = (url) => url.pathname === "/api/v1/version";
  const tablesAction = async (offered) => {
    await page.reload();
    await page.locator(`#backups-table tr[data-backup="${good.name}"] [data-field=name]`).click();
    await page.locator("#confirm[open]").waitFor();
    equal(await page.locator("#confirm [data-action=tables]").count(), offered ? 1 : 0, `the tables action when the server ${offered ? "offers" : "lacks"} it`);
    await page.click("#confirm-ok");
    await page.locator("#confirm[open]").waitFor({ state: "detached" });
  };
  await page.route(versionRoute, noTables);
  await tablesAction(false);
  await page.unroute(versionRoute, noTables);
  await tablesAction(true);
  log("tables dialog: local checks, the body sent, the busy state, the server's refusal, a report, the feature");

  await checkCharts(page, backups);
  log(`${backups.length} backups listed and charted as the API lists them`);
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "backups.png"), fullPage: true });

  // Back up now: confirm, follow the progress, see the new backup complete.
  await page.click("#backup-now");
  await page.locator("#confirm[open]").waitFor();
  await page.click("#confirm-ok");
  const card = page.locator("#panel-live [data-op-id]").first();
  await card.waitFor();
  const id = await card.getAttribute("data-op-id");
  log(`backup ${id} started from the page`);
  // db2's `finish` is held at the gate, so the backup runs until the page has shown db2's
  // figures as the API has them; then the gate opens and the backup ends.
  const phases = new Set();
  let running = null;
  const deadline = Date.now() + LONG;
  for (;;) {
    const state = await card.locator(".operation-head [data-field=state]").textContent();
    for (const p of await card.locator("[data-field=phase]").allTextContents()) phases.add(p);
    if (state !== "running") {
      check(running, `the backup ended (${state}) before the page showed a node's figures while it ran`);
      equal(state, "succeeded", "state of the backup started from the page");
      break;
    }
    if (!running) {
      const live = (await api(`/api/v1/operations/${id}`)).value;
      const db2 = live.nodes.find((n) => n.name === "db2");
      const p = db2.progress;
      if (live.state === "running" && db2.phase === "finishing" && (p.files > 0 || p.bytes > 0)) {
        const expected = `${plural(p.files, "file")} · ${bytes(p.bytes)}${p.total_bytes ? ` of ${bytes(p.total_bytes)}` : ""}`;
        const shown = await card.locator("[data-node=db2] [data-field=progress]").textContent();
        const phase = await card.locator("[data-node=db2] [data-field=phase]").textContent();
        if (shown === expected && phase === "finishing") {
          running = shown;
          log(`while the backup ran, db2 showed: ${phase}, ${shown}`);
          await page.mouse.move(0, 0);
          await page.screenshot({ path: join(shots, "backup-running.png"), fullPage: true });
          const opened = await fetch(`${env("STRATA_GATE")}/gate/open`, { method: "POST" });
          check(opened.ok, `opening the gate: HTTP ${opened.status}`);
        }
      }
    }
    check(Date.now() < deadline, `backup ${id} still running after ${LONG / 1000} s`);
    await page.waitForTimeout(100);
  }
  log(`phases seen on the page: ${[...phases].join(", ")}`);
  const operation = (await api(`/api/v1/operations/${id}`)).value;
  equal(operation.state, "succeeded", "state of the operation in the API");
  const made = operation.result.name;
  for (const n of operation.nodes) {
    const summary = operation.result.nodes.find((s) => s.name === n.name);
    const shown = await card.locator(`[data-node="${n.name}"] [data-field=progress]`).textContent();
    const expected = `${summary.files} ${summary.files === 1 ? "file" : "files"} · ${bytes(summary.bytes)} · ${bytes(summary.new_bytes)} new`;
    equal(shown, expected, `${n.name}'s figures when the backup ended`);
    equal(await card.locator(`[data-node="${n.name}"] [data-field=phase]`).textContent(), n.phase, `${n.name} phase`);
  }
  const newRow = page.locator(`#backups-table tr[data-backup="${made}"]`);
  await newRow.waitFor({ timeout: LONG });
  equal(await newRow.locator("[data-field=status]").textContent(), "complete", `${made} status`);
  const after = newestFirst((await api("/api/v1/backups")).value);
  equal(after[0].name, made, "the newest backup is the one started from the page");
  equal(await newRow.locator("[data-field=size]").textContent(), bytes(sum(after[0], "bytes")), `${made} size`);
  equal(await newRow.locator("[data-field=duration]").textContent(), duration(after[0].duration_ms), `${made} duration`);
  await checkCharts(page, after);
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "backup-done.png"), fullPage: true });
  log(`backup ${made} complete and listed`);

  await page.click("#tabs a[data-tab=overview]");
  await page.locator("[data-field=latest-name]").filter({ hasText: made }).waitFor();
  equal(await page.textContent("[data-field=count-complete]"), String(counts.complete + 1), "complete backups after the new one");
  equal(await page.textContent("[data-field=last-good-name]"), made, "last good backup after the new one");

  // The row actions, each through its confirmation dialog, checked against the API.
  await page.click("#tabs a[data-tab=backups]");
  const row = (name) => page.locator(`#backups-table tr[data-backup="${name}"]`);
  await row(made).waitFor();
  const show = async (name) => (await api(`/api/v1/backups/${name}`)).value;
  const confirm = async () => {
    await page.locator("#confirm[open]").waitFor();
    await page.click("#confirm-ok");
    await page.locator("#confirm[open]").waitFor({ state: "detached" });
  };

  // Pin, then a delete of the pinned backup is refused and says why.
  await row(made).locator("[data-action=pin]").click();
  await confirm();
  await row(made).locator("[data-field=pin]").filter({ hasText: "pinned" }).waitFor();
  equal((await show(made)).pinned, true, `${made} pinned in the API`);
  await row(made).locator("[data-action=delete]").click();
  await page.locator("#confirm[open]").waitFor();
  check(await page.locator("#confirm-ok").isDisabled(), "deleting waits for the name to be typed");
  await page.fill("[data-field=type-to-confirm]", made);
  await confirm();
  await page.locator(".toast.bad").filter({ hasText: /pinned/i }).waitFor();
  equal(await row(made).count(), 1, `rows of the pinned ${made} after a refused delete`);
  await row(made).locator("[data-action=unpin]").click();
  await confirm();
  await row(made).locator("[data-field=pinned]").filter({ hasText: "no" }).waitFor();
  equal((await show(made)).pinned, false, `${made} unpinned in the API`);
  log("pin, refused delete, unpin");

  // Verify, reading every pack: the outcome appears in the list.
  await row(made).locator("[data-action=verify]").click();
  await page.locator("#confirm[open]").waitFor();
  await page.check("#confirm input[name=read_data]");
  await confirm();
  await row(made).locator("[data-field=verified-outcome]").waitFor({ timeout: LONG });
  const verification = (await show(made)).verification;
  check(verification && verification.ok, `${made} verified ok in the API: ${JSON.stringify(verification)}`);
  equal(await row(made).locator("[data-field=verified-outcome]").textContent(), "ok", `${made} verification`);
  check((await row(made).locator("[data-field=verified]").textContent()).includes(verification.mode), "verification mode shown");
  await page.locator(".toast.ok").filter({ hasText: "passed" }).waitFor();
  log(`verified (${verification.mode})`);

  // Delete the failed backup.
  const failedName = backups.find((b) => b.status === "failed").name;
  await row(failedName).locator("[data-action=delete]").click();
  await page.locator("#confirm[open]").waitFor();
  await page.fill("[data-field=type-to-confirm]", failedName);
  await confirm();
  await row(failedName).waitFor({ state: "detached", timeout: LONG });
  const remaining = (await api("/api/v1/backups")).value.map((b) => b.name);
  check(!remaining.includes(failedName), `${failedName} still listed by the API after the delete`);
  log(`deleted ${failedName}`);

  // Restore db2 in place after damaging it: its file comes back, a stray file goes.
  const db2 = env("STRATA_DB2");
  const original = readFileSync(join(db2, "table.bin"));
  writeFileSync(join(db2, "table.bin"), Buffer.alloc(4096, 0x55));
  writeFileSync(join(db2, "stray.txt"), "not in the backup");
  await row(made).locator("[data-action=restore]").click();
  await page.locator("#confirm[open]").waitFor();
  await page.selectOption("#confirm select[name=node]", "db2");
  await page.fill("[data-field=type-to-confirm]", made);
  await confirm();
  const restore = page.locator("#panel-live .operation").filter({ hasText: "Restore" });
  await restore.waitFor();
  const restoreDeadline = Date.now() + LONG;
  for (;;) {
    const state = await restore.locator(".operation-head [data-field=state]").textContent();
    if (state !== "running") {
      equal(state, "succeeded", "state of the restore started from the page");
      break;
    }
    check(Date.now() < restoreDeadline, "restore still running");
    await page.waitForTimeout(100);
  }
  const restoreId = await restore.getAttribute("data-op-id");
  const restored = (await api(`/api/v1/operations/${restoreId}`)).value;
  equal(restored.state, "succeeded", "state of the restore in the API");
  const report = restored.result.nodes.find((n) => n.node === "db2").report;
  check(report.removed >= 1, `the restore removed the stray file: ${JSON.stringify(report)}`);
  equal(await restore.locator("[data-node=db2] [data-field=progress]").textContent(),
    `${report.files} ${report.files === 1 ? "file" : "files"} · ${bytes(report.bytes)} · ${report.files_kept} kept · ${report.removed} removed`,
    "db2's restore figures");
  check(readFileSync(join(db2, "table.bin")).equals(original), "db2/table.bin restored byte for byte");
  check(!existsSync(join(db2, "stray.txt")), "the stray file in db2 was removed by the restore");
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "restore-done.png"), fullPage: true });
  log("restored db2 in place");

  // A restore of one path only: that file comes back, what lies outside the path stays.
  writeFileSync(join(db2, "table.bin"), Buffer.alloc(4096, 0x66));
  writeFileSync(join(db2, "outside.txt"), "outside the restored path");
  await row(made).locator("[data-action=restore]").click();
  await page.locator("#confirm[open]").waitFor();
  await page.selectOption("#confirm select[name=node]", "db2");
  await page.fill("#confirm input[name=include]", "table.bin");
  await page.fill("[data-field=type-to-confirm]", made);
  await confirm();
  const pathDeadline = Date.now() + LONG;
  let partial;
  for (;;) {
    const ops = (await api("/api/v1/operations")).value.filter((o) => o.kind === "restore");
    if (ops.length > 1 && ops[0].id !== restoreId && ops[0].state !== "running") {
      partial = ops[0];
      break;
    }
    check(Date.now() < pathDeadline, "the restore of one path never ended");
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  equal(partial.state, "succeeded", "state of the restore of one path");
  check(readFileSync(join(db2, "table.bin")).equals(original), "db2/table.bin restored by the path restore");
  check(existsSync(join(db2, "outside.txt")), "a file outside the restored path was left alone");
  log("restored one path of db2");

  // A restore of the topology component alone onto an emptied etcd, renaming db1 to
  // newdb1: a rule that is not OLD=NEW keeps the dialog open and sends nothing.
  const members = await etcdKeys("/service/pg/");
  check(members.length === 1 && members[0][0] === "/service/pg/members/db1", `etcd before: ${JSON.stringify(members)}`);
  await etcd("/v3/kv/deleterange", { key: b64("/service/pg/"), range_end: b64(prefixEnd("/service/pg/")) });
  writeFileSync(join(db2, "table.bin"), Buffer.alloc(4096, 0x77));
  const restoresBefore = (await api("/api/v1/operations")).value.filter((o) => o.kind === "restore").map((o) => o.id);
  // Every component the backup holds; one absent from it (`reports`, optional and down)
  // has nothing to restore and is not offered.
  const madeComponents = (await show(made)).components.filter((c) => c.status !== "absent").map((c) => c.name);
  check((await show(made)).components.some((c) => c.status === "absent"), "the backup has an absent component");
  await row(made).locator("[data-action=restore]").click();
  await page.locator("#confirm[open]").waitFor();
  equal((await page.locator("#confirm [data-field=restore-components] input[name=components]").evaluateAll((boxes) => boxes.map((b) => b.value))).join(),
    madeComponents.join(), "components offered by the restore dialog");
  await page.check('#confirm [data-field=restore-components] input[value="topology"]');
  await page.fill("#confirm textarea[name=rename]", "db1");
  await page.fill("[data-field=type-to-confirm]", made);
  await page.click("#confirm-ok");
  await page.locator("#confirm [data-field=dialog-error]").filter({ hasText: "not OLD=NEW" }).waitFor();
  check(await page.locator("#confirm[open]").count() === 1, "a bad rename rule keeps the dialog open");
  await page.fill("#confirm textarea[name=rename]", "db1=newdb1\n\n");
  await confirm();
  const componentDeadline = Date.now() + LONG;
  let chosen;
  for (;;) {
    const ops = (await api("/api/v1/operations")).value.filter((o) => o.kind === "restore" && !restoresBefore.includes(o.id));
    check(ops.length <= 1, `one restore started: ${ops.map((o) => o.id)}`);
    const refused = page.locator(".toast.bad").filter({ hasText: "Restore failed" });
    if (await refused.count()) check(false, `the server refused the restore: ${await refused.first().textContent()}`);
    if (ops.length && ops[0].state !== "running") {
      chosen = ops[0];
      break;
    }
    check(Date.now() < componentDeadline, "the restore of the topology component never ended");
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  equal(chosen.state, "succeeded", `state of the restore of the topology component (${chosen.error || ""})`);
  equal(chosen.result.nodes.map((n) => n.source).join(), "e1", "nodes restored with only topology chosen");
  const written = chosen.result.nodes[0].report.written;
  check(/1 new/.test(written), `the etcd restore wrote the renamed key: ${written}`);
  const renamed = await etcdKeys("/service/pg/");
  equal(renamed.map(([k]) => k).join(), "/service/pg/members/newdb1", "etcd keys after the restore with db1=newdb1");
  check(renamed[0][1].includes('"name":"newdb1"'), `the rename applied inside the value: ${renamed[0][1]}`);
  check(!readFileSync(join(db2, "table.bin")).equals(original), "the data component was not restored");
  const componentCard = page.locator(`#panel-live [data-op-id="${chosen.id}"]`);
  await componentCard.locator(".operation-head [data-field=state]").filter({ hasText: "succeeded" }).waitFor({ timeout: LONG });
  equal(await componentCard.locator("[data-node=e1] [data-field=written]").textContent(), written, "what the etcd restore wrote, on the page");
  writeFileSync(join(db2, "table.bin"), original);
  log(`restored the topology component alone with db1=newdb1: ${written}`);

  // Activity: the operations and the audit log as the API has them.
  await page.click("#tabs a[data-tab=activity]");
  const operations = (await api("/api/v1/operations")).value;
  await page.locator(`#panel-recent-ops tr[data-op="${operations[0].id}"]`).waitFor();
  equal(await page.locator("#panel-recent-ops tbody tr").count(), operations.length, "operations listed");
  const audit = (await api("/api/v1/audit?since=7d")).value;
  await page.locator("#panel-audit tbody tr").first().waitFor();
  equal(await page.locator("#panel-audit tbody tr").count(), audit.length, "audit entries listed");
  for (const action of ["pin", "unpin", "verify", "delete", "backup", "restore"]) {
    check(await page.locator(`#panel-audit tr[data-audit-action="${action}"]`).count() > 0, `audit shows ${action}`);
  }
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "activity.png"), fullPage: true });
  log(`activity: ${operations.length} operations, ${audit.length} audit entries`);

  // Clean up by the server's retention policy (keep_last = 1): the preview shows every
  // backup's decision, confirming removes all but the newest.
  await page.click("#tabs a[data-tab=backups]");
  await row(made).waitFor();
  const listed = (await api("/api/v1/backups")).value;
  check(listed.length === 2, `two complete backups before the clean-up: ${listed.map((b) => b.name)}`);
  await page.click("#cleanup");
  await page.locator("#confirm[open]").waitFor();
  for (const b of listed) {
    equal(await page.locator(`#confirm tr[data-cleanup="${b.name}"] [data-field=decision]`).textContent(),
      b.name === made ? "keep" : "remove", `clean-up decision for ${b.name}`);
  }
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "cleanup-preview.png") });
  await confirm();
  await page.locator(".toast.ok").filter({ hasText: "Clean-up removed 1 backup" }).waitFor({ timeout: LONG });
  for (const b of listed.filter((b) => b.name !== made)) {
    await row(b.name).waitFor({ state: "detached" });
  }
  equal((await api("/api/v1/backups")).value.map((b) => b.name).join(), made, "backups after the clean-up");
  log("cleaned up by the retention policy");

  // Configuration: as the server sees it; the secret option masked, and neither it nor
  // the token anywhere in the page.
  await page.click("#tabs a[data-tab=configuration]");
  const config = (await api("/api/v1/config")).value;
  for (const name of Object.keys(config.storages)) {
    await page.locator(`#panel-storages tr[data-storage="${name}"]`).waitFor();
  }
  // Each node's plugin is its component's: the etcd member is `etcd`, not the top-level
  // plugin (`files`).
  check(config.plugin === "files" && config.nodes.some((n) => n.name === "e1"), "the test has an etcd node beside a files top-level plugin");
  for (const node of config.nodes) {
    const cell = page.locator(`#panel-config-nodes tr[data-node="${node.name}"] [data-field=plugin]`);
    await cell.waitFor();
    const component = componentOfNode(config, node.name);
    equal(await cell.textContent(), component.plugin, `plugin of node ${node.name}`);
    equal(await page.textContent(`#panel-config-nodes tr[data-node="${node.name}"] [data-field=component]`), component.name, `component of node ${node.name}`);
  }
  equal(await page.textContent('#panel-config-nodes tr[data-node="e1"] [data-field=plugin]'), "etcd", "the etcd node's plugin");
  check(await page.locator("#view-configuration [data-field=unavailable]").count() === 0, "no panel of the configuration says 'not available'");
  const secret = env("STRATA_SECRET");
  equal(config.storages.cold.options.aws_secret_access_key, "***", "the secret option in the API");
  equal(await page.textContent('#panel-storages tr[data-storage="cold"] dd[data-key="aws_secret_access_key"]'), "***",
    "the secret option on the configuration page");
  await page.click("#panel-config-raw summary");
  check((await page.textContent("[data-field=config-json]")).includes('"aws_secret_access_key": "***"'), "the secret masked in the full configuration");
  const html = await page.content();
  const text = await page.locator("body").innerText();
  for (const [what, value] of [["the secret", secret], ["the token", token]]) {
    check(!html.includes(value) && !text.includes(value), `${what} appears in the configuration page`);
  }
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "configuration.png"), fullPage: true });

  // Signing out forgets the token.
  await page.click("#logout");
  await page.locator("#token").waitFor({ state: "visible" });
  equal(await page.evaluate(() => sessionStorage.length), 0, "session storage after signing out");

  check(!(await page.content()).includes(secret), "the secret appears in the page");
  check(problems.length === 0, `problems in the page:\n${problems.join("\n")}`);
  log("all checks passed");
} catch (error) {
  exitCode = 1;
  console.error(error.stack || String(error));
  if (problems.length) console.error(`also:\n${problems.join("\n")}`);
} finally {
  await browser.close();
}
process.exit(exitCode);
