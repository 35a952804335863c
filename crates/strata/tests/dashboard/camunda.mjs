// The dashboard with a Camunda 8 component, in headless Chromium against a running
// `strata server` (started by crates/strata/tests/dashboard.rs with fakes of Camunda's
// engines): the page loads without a request the server refuses (no archiver runs on the
// host: the WAL card says so, the API answers 200); the Components view shows the
// plugin's own exporting pause/resume pair, with the pause the test left, and no pause
// "no longer declared"; a backup's details show every snapshot name in
// full, inside the dialog; a restore of camunda from the page says it is a checklist
// (not "succeeded") and draws the checklist the API returned.
//
// STRATA_URL, STRATA_TOKEN, STRATA_CHROMIUM, STRATA_TEST_NODE_MODULES, STRATA_SCREENSHOTS,
// STRATA_BACKUP (the backup the test made). Exit 0 when every check held.

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
const shots = env("STRATA_SCREENSHOTS");
const backup = env("STRATA_BACKUP");
mkdirSync(shots, { recursive: true });
const require = createRequire(join(env("STRATA_TEST_NODE_MODULES"), "resolve-from-here.js"));
const { chromium } = require("playwright-core");

const LONG = 180_000;
const log = (...args) => console.log("[camunda]", ...args);

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

function equal(actual, expected, what) {
  check(actual === expected, `${what}: page shows ${JSON.stringify(actual)}, API says ${JSON.stringify(expected)}`);
}

async function api(path) {
  const response = await fetch(base + path, { headers: { Authorization: `Bearer ${token}` } });
  check(response.ok, `GET ${path}: HTTP ${response.status}`);
  return response.json();
}

const browser = await chromium.launch({ executablePath: env("STRATA_CHROMIUM"), args: ["--no-sandbox"] });
const problems = [];
// Every answer of 400 or more the page got, and every error it logged: none is expected
// (the test signs in with the right token and asks nothing the server refuses).
const refused = [];
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, timezoneId: "UTC" });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) refused.push(`${response.status()} ${response.request().method()} ${new URL(response.url()).pathname}`);
  });

  await page.goto(`${base}/ui/`);
  await page.locator("#token").waitFor({ state: "visible" });
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
  await page.locator("[data-field=count-complete]").waitFor();
  await page.locator("#login").waitFor({ state: "hidden" });

  // No archiver on this host: the API says so with a 200, the card says so, the page
  // logs nothing.
  const archiver = await api("/api/v1/wal/archiver");
  equal(archiver.listening, false, "the API's archiver state");
  check(typeof archiver.detail === "string" && archiver.detail.includes("no WAL archiver listens"), `the API says why: ${JSON.stringify(archiver)}`);
  await page.locator("[data-stat=wal-lag] [data-field=wal-none]").waitFor();
  equal(await page.textContent("[data-stat=wal-lag] [data-field=wal-none]"), "no archiver on this host", "the WAL card");
  check(!(await page.getAttribute("[data-stat=wal-lag]", "class")).includes("bad"), "no archiver is not shown as a failure");
  await page.locator("#panel-check [data-check]").first().waitFor();
  check(refused.length === 0, `requests refused while the overview loaded:\n${refused.join("\n")}`);
  check(problems.length === 0, `errors while the overview loaded:\n${problems.join("\n")}`);
  log("overview loads with no refused request; the WAL card says no archiver runs");

  // An optional component that is down: its check passes with a warning, and the summary
  // says so instead of "All checks passed" beside it.
  const checked = await api("/api/v1/check");
  const down = checked.checks.find((c) => c.name === "component ledger");
  check(down && down.ok && down.warning, `the API's check of the optional component that is down: ${JSON.stringify(down)}`);
  equal(await page.getAttribute('#panel-check li[data-check="component ledger"]', "class"), "warn", "the down component's check");
  const said = await page.textContent("#panel-check [data-field=check-summary]");
  equal(said, `All ${checked.checks.length} checks passed, 1 with a warning`, "the check's summary");
  log("an optional component that is down is a warning, said in the summary");

  // Components: the plugin's exporting pause/resume pair under camunda, with the pause the
  // test left (its resume fails: the fake's resume is down), and nothing "no longer
  // declared".
  const config = await api("/api/v1/config");
  const implied = (config.plugin_hooks || []).filter((h) => h.source === "implied" && h.component === "camunda");
  equal(implied.map((h) => h.name).join(), "camunda exporting", "the implied hooks the API names");
  check(/^POST http:\/\/127\.0\.0\.1:\d+\/\*\*\*$/.test(implied[0].pause), `the pause action, masked past its host: ${implied[0].pause}`);
  const status = await api("/api/v1/status");
  const pause = (status.paused || []).find((p) => p.hook === "camunda exporting");
  check(pause, `the test's pause of camunda exporting in the status: ${JSON.stringify(status.paused)}`);
  await page.click("#tabs a[data-tab=components]");
  const card = page.locator('#components-list > article[data-component="camunda"]');
  await card.waitFor();
  const row = card.locator('tr[data-hook="camunda exporting"]');
  equal(await row.count(), 1, "the exporting pair in camunda's hooks");
  const action = await row.locator("td").nth(2).textContent();
  check(action.includes(`pause ${implied[0].pause}`) && action.includes(`resume ${implied[0].resume}`), `the pair's actions: ${action}`);
  equal(await row.locator("[data-field=hook-source]").textContent(), "issued by the plugin itself", "where the pair comes from");
  const state = await row.locator("[data-field=pause-state]").textContent();
  check(state.includes(`by operation ${pause.operation}`), `the pause shown on its hook: ${state}`);
  equal(await card.locator("[data-field=stray-pauses]").count(), 0, "pauses listed as no longer declared");
  check(!(await card.textContent()).includes("no longer declared"), "camunda's card names no undeclared hook");
  equal(await page.locator("#panel-other-pauses [data-paused]").count(), 0, "pauses outside the components");
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "camunda-components.png"), fullPage: true });
  log("camunda's exporting pair and its pause shown on the component");

  // A backup's details: every snapshot name whole, inside the dialog, not scrolled away.
  const summary = await api(`/api/v1/backups/${backup}`);
  const camunda = summary.components.find((c) => c.name === "camunda");
  const names = Object.entries(camunda.external).filter(([k]) => k.endsWith("_snapshots"))
    .flatMap(([, v]) => (Array.isArray(v) ? v : String(v).split(","))).filter(Boolean);
  check(names.length >= 3, `the backup recorded snapshots: ${JSON.stringify(camunda.external)}`);
  await page.click("#tabs a[data-tab=backups]");
  await page.locator(`#backups-table tr[data-backup="${backup}"] [data-field=name]`).click();
  const dialog = page.locator("#confirm[open]");
  await dialog.waitFor();
  const shown = dialog.locator(`tr[data-component="camunda"] [data-snapshots] code`);
  equal((await shown.allTextContents()).sort().join("\n"), [...names].sort().join("\n"), "snapshot names in the details");
  const boxes = await shown.evaluateAll((codes) => codes.map((code) => {
    const dialog = code.closest("dialog").getBoundingClientRect();
    const wrap = code.closest(".table-wrap");
    return {
      name: code.textContent,
      inside: [...code.getClientRects()].every((r) => r.left >= dialog.left - 0.5 && r.right <= dialog.right + 0.5),
      scrolls: wrap ? wrap.scrollWidth > wrap.clientWidth : false,
    };
  }));
  for (const box of boxes) {
    check(box.inside, `snapshot ${box.name} runs past the dialog's edge`);
    check(!box.scrolls, `snapshot ${box.name} widens its table past the dialog (the table scrolls)`);
  }
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "camunda-details.png") });
  await page.click("#confirm-ok");
  await dialog.waitFor({ state: "detached" });
  log(`${names.length} snapshot names shown whole`);

  // A restore of camunda alone from the page: a checklist, drawn in full, not "succeeded".
  const before = (await api("/api/v1/operations")).filter((o) => o.kind === "restore").map((o) => o.id);
  // Every toast the page shows from here on (each goes away after a few seconds).
  await page.evaluate(() => {
    window.toastsSeen = [];
    new MutationObserver((changes) => {
      for (const change of changes) for (const node of change.addedNodes) window.toastsSeen.push(node.textContent);
    }).observe(document.querySelector("#toasts"), { childList: true });
  });
  await page.locator(`#backups-table tr[data-backup="${backup}"] [data-action=restore]`).click();
  await page.locator("#confirm[open]").waitFor();
  // The optional component absent from the backup has nothing to restore: not offered.
  const offered = await page.locator("#confirm [data-field=restore-components] input[name=components]")
    .evaluateAll((boxes) => boxes.map((b) => b.value));
  check(offered.includes("camunda") && !offered.includes("ledger"), `components offered: ${offered.join()}`);
  await page.check('#confirm [data-field=restore-components] input[value="camunda"]');
  await page.fill("[data-field=type-to-confirm]", backup);
  await page.click("#confirm-ok");
  await page.locator("#confirm[open]").waitFor({ state: "detached" });
  const deadline = Date.now() + LONG;
  let op;
  for (;;) {
    const ops = (await api("/api/v1/operations")).filter((o) => o.kind === "restore" && !before.includes(o.id));
    if (ops.length && ops[0].state !== "running") {
      op = ops[0];
      break;
    }
    check(Date.now() < deadline, "the restore of camunda never ended");
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  equal(op.state, "succeeded", `the restore's state in the API (${op.error || ""})`);
  const listed = (op.result.components || []).find((c) => c.component === "camunda");
  check(listed && listed.checklist_steps > 0 && listed.detail, `the API's checklist: ${JSON.stringify(op.result)}`);
  const opCard = page.locator(`#panel-live [data-op-id="${op.id}"]`);
  await opCard.locator("[data-field=checklist]").waitFor({ timeout: LONG });
  const badge = await opCard.locator(".operation-head [data-field=state]").textContent();
  equal(badge, "checklist to run", "the restore's state on its card");
  equal(await opCard.locator('[data-component="camunda"] [data-field=checklist]').textContent(), listed.detail, "the checklist on the card");
  check((await opCard.locator('[data-component="camunda"] [data-field=checklist-summary]').textContent())
    .includes(`restore checklist (${listed.checklist_steps} steps)`), "the checklist's summary");
  check(!(await opCard.textContent()).includes("succeeded"), `the card says succeeded: ${await opCard.textContent()}`);
  await page.waitForFunction(() => window.toastsSeen.some((text) => text.includes("checklist")));
  const toasts = await page.evaluate(() => window.toastsSeen);
  check(toasts.every((text) => !text.includes("succeeded")), `a toast says succeeded: ${toasts.join(" | ")}`);
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(shots, "camunda-restore.png"), fullPage: true });
  log(`restore ${op.id}: a checklist of ${listed.checklist_steps} steps shown`);

  check(refused.length === 0, `requests refused:\n${refused.join("\n")}`);
  check(problems.length === 0, `problems in the page:\n${problems.join("\n")}`);
  log("all checks passed");
} catch (error) {
  exitCode = 1;
  console.error(error.stack || String(error));
  if (problems.length) console.error(`also:\n${problems.join("\n")}`);
  if (refused.length) console.error(`refused:\n${refused.join("\n")}`);
} finally {
  await browser.close();
}
process.exit(exitCode);
