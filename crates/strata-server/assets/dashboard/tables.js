// The Tables view: table retention policies of the server's `[tables] db`, the partitions
// each one acts on next (the plan), the last runs and changes; an edit that shows the
// plan of the edited policy (a dry run) before it is saved, a removal, and a run that
// shows what it will do (the plan) before it acts. Everything comes from
// `/api/v1/tables`; the engine on the server plans, saves and runs, this page only shows.

import { h, badge, statusBadge, table, empty } from "./dom.js";

/** History rows the view shows. */
const HISTORY_ROWS = 25;

const UNITS = [["y", 365 * 86400], ["w", 7 * 86400], ["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];

/** A policy's duration as `strata tables list` writes it (`90d`, `1d12h`, `INF`) from the
 * API's `{"After": seconds}` or `"Forever"`. */
export function duration(after) {
  if (!after || after === "Forever" || after.After === undefined) return "INF";
  let left = after.After;
  if (left === 0) return "0s";
  let text = "";
  for (const [unit, size] of UNITS) {
    // Weeks only when the whole rest is weeks, as the engine writes it: `10d`, not `1w3d`.
    if (unit === "w" && left % size !== 0) continue;
    if (left >= size) {
      text += `${Math.floor(left / size)}${unit}`;
      left %= size;
    }
  }
  return text;
}

/** A policy's options, in one line. */
function options(p) {
  const parts = [];
  if (p.tablespace) parts.push(`to ${p.tablespace}`);
  if (p.target) parts.push(`to ${p.target} as ${p.archive_format || "csv"}`);
  if (p.archive_schema) parts.push(`to schema ${p.archive_schema}`);
  if (p.rollup) parts.push(`into ${p.rollup.into}`);
  return parts.join(", ");
}

/** The table name as the API writes it (`schema.table`). */
const tableOf = (p) => `${p.table.schema}.${p.table.name}`;

/** The first coming expiry of each policy, by id. */
function nextByPolicy(outlooks) {
  const next = new Map();
  for (const t of outlooks) {
    for (const e of t.next || []) {
      if (!next.has(e.policy_id)) next.set(e.policy_id, e);
    }
  }
  return next;
}

/** Steps due now of each policy, by id. */
function dueByPolicy(outlooks) {
  const due = new Map();
  for (const t of outlooks) {
    for (const s of (t.plan && t.plan.steps) || []) {
      due.set(s.policy_id, (due.get(s.policy_id) || 0) + 1);
    }
  }
  return due;
}

function policyRows(ui, policies, outlooks) {
  const next = nextByPolicy(outlooks);
  const due = dueByPolicy(outlooks);
  return policies.map((p) => {
    const coming = next.get(p.id);
    return h("tr", { "data-policy-id": p.id },
      h("td", { class: "num" }, String(p.id)),
      h("td", {}, h("code", { "data-field": "table" }, tableOf(p)), h("span", { class: "muted small" }, ` (${p.column})`)),
      h("td", {}, h("strong", { "data-field": "action" }, p.action), " ", h("span", { class: "muted small" }, options(p))),
      h("td", { "data-field": "after" }, duration(p.after)),
      h("td", { class: "num", "data-field": "keep" }, String(p.keep)),
      h("td", { "data-field": "tags" }, (p.tags || []).map((t) => badge(t, "neutral", "tag"))),
      h("td", {}, p.enabled ? badge("enabled", "ok", "enabled") : badge("disabled", "warn", "enabled")),
      h("td", { "data-field": "due", class: "num" }, String(due.get(p.id) || 0)),
      h("td", { "data-field": "next" }, coming
        ? [h("code", {}, coming.partition), h("span", { class: "muted small" }, ` ${ui.dateTime(coming.at)}`)]
        : "—"),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "small", "data-action": "edit-policy", onclick: () => editPolicy(ui, p) }, "Edit…"),
        h("button", { type: "button", class: "small danger-text", "data-action": "remove-policy", onclick: () => removePolicy(ui, p) }, "Remove…")));
  });
}

/** One table's plan: the steps a run now would take, then what expires next. */
function outlookBlock(ui, t) {
  const steps = (t.plan && t.plan.steps) || [];
  const problems = (t.plan && t.plan.problems) || [];
  return h("div", { class: "table-outlook", "data-table": t.table },
    h("h3", {}, h("code", {}, t.table)),
    t.error ? h("p", { class: "error" }, t.error) : null,
    problems.map((p) => h("p", { class: "error" }, p)),
    steps.length
      ? table(["Policy", "Action", "Partition", "Upper bound"], steps.map((s) =>
        h("tr", { "data-step-policy": s.policy_id, "data-field": "step" },
          h("td", { class: "num" }, String(s.policy_id)),
          h("td", {}, s.action),
          h("td", {}, h("code", {}, s.partition || "rows")),
          h("td", { class: "muted small" }, s.bound || ""))))
      : h("p", { class: "muted", "data-field": "nothing-due" }, "Nothing has expired: a run now would do nothing."),
    (t.next || []).length
      ? table(["Policy", "Action", "Partition", "Expires at"], t.next.map((e) =>
        h("tr", { "data-next-policy": e.policy_id, "data-field": "expiry" },
          h("td", { class: "num" }, String(e.policy_id)),
          h("td", {}, e.action),
          h("td", {}, h("code", {}, e.partition)),
          h("td", { "data-field": "at" }, ui.dateTime(e.at)))))
      : null);
}

function historyRows(ui, entries) {
  return entries.map((e) =>
    h("tr", { "data-history-what": e.what, "data-history-who": e.who, "data-history-policy": e.policy_id ?? "" },
      h("td", { class: "nowrap" }, ui.dateTime(e.at)),
      h("td", {}, e.who),
      h("td", {}, h("strong", {}, e.what)),
      h("td", {}, e.table ? h("code", {}, e.table) : "—"),
      h("td", { class: "num" }, e.policy_id ?? "—"),
      h("td", {}, statusBadge(e.outcome, "outcome")),
      h("td", { class: "muted small" }, e.detail || "")));
}

/** Loads the view. */
export async function loadTables(ui) {
  const [policies, plan, history] = await Promise.all([
    ui.settle(ui.api.get("/api/v1/tables/policies")),
    ui.settle(ui.api.get("/api/v1/tables/plan")),
    ui.settle(ui.api.get(`/api/v1/tables/history?limit=${HISTORY_ROWS}`)),
  ]);
  const outlooks = plan.ok ? plan.value : [];
  if (policies.ok) {
    ui.fill("panel-table-policies", [
      h("div", { class: "toolbar" },
        h("button", { type: "button", "data-action": "add-policy", onclick: () => addPolicy(ui) }, "Add policy…")),
      policies.value.length
        ? table([["ID", "num"], "Table", "Action", "After", ["Keep", "num"], "Tags", "State", ["Due now", "num"], "Next expiry", ""],
          policyRows(ui, policies.value, outlooks))
        : empty("No table retention policies (Add policy…, strata tables add, or strata ttl)."),
    ]);
  } else {
    ui.fill("panel-table-policies", ui.failure(policies.error, "GET /api/v1/tables/policies"));
  }
  if (plan.ok) {
    ui.fill("panel-table-plan", outlooks.length
      ? [h("div", { class: "toolbar" },
        h("button", { type: "button", class: "primary", "data-action": "run-tables", onclick: () => runPolicies(ui) }, "Run now…")),
      ...outlooks.map((t) => outlookBlock(ui, t))]
      : empty("No policies, no plan."));
  } else {
    ui.fill("panel-table-plan", ui.failure(plan.error, "GET /api/v1/tables/plan"));
  }
  if (history.ok) {
    ui.fill("panel-table-history", history.value.length
      ? table(["Time", "Who", "What", "Table", ["Policy", "num"], "Outcome", "Detail"], historyRows(ui, history.value))
      : empty("No runs or changes yet."));
  } else {
    ui.fill("panel-table-history", ui.failure(history.error, "GET /api/v1/tables/history"));
  }
}

/** The edit the form asks for: only what differs from the policy is sent. */
function editBody(values, p) {
  const body = {};
  const after = String(values.get("after") || "").trim();
  if (after && after !== duration(p.after)) body.after = after;
  const keep = Number(values.get("keep"));
  if (Number.isInteger(keep) && keep !== p.keep) body.keep = keep;
  const tags = String(values.get("tags") || "").split(",").map((t) => t.trim()).filter(Boolean);
  if (tags.join(",") !== (p.tags || []).join(",")) body.tags = tags;
  const enabled = values.get("enabled") === "on";
  if (enabled !== p.enabled) body.enabled = enabled;
  return body;
}

function field(label, input) {
  return h("label", { class: "field" }, label, input);
}

/** The dialog's answer to a dry run: the edited policy and its table's plan. */
function preview(ui, outcome) {
  const p = outcome.policy;
  return h("div", { "data-field": "dry-run-plan" },
    h("p", {}, "Dry run, nothing saved: policy ", h("strong", {}, String(p.id)), " would ",
      h("strong", {}, p.action), " after ", h("strong", { "data-field": "dry-run-after" }, duration(p.after)),
      `, keeping ${p.keep}. Press Save to apply it.`),
    outlookBlock(ui, outcome.outlook));
}

/** Edits policy `p`: the first press shows the dry run, a press with the same values
 * saves. Changing a value after the preview previews again. */
function editPolicy(ui, p) {
  let previewed = null;
  const body = h("div", { class: "form", "data-field": "edit-policy-form" },
    h("p", { class: "muted" }, "Policy ", h("strong", {}, String(p.id)), " on ", h("code", {}, tableOf(p)),
      ` (${p.action}). The plan of the edited policy is shown first; nothing is saved until you press Save.`),
    field("Keep data for (90d, 12w, 1y, INF)", h("input", { type: "text", name: "after", value: duration(p.after), required: true, spellcheck: "false", "data-field": "edit-after" })),
    field("Keep at least this many partitions", h("input", { name: "keep", type: "number", min: 1, value: p.keep, "data-field": "edit-keep" })),
    field("Tags (comma-separated)", h("input", { type: "text", name: "tags", value: (p.tags || []).join(", "), spellcheck: "false", "data-field": "edit-tags" })),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "enabled", checked: p.enabled, "data-field": "edit-enabled" }), " Enabled"));
  ui.ask({
    title: `Edit policy ${p.id}`,
    body,
    confirm: "Preview",
    working: "Asking…",
    busy: "Planning the edited policy…",
    validate: (values) => (String(values.get("after") || "").trim() ? null : "Give a duration."),
    run: async (values) => {
      const edit = editBody(values, p);
      const key = JSON.stringify(edit);
      const path = `/api/v1/tables/policies/${encodeURIComponent(p.id)}`;
      if (previewed !== key) {
        const outcome = await ui.api.patch(`${path}?dry_run=true`, edit);
        previewed = key;
        return { content: preview(ui, outcome), confirm: "Save" };
      }
      const saved = await ui.api.patch(path, edit);
      ui.refresh();
      return {
        final: true,
        content: h("p", { "data-field": "edit-saved" }, "Saved: policy ", h("strong", {}, String(saved.policy.id)),
          ` now keeps data for ${duration(saved.policy.after)}. The change is in the history.`),
        notice: [`Policy ${saved.policy.id} saved`, "ok"],
      };
    },
  });
}

/** Removes policy `p` once confirmed. */
async function removePolicy(ui, p) {
  const answer = await ui.ask({
    title: `Remove policy ${p.id}`,
    confirm: "Remove policy",
    danger: true,
    body: h("p", {}, "Policy ", h("strong", {}, String(p.id)), " (", h("strong", {}, p.action), " after ",
      duration(p.after), ") stops acting on ", h("code", {}, tableOf(p)),
      ". The table and its data stay as they are; the removal is in the history."),
  });
  if (!answer) return;
  try {
    const removed = await ui.api.delete(`/api/v1/tables/policies/${encodeURIComponent(p.id)}`);
    ui.toast(`Policy ${removed.id} removed`, "ok");
  } catch (error) {
    ui.toast(`Removing policy ${p.id} failed: ${error.message}`, "bad");
  }
  ui.refresh();
}

/** One table of a run's report: its outcome, its steps, its error. */
function runTableBlock(t) {
  return h("div", { "data-run-table": t.table },
    h("p", {}, h("code", {}, t.table), " ", statusBadge(t.outcome.replaceAll("_", " "), "run-outcome"),
      t.error ? h("span", { class: "error" }, ` ${t.error}`) : null),
    (t.steps || []).length
      ? table(["Policy", "Action", "Partition", "Outcome"], t.steps.map((s) =>
        h("tr", { "data-field": "run-step" },
          h("td", { class: "num" }, String(s.policy_id)),
          h("td", {}, s.action),
          h("td", {}, h("code", {}, s.partition || "rows")),
          h("td", {}, statusBadge(s.outcome, "step-outcome")))))
      : null);
}

/** Runs the policies with a tag (or all): the first press shows the plan (what a run
 * now does, nothing recorded), a press with the same tag runs them on the server. */
function runPolicies(ui) {
  let planned = null;
  const body = h("div", { class: "form", "data-field": "run-form" },
    h("p", { class: "muted" }, "Applies the policies now, as a scheduled run would. What the run will do is shown first; nothing happens until you press Run."),
    field("Only policies with this tag (empty: every policy)", h("input", { type: "text", name: "tag", spellcheck: "false", "data-field": "run-tag" })));
  ui.ask({
    title: "Run table retention now",
    body,
    confirm: "Preview",
    working: "Asking…",
    busy: "Running…",
    run: async (values) => {
      const tag = String(values.get("tag") || "").trim();
      if (planned !== tag) {
        const query = tag ? `?tag=${encodeURIComponent(tag)}` : "";
        const outlooks = await ui.api.get(`/api/v1/tables/plan${query}`);
        planned = tag;
        const due = outlooks.reduce((n, t) => n + ((t.plan && t.plan.steps) || []).length, 0);
        return {
          content: h("div", { "data-field": "run-plan" },
            h("p", {}, `A run now takes ${due} ${due === 1 ? "step" : "steps"}`,
              tag ? [" on the policies tagged ", h("code", {}, tag)] : "", ". Press Run to apply them."),
            outlooks.map((t) => outlookBlock(ui, t))),
          confirm: "Run",
        };
      }
      const report = await ui.api.post("/api/v1/tables/run", tag ? { tags: [tag] } : {});
      ui.refresh();
      const outcome = report.tables.some((t) => t.outcome === "failed") ? "bad"
        : report.tables.some((t) => t.outcome === "busy") ? "warn" : "ok";
      return {
        final: true,
        content: h("div", { "data-field": "run-report" },
          h("p", {}, "Run ", h("strong", { "data-field": "run-id" }, String(report.run_id)), " is over:"),
          report.tables.length ? report.tables.map(runTableBlock) : h("p", { class: "muted" }, "No policy matched.")),
        notice: [`Table retention run ${report.run_id} is over`, outcome],
      };
    },
  });
}

/** The actions the add form offers, with the field their option goes in; `downsample`
 * (an aggregation to describe) is added from the CLI. */
const ADD_ACTIONS = [
  ["delete", null, ""],
  ["detach", "archive_schema", "Schema detached partitions move to (optional)"],
  ["reallocate", "tablespace", "Tablespace"],
  ["archive", "target", "Storage of the server's configuration"],
];

/** The new policy the form describes, as `POST /api/v1/tables/policies` takes it. */
function addBody(values) {
  const text = (name) => String(values.get(name) || "").trim();
  const body = { table: text("table"), column: text("column"), action: text("action"), after: text("after") };
  const keep = Number(values.get("keep"));
  if (Number.isInteger(keep) && keep > 0 && keep !== 1) body.keep = keep;
  const tags = text("tags").split(",").map((t) => t.trim()).filter(Boolean);
  if (tags.length) body.tags = tags;
  const option = text("option");
  const [, field] = ADD_ACTIONS.find(([action]) => action === body.action) || [];
  if (field && option) body[field] = option;
  return body;
}

/** Adds a policy: the first press shows the policy and its table's plan with it (a dry
 * run), a press with the same values saves it. Changing a value previews again. */
function addPolicy(ui) {
  let previewed = null;
  const optionLabel = h("span", { "data-field": "add-option-label" }, "Option");
  const option = h("input", { type: "text", name: "option", spellcheck: "false", "data-field": "add-option" });
  const action = h("select", { name: "action", "data-field": "add-action" },
    ADD_ACTIONS.map(([name]) => h("option", { value: name }, name)));
  const showOption = () => {
    const [, field, label] = ADD_ACTIONS.find(([name]) => name === action.value);
    optionLabel.textContent = label;
    option.closest("label").hidden = !field;
  };
  action.addEventListener("change", showOption);
  const body = h("div", { class: "form", "data-field": "add-policy-form" },
    h("p", { class: "muted" }, "The policy is checked against its table and its plan is shown first; nothing is saved until you press Save."),
    field("Table (schema.table)", h("input", { type: "text", name: "table", required: true, spellcheck: "false", "data-field": "add-table" })),
    field("Time column (the partition key)", h("input", { type: "text", name: "column", required: true, spellcheck: "false", "data-field": "add-column" })),
    field("Action", action),
    h("label", { class: "field" }, optionLabel, option),
    field("Keep data for (90d, 12w, 1y, INF)", h("input", { type: "text", name: "after", required: true, spellcheck: "false", "data-field": "add-after" })),
    field("Keep at least this many partitions", h("input", { name: "keep", type: "number", min: 1, value: 1, "data-field": "add-keep" })),
    field("Tags (comma-separated)", h("input", { type: "text", name: "tags", spellcheck: "false", "data-field": "add-tags" })));
  showOption();
  ui.ask({
    title: "Add a table retention policy",
    body,
    confirm: "Preview",
    working: "Asking…",
    busy: "Checking the policy against its table…",
    validate: (values) => (["table", "column", "after"].every((n) => String(values.get(n) || "").trim())
      ? null : "Give the table, its time column and a duration."),
    run: async (values) => {
      const policy = addBody(values);
      const key = JSON.stringify(policy);
      if (previewed !== key) {
        const outcome = await ui.api.post("/api/v1/tables/policies?dry_run=true", policy);
        previewed = key;
        return {
          content: h("div", { "data-field": "add-dry-run" },
            h("p", {}, "Dry run, nothing saved: the policy would ", h("strong", {}, outcome.policy.action), " ",
              h("code", {}, tableOf(outcome.policy)), " after ", h("strong", {}, duration(outcome.policy.after)),
              `, keeping ${outcome.policy.keep}. Press Save to add it.`),
            outlookBlock(ui, outcome.outlook)),
          confirm: "Save",
        };
      }
      const saved = await ui.api.post("/api/v1/tables/policies", policy);
      ui.refresh();
      return {
        final: true,
        content: h("p", { "data-field": "add-saved" }, "Added: policy ", h("strong", { "data-field": "added-id" }, String(saved.policy.id)),
          " on ", h("code", {}, tableOf(saved.policy)), ". It is in the history."),
        notice: [`Policy ${saved.policy.id} added`, "ok"],
      };
    },
  });
}
