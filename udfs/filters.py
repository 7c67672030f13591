"""The filters over the pairs table: score columns, then drop reasons from conf.

Scorers add columns (`with_*`); filters only set `drop_reason` (`filter_*`),
and only on rows that no earlier filter dropped, so `drop_reason` is always
the first failing filter in conf order. The cheap filters here are built-in
Column expressions: no Python runs per row. The model filters (`language`
in `udfs.language`, `toxicity` in `udfs.toxicity`) run pandas UDFs that
score only the rows still kept when their turn comes; rows dropped before
keep null scores. `decontamination` (`udfs.decontamination`) joins the word
n-grams of the kept pairs with those of evaluation benchmarks.
"""
from __future__ import annotations

from functools import reduce
from typing import Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.config import DecontaminationFilter, FilterSpec, LanguageFilter, LengthFilter, RedTeamRatingFilter, ToxicityFilter

DROP_REASON = "drop_reason"


def with_text_lengths(df: DataFrame) -> DataFrame:
    """Adds `instruction_chars` and `response_chars` (characters, null when the split failed)."""
    return df.withColumn("instruction_chars", F.length("instruction")).withColumn(
        "response_chars", F.length("response")
    )


def reason_kind(reason: Column) -> Column:
    """A drop reason's kind: the part before its first `:` (`duplicate_of:<pair_id>` ->
    `duplicate_of`); a reason without `:` is its own kind, null stays null."""
    return F.substring_index(reason, ":", 1)


def applies_to(labels: Optional[list[str]]) -> Column:
    """True on rows of the given source labels (all rows when None, none when empty)."""
    if labels is None:
        return F.lit(True)
    return F.col("source").isin(labels) if labels else F.lit(False)


def set_reason(df: DataFrame, rules: list[tuple[Column, str]]) -> DataFrame:
    """Sets `drop_reason` to the first rule whose condition holds, on kept rows only."""
    decision = reduce(
        lambda acc, rule: acc.when(rule[0], F.lit(rule[1])),
        rules,
        F.when(F.col(DROP_REASON).isNotNull(), F.col(DROP_REASON)),
    )
    return df.withColumn(DROP_REASON, decision)


def filter_length(df: DataFrame, spec: LengthFilter) -> DataFrame:
    """Drops pairs whose instruction or response length lies outside [min_chars, max_chars]."""
    what = "instruction" if spec.rule == "instruction_length" else "response"
    chars = F.col(f"{what}_chars")
    applies = applies_to(spec.sources)
    rules = []
    if spec.min_chars is not None:
        rules.append((applies & (chars < spec.min_chars), f"{what}_too_short"))
    if spec.max_chars is not None:
        rules.append((applies & (chars > spec.max_chars), f"{what}_too_long"))
    return set_reason(df, rules)


def filter_red_team_rating(df: DataFrame, spec: RedTeamRatingFilter) -> DataFrame:
    """Drops red-team pairs rated outside [min_rating, max_rating] (0 = attack failed, 4 = succeeded).

    Applies to rows from `red_team`-format sources (restricted further to
    `spec.sources` when set); a missing rating is a drop reason of its own.
    """
    applies = applies_to(spec.sources) & (F.col("source_format") == "red_team")
    rating = F.col("red_team_rating")
    return set_reason(
        df,
        [
            (applies & rating.isNull(), "red_team_rating_missing"),
            (applies & (rating > spec.max_rating), "red_team_rating_too_high"),
            (applies & (rating < spec.min_rating), "red_team_rating_too_low"),
        ],
    )


def filter_language(df: DataFrame, spec: LanguageFilter, texts_seen=None) -> DataFrame:
    from udfs.language import filter_language as run

    return run(df, spec, texts_seen)


def filter_toxicity(df: DataFrame, spec: ToxicityFilter, texts_seen=None) -> DataFrame:
    from udfs.toxicity import filter_toxicity as run

    return run(df, spec, texts_seen)


def filter_decontamination(df: DataFrame, spec: DecontaminationFilter) -> DataFrame:
    """`contaminated:<benchmark>` for pairs sharing a word n-gram with a benchmark (`udfs.decontamination`)."""
    if not spec.enabled:
        return df
    from udfs.decontamination import filter_decontamination as run

    return run(df, spec)


FILTERS = {
    "instruction_length": filter_length,
    "response_length": filter_length,
    "red_team_rating": filter_red_team_rating,
    "language": filter_language,
    "toxicity": filter_toxicity,
    "decontamination": filter_decontamination,
}
MODEL_FILTERS = ("language", "toxicity")


def filter_key(spec: FilterSpec) -> str:
    return spec.name or spec.rule


def scorer_names(specs: list[FilterSpec]) -> dict[str, str]:
    """Versioned scorer names of the enabled model filters, by filter name, e.g.
    `{"language": "lang/langdetect-1.0.9", "toxicity": "toxicity/detoxify-original"}`."""
    names = {}
    for spec in specs:
        if spec.rule == "language" and spec.enabled:
            from udfs.language import scorer_name

            names[filter_key(spec)] = scorer_name()
        elif spec.rule == "toxicity" and spec.enabled:
            from udfs.toxicity import scorer_name

            names[filter_key(spec)] = scorer_name(spec)
    return names


def apply_filters(df: DataFrame, specs: list[FilterSpec], texts_seen: Optional[dict] = None) -> DataFrame:
    """Applies every configured filter in conf order (model filters only when `enabled`).

    With `texts_seen` (a dict), each model filter puts a Spark accumulator
    there under its name, counting the texts its model scored.
    """
    for spec in specs:
        if spec.rule in MODEL_FILTERS:
            if not spec.enabled:
                continue
            counter = None
            if texts_seen is not None:
                counter = texts_seen[filter_key(spec)] = df.sparkSession.sparkContext.accumulator(0)
            df = FILTERS[spec.rule](df, spec, counter)
        else:
            df = df.transform(FILTERS[spec.rule], spec)
    return df
