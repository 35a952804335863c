// Drives the dashboard's Tables page in headless Chromium against a running `strata server`
// whose `[tables] db` holds one policy (started by crates/strata/tests/dashboard.rs, which
// passes everything in the environment): the page lists the policy and its plan as the API
// says, an edit shows the dry-run plan first (nothing saved), then saves, and the page
// shows the change and its `policy edit` row in the history, by the token's name. A run
// shows the plan first (nothing acts), then runs, and the plan is empty after it.
//
// Then, signed in with a token of role `read`, the page lists the same policy with no Edit,
// Remove or Run button, and no page offers an action (the server would answer 403), with a
// "read only" badge instead. Last, the policy is removed from the page and a new one added
// (its dry run first).
//
// STRATA_URL, STRATA_TOKEN, STRATA_READ_TOKEN, STRATA_CHROMIUM, STRATA_TEST_NODE_MODULES,
// STRATA_SCREENSHOTS, STRATA_POLICY (the policy's id). Exit 0 when every check held; otherwise the first
// failed check is printed.

import { createRequire } from "node:module";
import { join } from "node:path";
import { mkdirSync } from "node:fs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env("STRATA_URL").replace(/\/$/, "");
const token = env("STRATA_TOKEN");
const readToken = env("STRATA_READ_TOKEN");
const shots = env("STRATA_SCREENSHOTS");
const policy = Number(env("STRATA_POLICY"));
mkdirSync(shots, { recursive: true });
const require = createRequire(join(env("STRATA_TEST_NODE_MODULES"), "resolve-from-here.js"));
const { chromium } = require("playwright-core");
const log = (...args) => console.log("[tables]", ...args);

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

function equal(actual, expected, what) {
  check(actual === expected, `${what}: page shows ${JSON.stringify(actual)}, API says ${JSON.stringify(expected)}`);
}

/** The API, asked directly: the truth the page is checked against. */
async function api(path) {
  const response = await fetch(base + path, { headers: { Authorization: `Bearer ${token}` } });
  check(response.ok, `GET ${path}: HTTP ${response.status}`);
  return response.json();
}

const browser = await chromium.launch({ executablePath: env("STRATA_CHROMIUM"), args: ["--no-sandbox"] });
const problems = [];
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, timezoneId: "UTC" });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  const origin = new URL(base).origin;
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    problems.push(`request to another site: ${url}`);
    return route.abort();
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });

  await page.goto(`${base}/ui/#tables`);
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
  await page.locator("#login").waitFor({ state: "hidden" });
  const row = page.locator(`#panel-table-policies tr[data-policy-id="${policy}"]`);
  await row.waitFor();
  log("the Tables page lists the policy");

  // The policy and its plan, as the API says.
  const [stored] = await api(`/api/v1/tables/policies?policy=${policy}`);
  const table = `${stored.table.schema}.${stored.table.name}`;
  equal(await row.locator("[data-field=table]").textContent(), table, "the policy's table");
  equal(await row.locator("[data-field=action]").textContent(), stored.action, "the policy's action");
  equal(await row.locator("[data-field=after]").textContent(), "3d", "the policy's duration");
  const [outlook] = await api(`/api/v1/tables/plan?policy=${policy}`);
  const steps = outlook.plan.steps.filter((s) => s.policy_id === policy);
  check(steps.length > 0, "the test's policy has expired partitions");
  equal(await row.locator("[data-field=due]").textContent(), String(steps.length), "steps due now");
  const block = page.locator(`#panel-table-plan [data-table="${table}"]`);
  equal(await block.locator("[data-field=step]").count(), outlook.plan.steps.length, "the plan's steps");
  equal(await block.locator("[data-field=expiry]").count(), outlook.next.length, "the next expiries");
  check(outlook.next.length > 0, "partitions expire in the coming days");
  check((await row.locator("[data-field=next]").textContent()).includes(outlook.next[0].partition),
    "the policy's next expiry names the partition the API says");
  await page.screenshot({ path: join(shots, "tables.png"), fullPage: true });

  // Edit: the first press shows the dry run, and nothing is saved.
  await row.locator("[data-action=edit-policy]").click();
  await page.locator("#confirm[open]").waitFor();
  await page.fill("[data-field=edit-after]", "1d");
  await page.click("#confirm-ok");
  const preview = page.locator("[data-field=dry-run-plan]");
  await preview.waitFor();
  equal(await preview.locator("[data-field=dry-run-after]").textContent(), "1d", "the dry run's duration");
  const previewSteps = await preview.locator("[data-field=step]").count();
  check(previewSteps > outlook.plan.steps.length, `a shorter duration expires more: ${previewSteps} steps`);
  const [unchanged] = await api(`/api/v1/tables/policies?policy=${policy}`);
  equal(JSON.stringify(unchanged.after), JSON.stringify(stored.after), "the policy after the dry run");
  equal(await page.textContent("#confirm-ok"), "Save", "the button after the preview");
  await page.screenshot({ path: join(shots, "tables-dry-run.png"), fullPage: true });
  log("the dry run shows the edited plan and saves nothing");

  // The second press saves.
  await page.click("#confirm-ok");
  await page.locator("[data-field=edit-saved]").waitFor();
  const [saved] = await api(`/api/v1/tables/policies?policy=${policy}`);
  equal(JSON.stringify(saved.after), JSON.stringify({ After: 86400 }), "the policy after saving");
  await page.click("#confirm-ok");
  await page.locator("#confirm[open]").waitFor({ state: "detached" }).catch(() => {});
  await page.click("#refresh");
  await row.locator("[data-field=after]").filter({ hasText: "1d" }).waitFor();
  const audit = page.locator(`#panel-table-history tr[data-history-what="policy edit"][data-history-policy="${policy}"]`);
  await audit.first().waitFor();
  equal(await audit.first().getAttribute("data-history-who"), "token:user", "who edited, in the history");
  await page.screenshot({ path: join(shots, "tables-saved.png"), fullPage: true });
  log("the edit is saved, shown, and in the history");

  // Run now: the first press shows what the run will do (the plan: nothing acts), the
  // second runs it on the server.
  const [due] = await api(`/api/v1/tables/plan?policy=${policy}`);
  check(due.plan.steps.length > 0, "the edited policy has steps due");
  await page.locator("[data-action=run-tables]").click();
  await page.locator("#confirm[open]").waitFor();
  await page.click("#confirm-ok");
  const runPlan = page.locator("[data-field=run-plan]");
  await runPlan.waitFor();
  equal(await runPlan.locator(`[data-table="${table}"] [data-field=step]`).count(), due.plan.steps.length, "the run's planned steps");
  const [stillDue] = await api(`/api/v1/tables/plan?policy=${policy}`);
  equal(stillDue.plan.steps.length, due.plan.steps.length, "steps due after the preview");
  equal(await page.textContent("#confirm-ok"), "Run", "the button after the run's preview");
  await page.click("#confirm-ok");
  const report = page.locator("[data-field=run-report]");
  await report.waitFor();
  equal(await report.locator("[data-field=run-step]").count(), due.plan.steps.length, "the run's steps");
  equal(await report.locator(`[data-run-table="${table}"] [data-field=run-outcome]`).textContent(), "done", "the run's outcome");
  const runId = await report.locator("[data-field=run-id]").textContent();
  const [after] = await api(`/api/v1/tables/plan?policy=${policy}`);
  equal(after.plan.steps.length, 0, "steps due after the run");
  const runs = await api(`/api/v1/tables/history?limit=100`);
  check(runs.some((e) => e.what === "run" && String(e.run_id) === runId && e.who === "token:user"),
    `run ${runId} by token:user in the history`);
  await page.screenshot({ path: join(shots, "tables-run.png"), fullPage: true });
  await page.click("#confirm-ok");
  await page.locator("#confirm[open]").waitFor({ state: "detached" }).catch(() => {});
  log("a run shows its plan first, then runs, and the history has it");

  // A read token: the same policy, and no action anywhere.
  const reader = await browser.newContext({ viewport: { width: 1440, height: 1000 }, timezoneId: "UTC" });
  const readPage = await reader.newPage();
  readPage.setDefaultTimeout(30_000);
  readPage.on("pageerror", (error) => problems.push(`page error (read token): ${error.message}`));
  await readPage.goto(`${base}/ui/#tables`);
  await readPage.fill("#token", readToken);
  await readPage.click("#login-form button[type=submit]");
  await readPage.locator("#login").waitFor({ state: "hidden" });
  await readPage.locator(`#panel-table-policies tr[data-policy-id="${policy}"]`).waitFor();
  await readPage.locator("[data-field=read-only]").waitFor({ state: "visible" });
  for (const action of ["edit-policy", "remove-policy"]) {
    equal(await readPage.locator(`tr[data-policy-id="${policy}"] [data-action=${action}]`).isVisible(), false,
      `the ${action} button for a read token`);
  }
  for (const action of ["run-tables", "add-policy"]) {
    equal(await readPage.locator(`[data-action=${action}]`).isVisible(), false, `the ${action} button for a read token`);
  }
  await readPage.goto(`${base}/ui/#backups`);
  await readPage.locator("#view-backups").waitFor({ state: "visible" });
  for (const action of ["backup-now", "verify-all", "cleanup"]) {
    equal(await readPage.locator(`[data-action=${action}]`).isVisible(), false, `the ${action} button for a read token`);
  }
  const visibleActions = await readPage.locator("[data-action]").evaluateAll((els) => els.filter((e) => e.offsetParent !== null).length);
  equal(visibleActions, 0, "actions offered to a read token");
  await readPage.screenshot({ path: join(shots, "tables-read-only.png"), fullPage: true });
  await reader.close();
  log("a read token sees the policies and is offered no action");

  // Remove: asked first, then gone from the API and the page, and in the history.
  await page.click("#refresh");
  await row.locator("[data-action=remove-policy]").click();
  await page.locator("#confirm[open]").waitFor();
  await page.click("#confirm-ok");
  await row.waitFor({ state: "detached" });
  equal((await api(`/api/v1/tables/policies?policy=${policy}`)).length, 0, "policies with the removed id");
  const removal = page.locator(`#panel-table-history tr[data-history-what="policy remove"][data-history-policy="${policy}"]`);
  await removal.first().waitFor();
  equal(await removal.first().getAttribute("data-history-who"), "token:user", "who removed, in the history");
  log("the policy is removed, and the history has it");

  // Add: the first press shows the policy and its table's plan (nothing saved), the
  // second adds it.
  await page.locator("[data-action=add-policy]").click();
  await page.locator("#confirm[open]").waitFor();
  await page.fill("[data-field=add-table]", table);
  await page.fill("[data-field=add-column]", stored.column);
  await page.selectOption("[data-field=add-action]", "detach");
  equal(await page.locator("[data-field=add-option]").isVisible(), true, "the option field of detach");
  await page.selectOption("[data-field=add-action]", "delete");
  equal(await page.locator("[data-field=add-option]").isVisible(), false, "the option field of delete");
  await page.fill("[data-field=add-after]", "2d");
  await page.fill("[data-field=add-tags]", "from-page");
  await page.click("#confirm-ok");
  const addPreview = page.locator("[data-field=add-dry-run]");
  await addPreview.waitFor();
  check((await addPreview.textContent()).includes("2d"), "the dry run names the duration");
  equal((await api(`/api/v1/tables/policies?table=${table}`)).length, 0, "policies after the add's dry run");
  equal(await page.textContent("#confirm-ok"), "Save", "the button after the add's preview");
  await page.click("#confirm-ok");
  await page.locator("[data-field=add-saved]").waitFor();
  const addedId = Number(await page.textContent("[data-field=added-id]"));
  const [added] = await api(`/api/v1/tables/policies?policy=${addedId}`);
  equal(JSON.stringify(added.after), JSON.stringify({ After: 2 * 86400 }), "the added policy's duration");
  equal(JSON.stringify(added.tags), JSON.stringify(["from-page"]), "the added policy's tags");
  equal(added.created_by, "token:user", "who added the policy");
  await page.screenshot({ path: join(shots, "tables-added.png"), fullPage: true });
  await page.click("#confirm-ok");
  await page.locator(`#panel-table-policies tr[data-policy-id="${addedId}"]`).waitFor();
  log("a policy is added after its dry run, and listed");

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
