"""analytics.recommend: pure rules over hand-made aggregates, and the store-backed optimize report."""

from perf_alerts import catalog
from perf_alerts.analytics.recommend import (
    LLMStats, TaskStats, ToolStats, Usage, call_cost, cheaper_model, match_price, optimize, recommend,
)
from perf_alerts.config import ModelPrice, parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.model import Sample
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

PRICING = {"gpt-4o": ModelPrice(input=2.5, output=10.0), "gpt-4o-mini": ModelPrice(input=0.15, output=0.6),
           "gpt-4.1": ModelPrice(input=2.0, output=8.0)}


def test_match_price_variants():
    assert match_price("gpt-4o", PRICING)[0] == "gpt-4o"
    assert match_price("openai/gpt-4o-mini", PRICING)[0] == "gpt-4o-mini"
    assert match_price("gpt-4o-mini-2024-07-18", PRICING)[0] == "gpt-4o-mini"  # longest prefix wins
    assert match_price("gpt-4o-2024-08-06", PRICING)[0] == "gpt-4o"
    assert match_price("llama3", PRICING) is None
    assert call_cost("gpt-4o-mini", 1000, 100, PRICING) == (1000 * 0.15 + 100 * 0.6) / 1e6


def test_cheaper_model_is_the_smallest_step_down():
    name, cost, saving = cheaper_model("gpt-4o", 1000, 200, PRICING)
    assert name == "gpt-4.1" and 0 < saving < 1
    assert cheaper_model("gpt-4o-mini", 1000, 200, PRICING) is None


def _usage(**kw):
    u = Usage(window_seconds=86400.0)
    for k, v in kw.items():
        getattr(u, k).update(v)
    return u


def test_latency_outlier_names_agent_ratio_and_model():
    cur = _usage(llm={("researcher", "gpt-4o"): LLMStats(calls=40, p50_s=7.0, p95_s=8.2),
                      ("writer", "gpt-4o-mini"): LLMStats(calls=40, p50_s=2.0, p95_s=2.6),
                      ("reviewer", "gpt-4o-mini"): LLMStats(calls=40, p50_s=2.0, p95_s=2.5)})
    recs = recommend(cur, None, PRICING)
    assert recs[0]["kind"] == "llm_latency_outlier"
    assert recs[0]["title"] == "agent researcher: p95 LLM latency 8.2 s, 3.2× the crew median (2.6 s), on model gpt-4o"
    assert recs[0]["evidence"] and recs[0]["action"]


def test_tool_failures_and_cost_increase():
    cur = _usage(tools={("writer", "file_writer"): ToolStats(calls=200, errors=24)},
                 llm={("reviewer", "gpt-4o"): LLMStats(calls=50, cost_usd=50 * 0.018, cost_calls=50,
                                                        prompt_tokens=50 * 5000, completion_tokens=50 * 500, token_calls=50)})
    prev = _usage(llm={("reviewer", "gpt-4o"): LLMStats(calls=50, cost_usd=50 * 0.01, cost_calls=50,
                                                         prompt_tokens=50 * 2600, completion_tokens=50 * 350, token_calls=50)})
    recs = {r["kind"]: r for r in recommend(cur, prev, PRICING)}
    assert recs["tool_failures"]["title"] == "agent writer: tool file_writer failing 12% of calls (24 of 200)"
    cost = recs["cost_increase"]
    assert "cost per LLM call up 80% vs the previous 1d on gpt-4o" in cost["title"]
    assert "consider gpt-4.1 (cheaper per the pricing table)" in cost["title"]
    assert any("$0.0100 → $0.0180" in e for e in cost["evidence"])


def test_nothing_to_say_on_healthy_or_thin_data():
    cur = _usage(tools={("a", "t"): ToolStats(calls=3, errors=1)}, tasks={"a": TaskStats(runs=100, failures=1)},
                 llm={("a", "gpt-4o-mini"): LLMStats(calls=2, p95_s=50.0)})
    assert recommend(cur, None, PRICING) == []
    assert recommend(Usage(), None, PRICING) == []


def test_optimize_reads_the_store():
    end = 1_760_000_000.0
    cfg = parse_config("pricing:\n  gpt-4o: {input: 2.5, output: 10}\n  gpt-4o-mini: {input: 0.15, output: 0.6}\n")
    s = PerfAlerts(cfg, Store(":memory:"), ManualClock(end))
    samples = []
    for i in range(20):
        lab = {"crew": "c", "agent": "writer", "tool": "file_writer"}
        t = end - 3600 + i * 60
        samples.append(Sample(catalog.TOOL_SECONDS, lab, t, 1.0))
        if i % 4 == 0:
            samples.append(Sample(catalog.TOOL_ERRORS, lab, t, 1.0))
    s.store.insert_samples(samples)
    rep = optimize(s, lookback=86400.0)
    assert rep["recommendations"][0]["title"] == "agent writer: tool file_writer failing 25% of calls (5 of 20)"
    assert optimize(s, lookback=86400.0, agent="nobody")["note"] == "no crew metrics in the window"
