"""Configuration: every kind of invalid conf gives an error naming the file and the key."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from instructlake.core.config import CONF_DIR, Config
from instructlake.jobs.runner import load_config
from instructlake.udfs.filters.decontamination import DecontaminationFilter
from instructlake.udfs.filters.pii import PiiFilter
from instructlake.udfs.filters.language import LanguageFilter
from instructlake.udfs.filters.length import LengthFilter
from instructlake.udfs.filters.red_team_rating import RedTeamRatingFilter
from instructlake.udfs.filters.template_tokens import TemplateTokensFilter
from instructlake.udfs.filters.toxicity import ToxicityFilter
from instructlake.core.confload import ConfigError

BASE = """
sources:
  - name: helpful_online
    label: hh_helpful
    format: hh_rlhf
    paths: [a.jsonl.gz]
  - name: red_team_attempts
    label: hh_harmless
    format: red_team
    paths: [b.json]
filters:
  - rule: response_length
    min_chars: 100
    sources: [hh_helpful]
  - rule: red_team_rating
    max_rating: 2
"""


def write(tmp_path: Path, text: str, name: str = "conf.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error_of(path, overrides=None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return info.value


def test_shipped_confs_load():
    local = load_config(CONF_DIR / "local.yaml")
    base = load_config(CONF_DIR / "base.yaml")
    assert isinstance(local, Config) and isinstance(base, Config)
    assert [s.name for s in local.sources] == ["helpful_online", "helpful_rejection_sampled", "red_team_attempts", "wikitext", "conala", "mbpp"]
    assert local.export.rows_per_part == 250 and base.export.rows_per_part == 10000
    # The overlay keeps the base's filters, in order, with the seed's thresholds.
    assert [type(f) for f in local.filters] == [TemplateTokensFilter, LengthFilter, LengthFilter, RedTeamRatingFilter,
                                                DecontaminationFilter, LanguageFilter, ToxicityFilter, PiiFilter]
    assert local.filters[0] == base.filters[0] and local.filters[0].sources is None  # every source
    assert local.filters[7] == base.filters[7] and local.filters[7].action == "redact"
    # The decontamination benchmarks are the same in both (local.yaml repeats the list).
    assert local.filters[4] == base.filters[4] and [b.name for b in base.filters[4].benchmarks] == ["humaneval", "mbpp", "gsm8k", "squad"]
    # Local mode scores toxicity with the shipped offline model; the base conf names Detoxify.
    assert local.filters[6].backend == "profanity_check" and load_config(CONF_DIR / "base.yaml").filters[6].backend == "detoxify"
    assert local.filters[2].min_chars == 100 and local.filters[2].sources == ["hh_helpful"]
    assert local.filters[3].max_rating == 2.0 and local.filters[3].sources == ["hh_harmless"]
    assert local.export.template == "User: {instruction}\n\nAssistant: {response}<|endoftext|>"


def test_overlay_merges_mappings_and_replaces_lists(tmp_path):
    write(tmp_path, BASE + "export:\n  seed: 7\n  rows_per_part: 5\n", "base.yaml")
    over = write(tmp_path, "extends: base.yaml\nexport:\n  seed: 9\nspark:\n  shuffle_partitions: 3\n")
    conf = load_config(over)
    assert (conf.export.seed, conf.export.rows_per_part, conf.spark.shuffle_partitions) == (9, 5, 3)
    assert len(conf.sources) == 2


@pytest.mark.parametrize(
    "text,key,message",
    [
        (BASE + "exprot:\n  seed: 1\n", "exprot", "unknown key (did you mean 'export'?)"),
        (BASE + "export:\n  rows_per_prat: 5\n", "export.rows_per_prat", "did you mean 'rows_per_part'"),
        (BASE + "export:\n  rows_per_part: ten\n", "export.rows_per_part", "expected an integer"),
        (BASE + "export:\n  rows_per_part: 0\n", "export.rows_per_part", "must be >= 1"),
        (BASE + "export:\n  rows_per_part: true\n", "export.rows_per_part", "expected an integer"),
        (BASE + "export:\n  order: random\n", "export.order", "expected one of 'shuffle', 'source'"),
        (BASE + "export:\n  num_parts: 3\n", "export.rows_per_part", "exactly one of rows_per_part and num_parts"),
        (BASE + "export:\n  template: 'User: {instruction} {response}'\n", "export.template", "blank line"),
        (BASE + "export:\n  name: 'a/b'\n", "export.name", "plain file-name stem"),
        (BASE + "spark:\n  shuffle_partitions: -1\n", "spark.shuffle_partitions", "must be >= 1"),
        (BASE + "spark:\n  options: [a, b]\n", "spark.options", "expected a mapping"),
        (BASE + "paths: nowhere\n", "paths", "expected a mapping"),
        (BASE.replace("max_rating: 2", "max_rating: 5"), "filters[1].max_rating", "must be <= 4"),
        (BASE.replace("max_rating: 2", "max_rating: high"), "filters[1].max_rating", "expected a number"),
        (BASE.replace("min_chars: 100", "min_chars: -1"), "filters[0].min_chars", "must be >= 0"),
        (BASE.replace("min_chars: 100", "min_chars: 100\n    max_chars: 50"), "filters[0].max_chars", "must be >= min_chars"),
        (BASE.replace("rule: red_team_rating", "rule: toxicity_magic"), "filters[1].rule", "expected one of"),
        (BASE.replace("sources: [hh_helpful]", "sources: [hh_helpfull]"), "filters[0].sources", "unknown source label 'hh_helpfull'"),
        (BASE.replace("format: red_team", "format: csv"), "sources[1].format", "expected one of 'conala', 'hh_rlhf'"),
        (BASE.replace("label: hh_harmless", "label: Harmless Set"), "sources[1].label", "lower-case"),
        (BASE.replace("name: red_team_attempts", "name: helpful_online"), "sources[1].name", "duplicate source name"),
        (BASE.replace("paths: [b.json]", "paths: []"), "sources[1].paths", "at least one input path"),
        (BASE.replace("paths: [b.json]", "paths: b.json"), "sources[1].paths", "expected a list"),
        (BASE.replace("    paths: [b.json]\n", ""), "sources[1].paths", "required key is missing"),
        ("spark:\n  master: local\n", "sources", "required key is missing"),
    ],
)
def test_invalid_conf_names_file_and_key(tmp_path, text, key, message):
    path = write(tmp_path, text)
    err = error_of(path)
    assert err.key == key
    assert message in err.message
    assert str(err).startswith(f"{path}: {key}: ")


def test_error_names_the_overlay_that_set_the_value(tmp_path):
    write(tmp_path, BASE, "base.yaml")
    over = write(tmp_path, "extends: base.yaml\nexport:\n  seed: not-a-number\n", "local.yaml")
    err = error_of(over)
    assert err.origin == str(over) and err.key == "export.seed"
    # ... and the base file when the bad value is the base's.
    write(tmp_path, BASE + "export:\n  seed: bad\n", "base.yaml")
    over = write(tmp_path, "extends: base.yaml\nspark:\n  master: local\n", "local.yaml")
    err = error_of(over)
    assert err.origin == str(tmp_path / "base.yaml") and err.key == "export.seed"


def test_unreadable_files(tmp_path):
    err = error_of(tmp_path / "missing.yaml")
    assert "configuration file not found" in str(err) and "missing.yaml" in str(err)
    err = error_of(write(tmp_path, "sources: [unclosed\n"))
    assert "not valid YAML" in str(err)
    err = error_of(write(tmp_path, "- just\n- a list\n"))
    assert "expected a mapping at the top" in str(err)
    err = error_of(write(tmp_path, "extends: nowhere.yaml\n" + BASE))
    assert "nowhere.yaml" in str(err) and "not found" in str(err)
    a = write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    assert "circular" in str(error_of(a))


def test_overrides(tmp_path):
    path = write(tmp_path, BASE)
    conf = load_config(
        path,
        [
            "export.rows_per_part=500",
            "filters.response_length.min_chars=50",
            "filters.1.max_rating=1",
            "sources.red_team_attempts.enabled=false",
            "spark.options.spark.executor.memory=2g",
        ],
    )
    assert conf.export.rows_per_part == 500
    assert conf.filters[0].min_chars == 50 and conf.filters[1].max_rating == 1.0
    assert [s.name for s in conf.enabled_sources] == ["helpful_online"]


@pytest.mark.parametrize(
    "override,key,message",
    [
        ("export.rows_per_part=abc", "export.rows_per_part", "expected an integer"),
        ("export.bogus=1", "export.bogus", "unknown key"),
        ("filters.9.min_chars=1", "filters[9]", "index out of range"),
        ("sources.nope.enabled=false", "sources.nope", "no list item has this name"),
        ("export.rows_per_part", "export.rows_per_part", "dotted.key=value"),
    ],
)
def test_bad_overrides_name_the_override(tmp_path, override, key, message):
    err = error_of(write(tmp_path, BASE), [override])
    assert err.origin == "--set"
    assert err.key == key and message in err.message


def test_digest_changes_with_conf(tmp_path):
    path = write(tmp_path, BASE)
    a, b = load_config(path), load_config(path, ["export.seed=1"])
    assert a.digest() == load_config(path).digest()
    assert a.digest() != b.digest()
    assert re.fullmatch(r"[0-9a-f]{64}", a.digest())


RED_TEAM_ONLY = """extends: {base}
sources:
  - name: red_team_attempts
    label: hh_harmless
    format: red_team
    paths: [b.json]
"""


def test_an_overlay_may_enable_a_subset_of_the_sources(tmp_path, caplog):
    """base.yaml's filters and dedup name hh_helpful; an overlay with only the red-team source
    leaves those references out, one notice each, instead of failing."""
    over = write(tmp_path, RED_TEAM_ONLY.format(base=CONF_DIR / "base.yaml"))
    with caplog.at_level("INFO", logger="instructlake.conf"):
        conf = load_config(over)
    by_key = {f.key: f for f in conf.filters}
    assert by_key["response_length"].sources == [] and by_key["red_team_rating"].sources == ["hh_harmless"]
    assert by_key["toxicity"].instruction_sources == [] and conf.dedup.near_sources == ["hh_harmless"]
    base = str(CONF_DIR / "base.yaml")
    assert [r.getMessage() for r in caplog.records] == [
        f"{base}: filters[2].sources: source label 'hh_helpful' is not a source of {over}; left out",
        f"{base}: filters[6].instruction_sources: source label 'hh_helpful' is not a source of {over}; left out",
        *[f"{base}: export.seed_rows.{label}: source label {label!r} is not a source of {over}; left out"
          for label in ("hh_helpful", "conala", "synthetic_qa")],
        f"{base}: dedup.near_sources: source label 'hh_helpful' is not a source of {over}; left out",
    ]


def test_a_label_no_file_defines_is_still_an_error(tmp_path):
    text = RED_TEAM_ONLY.format(base=CONF_DIR / "base.yaml") + "dedup:\n  near_sources: [hh_harmles]\n"
    err = error_of(write(tmp_path, text))
    assert (err.origin, err.key) == (str(tmp_path / "conf.yaml"), "dedup.near_sources")
    assert "unknown source label 'hh_harmles'" in err.message
    # ... and so is a label the overlay names itself, though the base defines it: this file means it.
    err = error_of(write(tmp_path, RED_TEAM_ONLY.format(base=CONF_DIR / "base.yaml") + "dedup:\n  near_sources: [hh_helpful]\n"))
    assert (err.origin, err.key) == (str(tmp_path / "conf.yaml"), "dedup.near_sources")
    # ... and one set by --set.
    err = error_of(write(tmp_path, RED_TEAM_ONLY.format(base=CONF_DIR / "base.yaml")), ["export.max_rows_per_source={hh_helpful: 5}"])
    assert (err.origin, err.key) == ("--set", "export.max_rows_per_source.hh_helpful")


def test_filters_are_named_by_their_key_and_two_of_one_rule_need_names(tmp_path):
    two = BASE + "  - rule: response_length\n    max_chars: 5000\n"
    err = error_of(write(tmp_path, two))
    assert (err.key, err.message) == ("filters[2].name", "two filters are called 'response_length': give one a `name` of its own")
    conf = load_config(write(tmp_path, two + "    name: response_cap\n"))
    assert [f.key for f in conf.filters] == ["response_length", "red_team_rating", "response_cap"]
