// The marketing workspace page. Plain ES module, no build step: everything it shows comes from
// /v1/stages, /v1/flows, /v1/funnel, POST /v1/prospects, /v1/customers, /v1/customers/{id},
// /v1/customers/{id}/next-rung and /v1/health/backtest (health.js).
// Focus (which kind of loyalty to encourage and to develop): on the customer card, as a develop filter, sort and
// columns in the list, and as a small bar of kinds to develop per rung in the ladder table.
// Numbers it draws are also written into the DOM (tables, data-* attributes), for people and for tests.

import { healthFacts, runBacktest } from "./health.js";

const Chart = window.Chart;
const TOKEN_KEY = "loyalty-ladder.token";
const STAGES = ["potential", "visitor", "first_purchase", "regular", "advocate"];
const ENTERED = STAGES.slice(1); // nobody enters `potential`: everyone starts there
const TIERS = ["profitable", "middling", "unprofitable"];
const KINDS = ["financial", "procedural", "contact", "evaluative", "consultative"];
const LABEL = { first_purchase: "first purchase" };
const label = (name) => LABEL[name] ?? name;

const css = getComputedStyle(document.documentElement);
const color = (name) => css.getPropertyValue(`--${name}`).trim();
const RUNG_COLOR = Object.fromEntries(STAGES.map((s) => [s, color(`rung-${s}`)]));
const TIER_COLOR = Object.fromEntries(TIERS.map((t) => [t, color(`tier-${t}`)]));
const KIND_COLOR = Object.fromEntries(KINDS.map((k) => [k, color(`kind-${k}`)]));
const MARK = { encourage: "▲", develop: "◆" }; // as in the legend under the radar

Chart.defaults.font.family = css.fontFamily;
Chart.defaults.font.size = 13;
Chart.defaults.color = color("muted");
Chart.defaults.animation = false; // numbers should be readable at once, and screenshots deterministic

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
};

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// ---- access: ask for a token on 401, keep it for this tab's session only ---------------------------------

let tokenPrompt = null; // one prompt shared by every request that got a 401 at the same time

function askForToken(message) {
  if (tokenPrompt) return tokenPrompt;
  const dialog = $("#token-dialog");
  const error = $("#token-error");
  error.hidden = !message;
  error.textContent = message ?? "";
  $("#token-input").value = "";
  tokenPrompt = new Promise((resolve) => {
    $("#token-form").onsubmit = (ev) => {
      ev.preventDefault();
      const token = $("#token-input").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      dialog.close();
      tokenPrompt = null;
      $("#forget-token").hidden = false;
      resolve();
    };
  });
  dialog.showModal();
  return tokenPrompt;
}

// `body`: a File or string is sent as it is, with `type` as its content type; anything else as JSON
async function api(path, { accept = "application/json", method = "GET", body = undefined, type = null } = {}) {
  for (;;) {
    const headers = { Accept: accept };
    if (type) headers["Content-Type"] = type;
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const raw = body === undefined || body instanceof Blob || typeof body === "string";
    if (!raw) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { headers, method, body: raw ? body : JSON.stringify(body) });
    if (res.status === 401) {
      // a 401 that arrives after a new token was entered answers the old one: retry with the new token, and
      // neither drop it nor ask again (else a late answer would open a prompt nobody is waiting for)
      const current = sessionStorage.getItem(TOKEN_KEY);
      if (current && current !== token) continue;
      if (token) sessionStorage.removeItem(TOKEN_KEY);
      await askForToken(token ? "That token was not accepted." : null);
      continue;
    }
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail ?? detail; } catch { /* not JSON */ }
      throw new Error(`${path}: ${res.status} ${detail}`);
    }
    return res;
  }
}
const getJson = async (path) => (await api(path)).json();

// ---- the funnel: five rungs, three tiers stacked inside each ---------------------------------------------

let funnelChart = null;

async function loadFunnel() {
  const section = $("#funnel");
  section.dataset.ready = "false";
  const body = await getJson("/v1/stages");
  const rungs = [...STAGES].reverse(); // the top of the ladder on top
  const datasets = TIERS.map((tier) => ({
    label: tier,
    data: rungs.map((s) => body.stages[s].tiers[tier]),
    backgroundColor: TIER_COLOR[tier],
    borderColor: "#fff",
    borderWidth: 1,
  }));
  const config = {
    type: "bar",
    data: { labels: rungs.map(label), datasets },
    options: {
      indexAxis: "y",
      maintainAspectRatio: false,
      scales: {
        x: { stacked: true, beginAtZero: true, title: { display: true, text: "customers" }, ticks: { precision: 0 } },
        y: {
          stacked: true, title: { display: true, text: "rung" },
          ticks: { color: (ctx) => RUNG_COLOR[rungs[ctx.index]] ?? color("ink"), font: { weight: "600" } },
        },
      },
      plugins: {
        legend: { position: "bottom", title: { display: true, text: "profitability tier" } },
        tooltip: { callbacks: { footer: (items) => {
          const rung = body.stages[rungs[items[0].dataIndex]];
          return `rung total: ${rung.customers}, at risk: ${rung.at_risk}`;
        } } },
      },
      onClick: (_ev, elements) => {
        if (!elements.length) return;
        const { datasetIndex, index } = elements[0];
        showList({ stage: rungs[index], tier: TIERS[datasetIndex] });
      },
    },
  };
  if (funnelChart) funnelChart.destroy();
  funnelChart = new Chart($("#funnel-chart"), config);

  const tbody = $("#funnel-table tbody");
  tbody.replaceChildren(...STAGES.map((stage) => {
    const row = body.stages[stage];
    return el("tr", { dataset: { stage } },
      el("th", { scope: "row" }, el("span", { class: "swatch", style: `background:${RUNG_COLOR[stage]}` }), label(stage)),
      ...TIERS.map((tier) => el("td", { dataset: { stage, tier } }, String(row.tiers[tier]))),
      el("td", { class: "total", dataset: { stage, tier: "all" } }, String(row.customers)),
      el("td", { class: "at-risk", dataset: { stage, atRisk: String(row.at_risk) } },
        row.at_risk ? el("button", { type: "button", class: "link", title: `list the at-risk ${label(stage)}s` },
          String(row.at_risk)) : "0"),
      el("td", { class: "develop-cell" }, developBar(stage, row.develop)));
  }));
  tbody.querySelectorAll("td.at-risk button").forEach((button) => button.addEventListener("click", () =>
    showList({ stage: button.parentElement.dataset.stage, health: "at_risk" })));
  $("#kind-legend").replaceChildren(...KINDS.map((k) => el("li", {},
    el("span", { class: "swatch", style: `background:${KIND_COLOR[k]}` }), k)));
  $("#funnel-total").textContent = String(body.customers);
  $("#funnel-total").dataset.total = String(body.customers);
  section.dataset.total = String(body.customers);
  section.dataset.ready = "true";
}

// one rung's customers by the kind to develop, as a stacked bar; a part lists that rung's customers of that kind
function developBar(stage, counts) {
  const total = KINDS.reduce((n, k) => n + counts[k], 0);
  const parts = KINDS.filter((k) => counts[k] > 0).map((k) => {
    const part = el("span", {
      style: `width:${(100 * counts[k]) / total}%;background:${KIND_COLOR[k]}`,
      title: `${label(stage)}: ${counts[k]} to develop ${k}`,
      dataset: { kind: k, count: String(counts[k]) },
    });
    part.addEventListener("click", () => showList({ stage, develop: k }));
    return part;
  });
  return el("div", { class: "develop-bar", role: "img", dataset: { stage, develop: JSON.stringify(counts) },
    "aria-label": `${label(stage)} by kind to develop: ${KINDS.map((k) => `${k} ${counts[k]}`).join(", ")}` }, ...parts);
}

// ---- flows over time --------------------------------------------------------------------------------------

let flowsChart = null;

async function loadFlows() {
  const section = $("#flows");
  section.dataset.ready = "false";
  const bucket = $("#flows-bucket").value;
  const kind = $("#flows-kind").value;
  const body = await getJson(`/v1/flows?bucket=${encodeURIComponent(bucket)}`);
  // potential: the customers first seen in the bucket (nobody enters it by a stage change)
  const totals = Object.fromEntries(STAGES.map((r) => [r, body.series.reduce((n, b) => n + b.entered[r], 0)]));
  const config = {
    type: kind,
    data: {
      labels: body.series.map((b) => b.start),
      datasets: STAGES.map((rung) => ({
        label: label(rung),
        data: body.series.map((b) => b.entered[rung]),
        backgroundColor: RUNG_COLOR[rung],
        borderColor: RUNG_COLOR[rung],
        borderWidth: kind === "line" ? 2 : 0,
        pointRadius: kind === "line" ? 2 : 0,
        tension: 0.2,
      })),
    },
    options: {
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { stacked: kind === "bar", title: { display: true, text: `${bucket} starting (UTC)` } },
        y: {
          stacked: kind === "bar", beginAtZero: true, ticks: { precision: 0 },
          title: { display: true, text: "customers entering the rung" },
        },
      },
      plugins: { legend: { position: "bottom" } },
    },
  };
  if (flowsChart) flowsChart.destroy();
  flowsChart = new Chart($("#flows-chart"), config);
  $("#flows-summary").textContent = body.series.length
    ? `${body.series.length} ${bucket}s from ${body.series[0].start}; entered in all: `
      + STAGES.map((r) => `${label(r)} ${totals[r]}`).join(", ")
    : "No rung entries yet.";
  section.dataset.bucket = body.bucket;
  section.dataset.buckets = String(body.series.length);
  section.dataset.totals = JSON.stringify(totals);
  section.dataset.ready = "true";
}

// ---- cohorts: the share of each first-seen period standing on or above each rung ---------------------------

async function loadCohorts() {
  const section = $("#cohorts");
  section.dataset.ready = "false";
  const cohort = $("#cohorts-by").value;
  const body = await getJson(`/v1/funnel?cohort=${encodeURIComponent(cohort)}`);
  const rows = body.rows.filter((r) => r.customers > 0);
  $("#cohorts-table tbody").replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = row.start;
    const count = document.createElement("td");
    count.textContent = String(row.customers);
    tr.append(th, count, ...ENTERED.map((rung) => {
      const td = document.createElement("td");
      const share = row.reached[rung] / row.customers;
      td.textContent = `${Math.round(share * 100)}%`;
      td.title = `${row.reached[rung]} of ${row.customers}`;
      td.dataset.reached = String(row.reached[rung]);
      // the rung's own colour, as strong as the share: a glance finds where a cohort stops climbing
      td.style.background = `color-mix(in srgb, ${RUNG_COLOR[rung]} ${Math.round(share * 85)}%, transparent)`;
      return td;
    }));
    return tr;
  }));
  $("#cohorts-empty").hidden = rows.length > 0;
  section.dataset.cohort = body.cohort;
  section.dataset.rows = String(rows.length);
  section.dataset.ready = "true";
}

// ---- import: a CSV file of prospects from the marketer's disk ---------------------------------------------

async function importFile(ev) {
  ev.preventDefault();
  const file = $("#import-file").files[0];
  if (!file) return;
  const result = $("#import-result");
  result.textContent = `Importing ${file.name}…`;
  $("#import-rejected").replaceChildren();
  let answer;
  try {
    // the file goes as it is (the browser streams it from disk); the server reads it line by line
    answer = await (await api("/v1/prospects", { method: "POST", body: file, type: "text/csv" })).json();
  } catch (err) {
    result.textContent = `Import failed: ${err.message ?? err}`;
    result.dataset.outcome = "error";
    return;
  }
  result.textContent = `${file.name}: ${answer.imported} imported, ${answer.existing} already known, `
    + `${answer.rejected_total} rejected`;
  result.dataset.outcome = "ok";
  result.dataset.answer = JSON.stringify(answer);
  $("#import-rejected").replaceChildren(...answer.rejected.slice(0, 20).map((r) => {
    const li = document.createElement("li");
    li.textContent = `line ${r.line}: ${r.error}`;
    return li;
  }));
  await refreshAll();
}

// ---- the list of a rung and tier --------------------------------------------------------------------------

const listState = { stage: "", tier: "", develop: "", health: "", sort: "customer_id", limit: 50, cursors: [null], page: 0, next: null };

function listQuery({ withPage }) {
  const params = new URLSearchParams();
  if (listState.stage) params.set("stage", listState.stage);
  if (listState.tier) params.set("tier", listState.tier);
  if (listState.develop) params.set("develop", listState.develop);
  if (listState.sort !== "customer_id") params.set("sort", listState.sort);
  if (listState.health) params.set("health", listState.health);
  if (withPage) {
    params.set("limit", String(listState.limit));
    const after = listState.cursors[listState.page];
    if (after) params.set("after", after);
  }
  const query = params.toString();
  return `/v1/customers${query ? `?${query}` : ""}`;
}

function showList({ stage, tier, develop, health }) {
  $("#list-stage").value = stage ?? "";
  $("#list-tier").value = tier ?? "";
  $("#list-develop").value = develop ?? "";
  $("#list-health").value = health ?? "";
  filtersChanged();
  $("#list").scrollIntoView({ behavior: "smooth", block: "start" });
}

function filtersChanged() {
  listState.stage = $("#list-stage").value;
  listState.tier = $("#list-tier").value;
  listState.develop = $("#list-develop").value;
  listState.sort = $("#list-sort").value;
  listState.health = $("#list-health").value;
  listState.limit = Number($("#list-limit").value);
  listState.cursors = [null];
  listState.page = 0;
  loadList().catch(fail);
}

const fmt = (x) => Number(x).toFixed(2);
const fmt4 = (x) => Number(x).toFixed(4);

async function loadList() {
  const section = $("#list");
  section.dataset.ready = "false";
  const body = await getJson(listQuery({ withPage: true }));
  listState.next = body.next;
  const rows = body.items.map((c) => {
    const tr = el("tr", { dataset: { customerId: c.customer_id, stage: c.stage, tier: c.profitability.tier } },
      el("td", { class: "mono" }, c.customer_id),
      el("td", {}, el("span", { class: "pill", style: `background:${RUNG_COLOR[c.stage]}` }, label(c.stage))),
      el("td", {}, el("span", { class: "swatch", style: `background:${TIER_COLOR[c.profitability.tier]}` }),
        c.profitability.tier),
      el("td", {}, c.profitability.sales), el("td", {}, c.profitability.costs), el("td", {}, c.profitability.profit),
      el("td", {}, fmt(c.stability)),
      ...KINDS.map((k) => el("td", {}, fmt(c.loyalty[k]))),
      // the stored focus (as of the last event): what the develop filter and the index order use
      el("td", { class: "develop" }, ...(c.focus
        ? [el("span", { class: "swatch", style: `background:${KIND_COLOR[c.focus.develop]}` }), c.focus.develop] : ["—"])),
      el("td", { class: "index" }, c.focus ? fmt4(c.focus.index) : "—"));
    if (c.focus) {
      tr.dataset.develop = c.focus.develop;
      tr.dataset.index = String(c.focus.index);
    }
    tr.addEventListener("click", () => {
      document.querySelectorAll("#list-table tr.selected").forEach((r) => r.classList.remove("selected"));
      tr.classList.add("selected");
      loadCustomer(c.customer_id).catch(fail);
    });
    return tr;
  });
  $("#list-table tbody").replaceChildren(...rows);
  $("#list-empty").hidden = rows.length > 0;
  $("#list-prev").disabled = listState.page === 0;
  $("#list-next").disabled = !body.next;
  $("#list-page").textContent = `page ${listState.page + 1}`;
  const csvName = ["customers", listState.stage, listState.tier, listState.develop, listState.health,
    listState.sort === "index" ? "by-index" : ""].filter(Boolean).join("-");
  $("#list-csv").href = listQuery({ withPage: false });
  $("#list-csv").download = `${csvName}.csv`;
  section.dataset.count = String(rows.length);
  section.dataset.page = String(listState.page + 1);
  section.dataset.stage = listState.stage;
  section.dataset.tier = listState.tier;
  section.dataset.develop = listState.develop;
  section.dataset.sort = listState.sort;
  section.dataset.health = listState.health;
  section.dataset.ready = "true";
}

async function downloadCsv(ev) {
  // a plain link cannot carry the Authorization header, so fetch the stream and hand it over as a file
  ev.preventDefault();
  const link = ev.currentTarget;
  setStatus("Preparing CSV…");
  const res = await api(link.getAttribute("href"), { accept: "text/csv" });
  const url = URL.createObjectURL(await res.blob());
  const a = el("a", { href: url, download: link.download });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  setStatus("CSV downloaded.");
}

// ---- one customer: radar, timeline, next-rung conditions -------------------------------------------------

let radarChart = null;

async function loadCustomer(customerId) {
  const section = $("#customer");
  section.dataset.ready = "false";
  const id = encodeURIComponent(customerId);
  const [c, next] = await Promise.all([getJson(`/v1/customers/${id}`), getJson(`/v1/customers/${id}/next-rung`)]);
  $("#customer-id").textContent = c.customer_id;
  const rungColor = RUNG_COLOR[c.stage];
  const { encourage, develop } = c.focus;
  // the kind to encourage and the kind to develop are marked on the radar: their own point shape, colour and
  // size, and a second line on their axis label says which (one kind can be both)
  const role = (k) => [k === encourage ? "encourage" : null, k === develop ? "develop" : null].filter(Boolean);
  const pointColor = (k) => (k === develop ? color("develop") : k === encourage ? color("encourage") : rungColor);
  const config = {
    type: "radar",
    data: {
      labels: KINDS.map((k) => (role(k).length ? [k, `${role(k).map((r) => MARK[r]).join("")} ${role(k).join(" + ")}`] : k)),
      datasets: [{
        label: `${c.customer_id} (${label(c.stage)})`,
        data: KINDS.map((k) => c.loyalty[k]),
        backgroundColor: `${rungColor}33`,
        borderColor: rungColor,
        pointBackgroundColor: KINDS.map(pointColor),
        pointBorderColor: KINDS.map(pointColor),
        pointStyle: KINDS.map((k) => (k === develop ? "rectRot" : k === encourage ? "triangle" : "circle")),
        pointRadius: KINDS.map((k) => (role(k).length ? 8 : 3)),
        borderWidth: 2,
      }],
    },
    options: {
      maintainAspectRatio: false,
      scales: { r: { min: 0, max: 1, ticks: { stepSize: 0.25, backdropColor: "transparent" },
        pointLabels: { font: { size: 13, weight: "600" },
          color: (ctx) => (role(KINDS[ctx.index]).length ? pointColor(KINDS[ctx.index]) : color("ink")) } } },
      plugins: { legend: { display: false } },
    },
  };
  if (radarChart) radarChart.destroy();
  radarChart = new Chart($("#radar-chart"), config);
  $("#focus-encourage").textContent = `${encourage} (${fmt(c.loyalty[encourage])})`;
  $("#focus-develop").textContent = `${develop} (${fmt(c.loyalty[develop])})`;
  $("#focus-action").textContent = c.focus.action;
  $("#focus-index").textContent = fmt4(c.focus.index);

  $("#timeline").replaceChildren(...c.history.map((h) => el("li",
    { dataset: { toStage: h.to_stage }, style: `--dot:${RUNG_COLOR[h.to_stage]}` },
    el("strong", {}, `${label(h.from_stage)} → ${label(h.to_stage)}`),
    el("time", { datetime: h.occurred_at }, new Date(h.occurred_at).toISOString().replace("T", " ").slice(0, 16) + " UTC"),
    el("div", { class: "reason" }, h.reason))));

  $("#next-stage").textContent = next.next_stage ? label(next.next_stage) : "— top rung reached";
  $("#conditions").replaceChildren(...(next.conditions.length ? next.conditions.map((cond) => el("li",
    { dataset: { name: cond.name, have: String(cond.have), need: String(cond.need), met: String(cond.met) } },
    `${cond.met ? "✓" : "○"} ${cond.name.replaceAll("_", " ")}: ${cond.have} of ${cond.need}`,
    el("div", { class: "bar" },
      el("span", { style: `width:${cond.need ? Math.min(100, (100 * cond.have) / cond.need) : 100}%` }))))
    : [el("li", {}, "An advocate: nothing above this rung.")]));

  const facts = [
    ["rung", label(c.stage)], ["tier", c.profitability.tier], ["profit", c.profitability.profit],
    ["orders", c.counts.orders], ["full-price orders", c.counts.full_price_orders],
    ["referrals", `${c.counts.referrals_made} (${c.counts.referrals_converted} bought)`],
    ["complaints", c.counts.complaints], ["stability", fmt(c.stability)],
    ...healthFacts(c.health),
  ];
  $("#customer-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
  section.dataset.customerId = c.customer_id;
  section.dataset.stage = c.stage;
  section.dataset.nextStage = next.next_stage ?? "";
  section.dataset.loyalty = JSON.stringify(Object.fromEntries(KINDS.map((k) => [k, c.loyalty[k]])));
  section.dataset.history = String(c.history.length);
  section.dataset.encourage = encourage;
  section.dataset.develop = develop;
  section.dataset.index = String(c.focus.index);
  section.dataset.health = c.health ? c.health.status : "";
  section.dataset.pAlive = c.health ? String(c.health.p_alive) : "";
  section.dataset.atRiskSince = c.health?.at_risk_since ?? "";
  section.dataset.ready = "true";
}

// ---- wiring -----------------------------------------------------------------------------------------------

function fail(err) {
  console.error(err);
  setStatus(String(err.message ?? err), true);
}

async function refreshAll() {
  setStatus("Loading…");
  await Promise.all([loadFunnel(), loadFlows(), loadCohorts(), loadList()]);
  setStatus(`Updated ${new Date().toLocaleTimeString()}`);
}

$("#refresh").addEventListener("click", () => refreshAll().catch(fail));
$("#forget-token").hidden = !sessionStorage.getItem(TOKEN_KEY);
$("#forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  $("#forget-token").hidden = true;
  setStatus("Token forgotten.");
});
$("#flows-bucket").addEventListener("change", () => loadFlows().catch(fail));
$("#flows-kind").addEventListener("change", () => loadFlows().catch(fail));
$("#cohorts-by").addEventListener("change", () => loadCohorts().catch(fail));
$("#import-file").addEventListener("change", () => { $("#import-send").disabled = !$("#import-file").files.length; });
$("#import-form").addEventListener("submit", (ev) => importFile(ev).catch(fail));
for (const id of ["#list-stage", "#list-tier", "#list-develop", "#list-health", "#list-sort", "#list-limit"]) {
  $(id).addEventListener("change", filtersChanged);
}
// the gold fund: the advocates and regulars who are slipping away, one click each
$("#list-risk-advocates").addEventListener("click", () => showList({ stage: "advocate", health: "at_risk" }));
$("#list-risk-regulars").addEventListener("click", () => showList({ stage: "regular", health: "at_risk" }));
$("#backtest-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  runBacktest({ $, api, Chart, color }).catch(fail);
});
$("#list-filters").addEventListener("submit", (ev) => ev.preventDefault());
$("#list-next").addEventListener("click", () => {
  if (!listState.next) return;
  listState.cursors[listState.page + 1] = listState.next;
  listState.page += 1;
  loadList().catch(fail);
});
$("#list-prev").addEventListener("click", () => {
  if (listState.page === 0) return;
  listState.page -= 1;
  loadList().catch(fail);
});
$("#list-csv").addEventListener("click", (ev) => downloadCsv(ev).catch(fail));

refreshAll().catch(fail);
