// Health on the workspace page: the customer card's health, and the backtest chart. Everything comes from
// GET /v1/customers/{id} (its `health`) and POST /v1/health/backtest (admin scope).

const pct = (p) => `${(100 * p).toFixed(1)} %`;
const utcMinute = (iso) => new Date(iso).toISOString().replace("T", " ").slice(0, 16) + " UTC";

// the customer card's facts for `health` (null: the customer has no order yet)
export function healthFacts(health) {
  if (!health) return [["health", "no order yet"]];
  const facts = [
    ["health", health.status === "at_risk" ? "at risk" : "active"],
    ["P(alive)", pct(health.p_alive)],
    ["expected orders, 90 days", health.expected_orders_90d.toFixed(2)],
  ];
  if (health.at_risk_since) facts.push(["at risk since", utcMinute(health.at_risk_since)]);
  facts.push(["model", `v${health.model_version}, x ${health.x}, t_x ${health.t_x_weeks.toFixed(1)} wk, `
    + `T ${health.T_weeks.toFixed(1)} wk`]);
  return facts;
}

let backtestChart = null;

// runs the backtest the form describes and draws predicted against actual repeat orders by x, as the paper does
export async function runBacktest({ $, api, Chart, color }) {
  const section = $("#backtest");
  section.dataset.ready = "false";
  const day = $("#backtest-cutoff").value;
  const request = {
    cutoff: `${day}T23:59:59Z`,
    horizon_days: Number($("#backtest-horizon").value),
    model: $("#backtest-model").value,
  };
  const body = await (await api("/v1/health/backtest", { method: "POST", body: request })).json();
  const labels = body.by_frequency.map((row) => String(row.x));
  const series = (key, name, colour, dash) => ({
    label: name, data: body.by_frequency.map((row) => row[key]), borderColor: colour, backgroundColor: colour,
    borderDash: dash, borderWidth: 2, pointRadius: 3, tension: 0,
  });
  const config = {
    type: "line",
    data: { labels, datasets: [series("actual", "actual", color("ink"), []),
      series("predicted", `${body.model} predicted`, color("accent"), [6, 4])] },
    options: {
      maintainAspectRatio: false,
      scales: {
        x: { title: { display: true, text: "repeat orders up to the cutoff (x)" } },
        y: { beginAtZero: true, title: { display: true, text: "repeat orders per customer after the cutoff" } },
      },
      plugins: { legend: { position: "bottom" } },
    },
  };
  if (backtestChart) backtestChart.destroy();
  backtestChart = new Chart($("#backtest-chart"), config);
  const p = body.params;
  $("#backtest-summary").textContent = `${body.customers} customers; r ${p.r.toFixed(3)}, α ${p.alpha.toFixed(3)}, `
    + `a ${p.a.toFixed(3)}, b ${p.b.toFixed(3)}; log-likelihood ${body.log_likelihood.toFixed(1)}; `
    + `${body.horizon_days} days after the cutoff: predicted ${body.predicted_repeat_orders.toFixed(0)}, `
    + `actual ${body.actual_repeat_orders} repeat orders`;
  section.dataset.customers = String(body.customers);
  section.dataset.params = JSON.stringify(p);
  section.dataset.rows = JSON.stringify(body.by_frequency);
  section.dataset.ready = "true";
}
