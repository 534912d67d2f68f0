"""Evaluating many segment configs against data in one pass, at a cost that follows the data.

Two pieces serve every segment type:

- `scoped`: the narrowing parameters (store_id, category, city, country) of all configs are
  reduced to their distinct *scopes*. Each fact row (an order, a customer) is matched to every
  scope it falls in with one broadcast equi-join on a scope key, whatever the number of configs.
- `threshold_join`: configs of one group that differ only by a threshold (min_orders,
  max_days_since_signup, ...) form a ladder of distinct steps. A fact whose value reaches k steps
  is joined to exactly the configs on those k steps: rows produced are the memberships
  themselves, never facts x configs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

SCOPE_KEY = "scope_key"
_UNSET = "\u0000"  # stands for "not narrowed on this attribute"
_MISSING = "\u0001"  # a fact's null attribute: matches no config value
_SEPARATOR = "\u001f"


def _key(parts: Sequence[Column]) -> Column:
    return F.concat_ws(_SEPARATOR, *parts)


def with_scope_key(configs: DataFrame, attributes: Sequence[str]) -> DataFrame:
    return configs.withColumn(SCOPE_KEY, _key([F.coalesce(F.col(a), F.lit(_UNSET)) for a in attributes]))


def scoped(facts: DataFrame, configs: DataFrame, fact_columns: Mapping[str, str]) -> DataFrame:
    """Facts, once per scope of `configs` they fall in, with that scope's key.

    `fact_columns` maps each narrowing attribute of the configs to the fact column it filters
    (e.g. `category` -> `store_category`). `configs` must already carry `with_scope_key`.
    """
    attributes = list(fact_columns)
    scopes = configs.select(SCOPE_KEY, *attributes).distinct().collect()
    # Which attributes each scope narrows on: at most 2^len(attributes) patterns, usually a few.
    patterns = sorted({tuple(row[a] is not None for a in attributes) for row in scopes})
    if not patterns:
        return facts.withColumn(SCOPE_KEY, F.lit(None).cast("string")).limit(0)
    candidate_keys = [
        _key(
            [
                F.coalesce(F.col(fact_columns[a]), F.lit(_MISSING)) if narrowed else F.lit(_UNSET)
                for a, narrowed in zip(attributes, pattern)
            ]
        )
        for pattern in patterns
    ]
    scope_keys = configs.select(SCOPE_KEY).distinct()
    return facts.withColumn(SCOPE_KEY, F.explode(F.array(*candidate_keys))).join(
        F.broadcast(scope_keys), SCOPE_KEY
    )


def threshold_join(
    facts: DataFrame,
    configs: DataFrame,
    *,
    group: Sequence[str],
    value: str,
    threshold: str,
    reached_when: Literal["value >= threshold", "value <= threshold"],
) -> DataFrame:
    """Each fact joined to every config of its group whose threshold its value reaches."""
    ascending = reached_when == "value >= threshold"
    ladders = configs.groupBy(*group).agg(F.sort_array(F.collect_set(threshold), asc=ascending).alias("steps"))
    ranked_configs = (
        configs.join(ladders, list(group))
        .withColumn("step", F.array_position("steps", F.col(threshold)))
        .drop("steps")
    )
    fact_value = F.col(value)
    steps_reached = F.size(F.filter("steps", lambda t: t <= fact_value if ascending else t >= fact_value))
    climbed = (
        facts.join(F.broadcast(ladders), list(group))
        .withColumn("reached", steps_reached)
        .where(F.col("reached") > 0)
        .withColumn("step", F.explode(F.sequence(F.lit(1).cast("long"), F.col("reached").cast("long"))))
        .drop("steps", "reached")
    )
    return climbed.join(F.broadcast(ranked_configs), [*group, "step"])
