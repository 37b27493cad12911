"""`PerformanceAnalyticsCrew`: the `system_alert_manager` agent and its five tasks (`@CrewBase`).

The YAML lives once, in the top-level `config/` of a checkout, bundled into the wheel as
`perf_alerts/_bundled_config`; `packaged_config_dir()` finds either.

    crew = PerformanceAnalyticsCrew(llm=my_llm).crew()
    crew.kickoff(inputs={"lookback_hours": 24})
"""

from __future__ import annotations

import os
from typing import Any, Optional

from crewai import Agent, Crew, Process, Task
from crewai.project import CrewBase, agent, crew, task

from perf_alerts.config import packaged_config_dir
from perf_alerts.crew.tool import AdvancedPerformanceAnalyticsTool, DiscordAlertTool

CONFIG_DIR = packaged_config_dir()
TASK_NAMES: tuple[str, ...] = (
    "run_performance_analytics",
    "monitor_performance_alerts",
    "predictive_performance_analysis",
    "optimize_system_performance",
    "send_performance_executive_summary",
)
DEFAULT_INPUTS: dict[str, Any] = {
    "lookback_hours": 24,
    "horizon_hours": 6,
    "agent": "",
    "send_notifications": False,
}


@CrewBase
class PerformanceAnalyticsCrew:
    """The perf-alerts crew. `llm`: any CrewAI LLM (default: CrewAI's environment, e.g. MODEL + OPENAI_API_KEY)."""

    agents_config = str(CONFIG_DIR / "agents.yaml")
    tasks_config = str(CONFIG_DIR / "tasks.yaml")

    agents: list[Any]
    tasks: list[Any]

    def __init__(self, llm: Any = None, *, system: Any = None, config_path: Optional[str] = None,
                 db_path: Optional[str] = None, verbose: bool = False, max_iter: int = 8) -> None:
        self.llm = llm
        self.system = system
        self.config_path = config_path
        self.db_path = db_path
        self.verbose = verbose
        self.max_iter = max_iter

    # -- tools ------------------------------------------------------------------------
    def analytics_tool(self) -> AdvancedPerformanceAnalyticsTool:
        return AdvancedPerformanceAnalyticsTool(system=self.system, config_path=self.config_path, db_path=self.db_path)

    def discord_tool(self) -> DiscordAlertTool:
        return DiscordAlertTool(system=self.system, config_path=self.config_path, db_path=self.db_path)

    # -- agent ------------------------------------------------------------------------
    @agent
    def system_alert_manager(self) -> Agent:
        kwargs: dict[str, Any] = {}
        if self.llm is not None:
            kwargs["llm"] = self.llm
        return Agent(
            config=self.agents_config["system_alert_manager"],  # type: ignore[index]
            tools=[self.analytics_tool(), self.discord_tool()],
            allow_delegation=False,
            verbose=self.verbose,
            max_iter=self.max_iter,
            **kwargs,
        )

    # -- tasks (in run order) ------------------------------------------------------------
    @task
    def run_performance_analytics(self) -> Task:
        return Task(config=self.tasks_config["run_performance_analytics"])  # type: ignore[index]

    @task
    def monitor_performance_alerts(self) -> Task:
        return Task(config=self.tasks_config["monitor_performance_alerts"])  # type: ignore[index]

    @task
    def predictive_performance_analysis(self) -> Task:
        return Task(config=self.tasks_config["predictive_performance_analysis"])  # type: ignore[index]

    @task
    def optimize_system_performance(self) -> Task:
        return Task(config=self.tasks_config["optimize_system_performance"])  # type: ignore[index]

    @task
    def send_performance_executive_summary(self) -> Task:
        return Task(config=self.tasks_config["send_performance_executive_summary"])  # type: ignore[index]

    @crew
    def crew(self, task_names: Optional[list[str]] = None) -> Crew:
        """The crew; `task_names` keeps only those tasks (in crew order)."""
        tasks = self.tasks
        if task_names:
            unknown = [n for n in task_names if n not in TASK_NAMES]
            if unknown:
                raise ValueError(f"unknown task {unknown[0]!r}; valid: {', '.join(TASK_NAMES)}")
            tasks = [t for t in self.tasks if t.name in task_names]
        return Crew(
            agents=self.agents,
            tasks=tasks,
            process=Process.sequential,
            verbose=self.verbose,
            name="perf_alerts_crew",
        )


def kickoff_inputs(inputs: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The defaults every placeholder needs, overridden by `inputs`."""
    out = dict(DEFAULT_INPUTS)
    out.update({k: v for k, v in (inputs or {}).items() if v is not None})
    return out


LLM_ENV_HINT = (
    "no LLM is configured for the crew. Set CrewAI's usual environment, for example:\n"
    "  export MODEL=gpt-4o-mini OPENAI_API_KEY=sk-...            (OpenAI)\n"
    "  export MODEL=anthropic/claude-sonnet-4 ANTHROPIC_API_KEY=...  (Anthropic)\n"
    "  export MODEL=ollama/llama3.1 API_BASE=http://localhost:11434  (a local Ollama)\n"
    "or pass --llm-factory module:function returning a crewai LLM."
)

_KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "AZURE_API_KEY",
             "AZURE_OPENAI_API_KEY", "GROQ_API_KEY", "MISTRAL_API_KEY", "DEEPSEEK_API_KEY", "OPENROUTER_API_KEY",
             "AWS_ACCESS_KEY_ID", "CEREBRAS_API_KEY", "XAI_API_KEY", "WATSONX_APIKEY", "NVIDIA_API_KEY",
             "HUGGINGFACE_API_KEY", "SAMBANOVA_API_KEY", "TOGETHERAI_API_KEY", "FIREWORKS_API_KEY")


def llm_configured(env: Optional[dict[str, str]] = None) -> bool:
    """Whether CrewAI's environment names a usable LLM (a provider key, or a local model)."""
    env = dict(os.environ) if env is None else env
    model = (env.get("MODEL") or env.get("OPENAI_MODEL_NAME") or "").strip()
    if model.startswith(("ollama/", "ollama_chat/", "lm_studio/", "hosted_vllm/")):
        return True
    return any((env.get(k) or "").strip() for k in _KEY_VARS)
