"""`PerformanceAnalyticsCrew`: the `system_alert_manager` agent and its five tasks (`@CrewBase`).

The YAML lives once, in the top-level `config/` of a checkout, bundled into the wheel as
`perf_alerts/_bundled_config`; `packaged_config_dir()` finds either.

    crew = PerformanceAnalyticsCrew(llm=my_llm).crew()
    crew.kickoff(inputs={"lookback_hours": 24})
"""

from __future__ import annotations

from typing import Any, Optional, cast

from crewai import Agent, Crew, Process, Task
from crewai.project import CrewBase, agent, before_kickoff, crew, task

from perf_alerts.config import packaged_config_dir
from perf_alerts.crew.settings import (  # noqa: F401  (re-exported)
    DEFAULT_INPUTS, LLM_ENV_HINT, TASK_NAMES, kickoff_inputs, llm_configured,
)
from perf_alerts.crew.tool import AdvancedPerformanceAnalyticsTool, DiscordAlertTool

CONFIG_DIR = packaged_config_dir()


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

    # -- YAML config ------------------------------------------------------------------
    # @CrewBase replaces the `agents_config` / `tasks_config` paths above with the loaded
    # YAML ({name: {field: value}}) when the crew is instantiated; the class attributes are
    # typed `str`, so these accessors state the runtime type once.
    def _agent_config(self, name: str) -> dict[str, Any]:
        return cast("dict[str, dict[str, Any]]", self.agents_config)[name]

    def _task_config(self, name: str) -> dict[str, Any]:
        return cast("dict[str, dict[str, Any]]", self.tasks_config)[name]

    def _task_from_config(self, name: str) -> Task:
        # description / expected_output are filled in from `config` by Task's validator, but
        # its pydantic-generated __init__ signature marks them as required.
        return Task(config=self._task_config(name))  # type: ignore[call-arg]

    # -- kickoff inputs ----------------------------------------------------------------
    @before_kickoff
    def fill_default_inputs(self, inputs: Optional[dict[str, Any]]) -> dict[str, Any]:
        """Every `{placeholder}` of config/tasks.yaml gets its default (`DEFAULT_INPUTS`) unless the kickoff
        gives it: `crew().kickoff(inputs={"lookback_hours": 24})` works."""
        return kickoff_inputs(inputs)

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
            config=self._agent_config("system_alert_manager"),
            tools=[self.analytics_tool(), self.discord_tool()],
            allow_delegation=False,
            verbose=self.verbose,
            max_iter=self.max_iter,
            **kwargs,
        )

    # -- tasks (in run order) ------------------------------------------------------------
    @task
    def run_performance_analytics(self) -> Task:
        return self._task_from_config("run_performance_analytics")

    @task
    def monitor_performance_alerts(self) -> Task:
        return self._task_from_config("monitor_performance_alerts")

    @task
    def predictive_performance_analysis(self) -> Task:
        return self._task_from_config("predictive_performance_analysis")

    @task
    def optimize_system_performance(self) -> Task:
        return self._task_from_config("optimize_system_performance")

    @task
    def send_performance_executive_summary(self) -> Task:
        return self._task_from_config("send_performance_executive_summary")

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
