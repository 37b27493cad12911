"""Names of the metrics perf-alerts itself produces (crew instrumentation, host source).

Kept in one place so the instrumentation, the health score, the default rules and the
docs agree on them.
"""

# CrewAI instrumentation. *_seconds are recorded for every attempt (failed ones too);
# error/failure metrics are events with value 1; cost is USD per LLM call.
LLM_SECONDS = "crew_llm_call_seconds"
LLM_PROMPT_TOKENS = "crew_llm_prompt_tokens"
LLM_COMPLETION_TOKENS = "crew_llm_completion_tokens"
LLM_ERRORS = "crew_llm_errors"
TOOL_SECONDS = "crew_tool_call_seconds"
TOOL_ERRORS = "crew_tool_errors"
TASK_SECONDS = "crew_task_seconds"
TASK_FAILURES = "crew_task_failures"
KICKOFF_SECONDS = "crew_kickoff_seconds"
COST_USD = "crew_cost_usd"

# Host source.
HOST_CPU = "host_cpu_percent"
HOST_MEMORY = "host_memory_percent"
HOST_DISK = "host_disk_percent"

LATENCY_METRICS = (TASK_SECONDS, LLM_SECONDS, TOOL_SECONDS)
# errors → the metric whose sample count is the number of attempts
ERROR_METRICS = {TASK_FAILURES: TASK_SECONDS, TOOL_ERRORS: TOOL_SECONDS, LLM_ERRORS: LLM_SECONDS}
HOST_METRICS = (HOST_CPU, HOST_MEMORY, HOST_DISK)
# Metric kinds (how samples combine; downsampling keeps what each kind's aggregates need):
# the crew listener records one sample per occurrence (events: sum and count are meaningful),
# the host source samples levels (gauges). User metrics: `metrics: {name: {kind: ...}}` in the
# config, else `*_total` is a counter and anything else a gauge.
EVENT_METRICS = (LLM_SECONDS, LLM_PROMPT_TOKENS, LLM_COMPLETION_TOKENS, LLM_ERRORS, TOOL_SECONDS, TOOL_ERRORS,
                 TASK_SECONDS, TASK_FAILURES, KICKOFF_SECONDS, COST_USD)
GAUGE_METRICS = HOST_METRICS
AGENT_LABEL = "agent"
