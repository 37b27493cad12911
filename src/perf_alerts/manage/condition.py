"""The policy condition language, as seen from `manage`: see `perf_alerts.condition`.

The parser lives below `config` (which validates `when:` with it); this module keeps the
names policies and their tests import.
"""

from perf_alerts.condition import (
    COMPARISONS,
    SEVERITY_KEYS,
    SIMPLE_VARIABLES,
    VARIABLE_HELP,
    Condition,
    ConditionError,
    check_variable,
    parse_condition,
)

__all__ = ["COMPARISONS", "SEVERITY_KEYS", "SIMPLE_VARIABLES", "VARIABLE_HELP", "Condition", "ConditionError",
           "check_variable", "parse_condition"]
