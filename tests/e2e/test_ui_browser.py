"""The /ui page in a real browser: headless Debian Chromium driven by Playwright, against a running system fed
through Kafka. The page writes what it draws into the DOM (tables, data-* attributes) and into Chart.js
charts; both are compared with the API. Screenshots land in test-artifacts/ui/.

Chromium is the Debian package (`apt-get install -y chromium`, which `make` installs for CI); Playwright never
downloads a browser. Without /usr/bin/chromium this test fails, it does not skip.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, Shop, System, complaint, purchase, referral, uid, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ROOT / "test-artifacts" / "ui"
STAGES = ["potential", "visitor", "first_purchase", "regular", "advocate"]
TIERS = ["profitable", "middling", "unprofitable"]
KINDS = ["financial", "procedural", "contact", "evaluative", "consultative"]
TOKEN = "ui-browser-token"


def feed(shop: Shop, system: System, *, customers: int = 60, seed: int = 7) -> None:
    """A small synthetic shop: orders over six months, some discounted, refunds, complaints, referrals."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    expected: Counter[str] = Counter()
    ids = [uid("shopper-") for _ in range(customers)]
    months = ["2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]
    for c in ids:
        expected[c] += 0
        for _ in range(rng.choice([0, 1, 1, 2, 3, 4, 5])):
            at = f"{rng.choice(months)}-{rng.randint(1, 20):02d}T{rng.randint(8, 20):02d}:00:00Z"
            amount = rng.choice(["15.00", "40.00", "75.00", "120.00"])
            discount = rng.choice(["0", "0", "5.00"])
            events.append(
                purchase(c, at=at, amount=amount, cost=rng.choice(["5.00", "30.00", "60.00"]), discount=discount)
            )
            expected[c] += 1
        if rng.random() < 0.15:
            events.append(complaint(c, at="2026-10-02T10:00:00Z", handling_cost=rng.choice(["0", "25.00"])))
            expected[c] += 1
        if rng.random() < 0.3:
            friend = rng.choice(ids)
            if friend != c:
                events.append(referral(c, friend, at="2026-09-15T10:00:00Z"))
                expected[c] += 1
    shop.send_all(events)

    def settled() -> bool:
        for c, n in expected.items():
            got = system.customer(c) if n else None
            if n and (got is None or sum(got["counts"][k] for k in ("orders", "complaints", "referrals_made")) != n):
                return False
        return True

    wait_until(settled, timeout_s=60, interval_s=0.5, what="every generated event processed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium with `apt-get install -y chromium` "
            "(the browser test needs it and never downloads a browser)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def fed_system(system: System, shop: Shop) -> System:
    feed(shop, system)
    return system


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.errors = errors
    yield pg
    context.close()


def ready(browser_page: Any, section: str, **data: str) -> None:
    """Wait until the page has drawn `section` (and its data-* attributes have the given values)."""
    extra = "".join(f'[data-{k.replace("_", "-")}="{v}"]' for k, v in data.items())
    browser_page.wait_for_selector(f'#{section}[data-ready="true"]{extra}', state="attached", timeout=15_000)


def chart_data(page: Any, canvas: str) -> list[list[float]]:
    return page.evaluate(f"Chart.getChart(document.querySelector('#{canvas}')).data.datasets.map(d => d.data)")


def test_the_page_draws_the_ladder_flows_list_and_a_customer(page: Any, fed_system: System) -> None:
    system = fed_system
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(system.url("scoring", "/ui"))
    for section in ("funnel", "flows", "list"):
        ready(page, section)

    # the funnel: table cells and the chart's stacked bars both equal /v1/stages
    stages = system.get("/v1/stages").json()
    assert page.get_attribute("#funnel", "data-total") == str(stages["customers"])
    for stage in STAGES:
        for tier in TIERS:
            cell = page.text_content(f'#funnel-table td[data-stage="{stage}"][data-tier="{tier}"]')
            assert cell == str(stages["stages"][stage]["tiers"][tier]), (stage, tier)
        assert page.text_content(f'#funnel-table td[data-stage="{stage}"][data-tier="all"]') == str(
            stages["stages"][stage]["customers"]
        )
    bars = chart_data(page, "funnel-chart")  # datasets = tiers, bars = rungs from the top down
    assert bars == [[stages["stages"][s]["tiers"][t] for s in reversed(STAGES)] for t in TIERS]
    assert stages["customers"] > 0 and stages["stages"]["regular"]["customers"] > 0

    # flows: the weekly chart, then monthly after choosing it, each equal to /v1/flows
    for bucket in ("week", "month", "day"):
        if bucket != "week":
            page.select_option("#flows-bucket", bucket)
        ready(page, "flows", bucket=bucket)
        api = system.get("/v1/flows", params={"bucket": bucket}).json()
        assert page.get_attribute("#flows", "data-buckets") == str(len(api["series"]))
        totals = json.loads(page.get_attribute("#flows", "data-totals"))
        assert totals == {r: sum(b["entered"][r] for b in api["series"]) for r in STAGES}
        assert chart_data(page, "flows-chart") == [[b["entered"][r] for b in api["series"]] for r in STAGES]
        # everyone is first seen once, and (no prospects here) entered visitor once
        assert totals["potential"] == totals["visitor"] == stages["customers"]
    page.select_option("#flows-bucket", "week")
    ready(page, "flows", bucket="week")

    # the list of a rung and tier, chosen in the filters
    page.select_option("#list-stage", "regular")
    ready(page, "list", stage="regular")
    api_list = system.get("/v1/customers", params={"stage": "regular", "limit": 50}).json()
    rows = page.locator("#list-table tbody tr")
    assert rows.count() == len(api_list["items"]) > 0
    assert [rows.nth(i).get_attribute("data-customer-id") for i in range(rows.count())] == [
        i["customer_id"] for i in api_list["items"]
    ]
    assert all(rows.nth(i).get_attribute("data-stage") == "regular" for i in range(rows.count()))

    # one customer: radar, timeline, next-rung conditions
    chosen = api_list["items"][0]["customer_id"]
    rows.first.click()
    ready(page, "customer", customer_id=chosen)
    full = system.get(f"/v1/customers/{chosen}").json()
    nxt = system.get(f"/v1/customers/{chosen}/next-rung").json()
    [radar] = chart_data(page, "radar-chart")
    assert radar == pytest.approx([full["loyalty"][k] for k in KINDS], abs=1e-3)
    assert page.locator("#timeline li").count() == len(full["history"]) == 3
    assert [page.locator("#timeline li").nth(i).get_attribute("data-to-stage") for i in range(3)] == [
        "visitor",
        "first_purchase",
        "regular",
    ]
    conds = page.locator("#conditions li")
    assert conds.count() == len(nxt["conditions"]) == 2
    for i, cond in enumerate(nxt["conditions"]):
        li = conds.nth(i)
        assert (
            li.get_attribute("data-name"),
            li.get_attribute("data-have"),
            li.get_attribute("data-need"),
            li.get_attribute("data-met"),
        ) == (cond["name"], str(cond["have"]), str(cond["need"]), str(cond["met"]).lower())
    assert page.get_attribute("#customer", "data-next-stage") == "advocate"

    # the focus on the card: the radar marks the kind to encourage and the kind to develop, the action is shown
    focus = full["focus"]
    assert page.get_attribute("#customer", "data-encourage") == focus["encourage"]
    assert page.get_attribute("#customer", "data-develop") == focus["develop"]
    assert page.text_content("#focus-action") == focus["action"]
    assert page.text_content("#focus-develop").startswith(focus["develop"])
    assert page.text_content("#focus-encourage").startswith(focus["encourage"])
    assert float(page.text_content("#focus-index")) == pytest.approx(focus["index"], abs=1e-4)
    radar_meta = page.evaluate("""() => { const c = Chart.getChart(document.querySelector('#radar-chart'));
        const d = c.data.datasets[0]; return [c.data.labels, d.pointStyle, d.pointRadius]; }""")
    labels, styles, radii = radar_meta
    for i, kind in enumerate(KINDS):
        marked = kind in (focus["encourage"], focus["develop"])
        assert (radii[i] > 3) == marked, (kind, radii)
        # a marked kind's axis label has a second line saying what it is marked for
        assert labels[i] == kind if not marked else (labels[i][0] == kind and len(labels[i]) == 2), labels
    assert styles[KINDS.index(focus["develop"])] == "rectRot"
    assert "develop" in labels[KINDS.index(focus["develop"])][1]
    assert "encourage" in labels[KINDS.index(focus["encourage"])][1]

    # the ladder: each rung's customers by the kind to develop, as /v1/stages counts them
    for stage in STAGES:
        bar = page.get_attribute(f'.develop-bar[data-stage="{stage}"]', "data-develop")
        assert json.loads(bar) == stages["stages"][stage]["develop"], stage
    regular_kinds = stages["stages"]["regular"]["develop"]
    parts = page.eval_on_selector_all(
        '.develop-bar[data-stage="regular"] span', "spans => spans.map(s => [s.dataset.kind, Number(s.dataset.count)])"
    )
    assert dict(parts) == {k: n for k, n in regular_kinds.items() if n}

    # the campaign list: the develop filter and the index column, and the index order
    kind = max(regular_kinds, key=lambda k: regular_kinds[k])
    page.select_option("#list-develop", kind)
    ready(page, "list", stage="regular", develop=kind)
    api_kind = system.get("/v1/customers", params={"stage": "regular", "develop": kind, "limit": 50}).json()
    rows = page.locator("#list-table tbody tr")
    assert rows.count() == len(api_kind["items"]) == regular_kinds[kind]
    for i, item in enumerate(api_kind["items"]):
        assert rows.nth(i).get_attribute("data-develop") == kind
        assert rows.nth(i).locator("td.index").text_content() == f"{item['focus']['index']:.4f}"
    page.select_option("#list-develop", "")
    page.select_option("#list-sort", "index")
    ready(page, "list", stage="regular", develop="", sort="index")
    by_index = system.get("/v1/customers", params={"stage": "regular", "sort": "index", "limit": 50}).json()
    shown = page.eval_on_selector_all(
        "#list-table tbody tr", "rows => rows.map(r => [r.dataset.customerId, Number(r.dataset.index)])"
    )
    assert [c for c, _ in shown] == [i["customer_id"] for i in by_index["items"]]
    assert [x for _, x in shown] == sorted((x for _, x in shown), reverse=True)
    page.screenshot(path=str(SHOTS / "workspace.png"), full_page=True)
    page.locator("#customer").screenshot(path=str(SHOTS / "customer.png"))
    assert page.errors == []


def test_the_cohort_table_and_the_import_box(page: Any, fed_system: System, tmp_path: Path) -> None:
    system = fed_system
    page.goto(system.url("scoring", "/ui"))
    ready(page, "cohorts", cohort="month")
    api = system.get("/v1/funnel", params={"cohort": "month"}).json()
    rows = [r for r in api["rows"] if r["customers"]]
    assert page.get_attribute("#cohorts", "data-rows") == str(len(rows))
    first = page.query_selector_all("#cohorts-table tbody tr")[0]
    assert first.query_selector("th").text_content() == rows[0]["start"]
    assert [td.get_attribute("data-reached") for td in first.query_selector_all("td[data-reached]")] == [
        str(rows[0]["reached"][r]) for r in STAGES[1:]
    ]

    # a CSV file from the disk: two new prospects, one bad line, one customer the shop knows already
    known = system.get("/v1/customers", params={"limit": 1}).json()["items"][0]["customer_id"]
    fresh = [uid("lead-"), uid("lead-")]
    file = tmp_path / "leads.csv"
    file.write_text(f"customer_id,source\n{fresh[0]},fair\n{'x' * 129},fair\n{fresh[1]},\n{known},fair\n")
    page.set_input_files("#import-file", str(file))
    page.click("#import-send")
    page.wait_for_selector('#import-result[data-outcome="ok"]', state="attached", timeout=15_000)
    answer = json.loads(page.get_attribute("#import-result", "data-answer"))
    assert (answer["imported"], answer["existing"], answer["rejected"]) == (
        2,
        1,
        [{"line": 3, "error": "customer_id must be 1-128 characters without control characters"}],
    )
    assert page.text_content("#import-rejected li").startswith("line 3:")
    for c in fresh:
        assert system.customer(c)["stage"] == "potential"
    page.screenshot(path=str(SHOTS / "import-and-cohorts.png"), full_page=True)
    assert page.errors == []


def test_clicking_a_funnel_bar_lists_that_rung_and_tier_and_pages(page: Any, fed_system: System) -> None:
    system = fed_system
    page.goto(system.url("scoring", "/ui"))
    ready(page, "funnel")
    ready(page, "list")
    stages = system.get("/v1/stages").json()["stages"]
    stage, tier = max(((s, t) for s in STAGES for t in TIERS), key=lambda st: stages[st[0]]["tiers"][st[1]])
    # click the middle of the bar segment of (stage, tier) as Chart.js laid it out
    x, y = page.evaluate(
        """([stage, tier]) => {
             const chart = Chart.getChart(document.querySelector('#funnel-chart'));
             const rungs = ['advocate', 'regular', 'first_purchase', 'visitor', 'potential'];
             const bar = chart.getDatasetMeta(['profitable', 'middling', 'unprofitable'].indexOf(tier))
                              .data[rungs.indexOf(stage)];
             const box = chart.canvas.getBoundingClientRect();
             return [box.left + (bar.x + bar.base) / 2, box.top + bar.y];
           }""",
        [stage, tier],
    )
    page.mouse.click(x, y)
    ready(page, "list", stage=stage, tier=tier)
    assert page.input_value("#list-stage") == stage and page.input_value("#list-tier") == tier

    # paging through the list with a small page size visits every customer of it once
    page.select_option("#list-limit", "25")
    ready(page, "list", stage=stage, tier=tier, page="1")
    seen: list[str] = []
    while True:
        ids = page.eval_on_selector_all("#list-table tbody tr", "rows => rows.map(r => r.dataset.customerId)")
        seen.extend(ids)
        if page.is_disabled("#list-next"):
            break
        current = page.get_attribute("#list", "data-page")
        page.click("#list-next")
        ready(page, "list", page=str(int(current) + 1))
    assert len(seen) == len(set(seen)) == stages[stage]["tiers"][tier]

    # the CSV link downloads the whole filtered list
    with page.expect_download() as download:
        page.click("#list-csv")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("customer_id,stage,tier,sales,costs,profit,stability,financial")
    assert len(lines) - 1 == stages[stage]["tiers"][tier]
    assert download.value.suggested_filename == f"customers-{stage}-{tier}.csv"
    assert page.errors == []


@pytest.fixture(scope="module")
def secured(system_env: dict[str, str], state_dir: Path, system: System) -> Iterator[System]:
    """A second system on the same database and topics (it joins the consumer group), with API_TOKENS."""
    env = {**system_env, "API_TOKENS": f"{TOKEN}:read"}
    with System(env=env, state_dir=state_dir / f"ui-secured-{system_env['SCORING_GROUP_ID']}") as sut:
        yield sut


def test_the_page_asks_for_a_token_and_keeps_it_for_the_session_only(
    page: Any, fed_system: System, secured: System
) -> None:
    page.goto(secured.url("scoring", "/ui"))
    page.wait_for_selector("#token-dialog[open]", timeout=15_000)
    page.screenshot(path=str(SHOTS / "token-prompt.png"))
    page.fill("#token-input", "wrong-token")
    page.click("#token-submit")
    page.wait_for_selector("#token-dialog[open] #token-error:not([hidden])", timeout=15_000)
    page.fill("#token-input", TOKEN)
    page.click("#token-submit")
    for section in ("funnel", "flows", "list"):
        ready(page, section)
    stages = secured.get("/v1/stages", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert page.get_attribute("#funnel", "data-total") == str(stages["customers"])
    assert page.evaluate("sessionStorage.getItem('loyalty-ladder.token')") == TOKEN
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    # a reload in the same tab keeps the token; nothing is asked again
    page.reload()
    ready(page, "funnel")
    assert not page.is_visible("#token-dialog")
    # the browser logged the 401s it got before the token; nothing else went wrong
    assert all("401" in e for e in page.errors), page.errors


def test_health_shows_in_the_funnel_the_list_and_the_customer_card(page: Any, fed_system: System) -> None:
    system = fed_system
    page.goto(system.url("scoring", "/ui"))
    ready(page, "funnel")
    stages = system.get("/v1/stages").json()["stages"]
    for stage in STAGES:
        cell = page.locator(f'#funnel-table td.at-risk[data-stage="{stage}"]')
        assert cell.get_attribute("data-at-risk") == str(stages[stage]["at_risk"])
    # orders from June on, seen in December: some one-time buyers have faded below the threshold already
    risky = next(s for s in STAGES if stages[s]["at_risk"])
    page.locator(f'#funnel-table td.at-risk[data-stage="{risky}"] button').click()
    ready(page, "list", stage=risky, health="at_risk")
    api_list = system.get("/v1/customers", params={"stage": risky, "health": "at_risk", "limit": 50}).json()
    rows = page.locator("#list-table tbody tr")
    assert rows.count() == len(api_list["items"]) == min(50, stages[risky]["at_risk"])
    chosen = api_list["items"][0]["customer_id"]
    rows.first.click()
    ready(page, "customer", customer_id=chosen, health="at_risk")
    health = system.get(f"/v1/customers/{chosen}").json()["health"]
    assert float(page.get_attribute("#customer", "data-p-alive") or "nan") == pytest.approx(health["p_alive"], abs=1e-6)
    since = page.get_attribute("#customer", "data-at-risk-since") or ""
    assert datetime.fromisoformat(since) == datetime.fromisoformat(health["at_risk_since"])
    facts = page.locator("#customer-facts").inner_text()
    assert "P(alive)" in facts and "at risk since" in facts and "expected orders, 90 days" in facts
    page.locator("#customer").screenshot(path=str(SHOTS / "customer-health.png"))
    # the gold fund in one click: at-risk regulars
    page.click("#list-risk-regulars")
    ready(page, "list", stage="regular", health="at_risk")
    assert page.errors == []


def test_the_backtest_refusal_shows_on_the_page(page: Any, fed_system: System) -> None:
    # a few dozen customers are too few to fit (the policy needs 500): the page says so, and nothing breaks
    page.goto(fed_system.url("scoring", "/ui"))
    ready(page, "funnel")
    page.fill("#backtest-cutoff", "2026-09-30")
    page.click("#backtest-run")
    page.wait_for_selector("#status.error", timeout=15_000)
    assert "needed" in page.inner_text("#status")
    assert page.get_attribute("#backtest", "data-ready") == "false"
