"""The preference and conversations products: their silver tables, their export, and their files
loaded the way trainers load them (Hugging Face datasets, TRL's own helpers, OpenAI's and
ShareGPT's rules)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from conftest import LOCAL, SMALL_LAKE, local_conf
from instructlake.core.errors import ConfigError
from instructlake.core.lake import Lake, RunContext, latest_version
from instructlake.jobs.stages.products import drop_repeats, judge_later_turns, product_filters, run_products
from instructlake.udfs.filters import DROP_REASON

@pytest.fixture(scope="module")
def products_export(all_formats_export):
    """(conf, ExportResult, release folder) of the export of every product and format (conftest)."""
    return all_formats_export


def lines(release: Path, manifest: dict, product: str, fmt: str, split: str | None = None) -> list[dict]:
    """The rows of one product's format, file by file in part order."""
    files = [f for f in manifest["files"] if f["product"] == product and f["format"] == fmt and split in (None, f["split"])]
    return [json.loads(line) for f in files for line in (release / f["file"]).read_text(encoding="utf-8").splitlines()]


def test_every_record_is_counted_and_kept_rows_are_exported(spark, small_lake, products_export):
    conf, result, release = products_export
    lake = Lake.of(conf)
    bronze = {s: spark.read.format("delta").load(lake.bronze(s)).count() for s in ("helpful_online", "red_team_attempts")}
    products = result.manifest["products"]
    assert set(products) == {"preference", "conversations"}
    # rows in = kept + dropped, per product and source
    assert sum(c["read"] for c in products["preference"]["counts"].values()) == bronze["helpful_online"]
    assert sum(c["read"] for c in products["conversations"]["counts"].values()) == bronze["helpful_online"] + bronze["red_team_attempts"]
    for p in products.values():
        for source, c in p["counts"].items():
            assert c["kept"] + sum(d["rows"] for d in c["dropped"].values()) == c["read"]
            assert sum(p["exported"][source].values()) == c["kept"]
    by_stage = products["conversations"]["counts"]["hh_harmless"]["dropped"]
    assert by_stage["red_team_rating"]["reasons"] == {"red_team_rating_too_high": 20}  # the rating filter applies
    # every kept row is in each of the product's formats, once
    for product, fmts in (("preference", ("conversational", "standard")), ("conversations", ("chat", "openai", "sharegpt"))):
        kept = sum(c["kept"] for c in products[product]["counts"].values())
        for fmt in fmts:
            assert len(lines(release, result.manifest, product, fmt)) == kept > 100


def test_rows_trace_back_to_their_bronze_rows(spark, products_export):
    conf, result, release = products_export
    lake = Lake.of(conf)
    bronze = {}
    for name in ("helpful_online", "red_team_attempts"):
        for r in spark.read.format("delta").load(lake.bronze(name)).collect():
            bronze[(r["source_file"], r["row_index"])] = r
    for product, fmt in (("preference", "conversational"), ("conversations", "chat"), ("pairs", "chat")):
        rows = lines(release, result.manifest, product, fmt)
        assert rows
        for row in rows:
            record = bronze[(row["meta"]["source_file"], row["meta"]["row_index"])]
            assert record["content_id"] == row["id"]
    for row in lines(release, result.manifest, "preference", "conversational"):
        record = bronze[(row["meta"]["source_file"], row["meta"]["row_index"])]
        assert row["chosen"][0]["content"] in record["chosen"] and row["rejected"][0]["content"] in record["rejected"]
        assert row["prompt"][0]["content"].split("\n")[0] in record["chosen"]


def test_datasets_and_trl_load_the_products(spark, products_export):
    """`datasets.load_dataset(release, <config>)` by the card's configs, and TRL's dataset helpers
    with the embedded model's own chat template."""
    datasets = pytest.importorskip("datasets")
    data_utils = pytest.importorskip("trl.data_utils")
    conf, result, release = products_export
    tokenizer = chat_tokenizer()
    counts = result.manifest["products"]
    loaded = {}
    for config in ("preference", "preference_standard", "conversations", "conversations_openai", "conversations_sharegpt",
                   "chat", "openai", "sharegpt", "alpaca"):
        loaded[config] = datasets.load_dataset(str(release), config)
        assert set(loaded[config]) == {"train", "validation"}
    for config, product in (("preference", "preference"), ("conversations", "conversations")):
        assert sum(len(s) for s in loaded[config].values()) == sum(c["kept"] for c in counts[product]["counts"].values())
    pref = loaded["preference"]["train"][0]
    assert data_utils.is_conversational(pref)
    applied = data_utils.maybe_apply_chat_template({k: pref[k] for k in ("prompt", "chosen", "rejected")}, tokenizer)
    assert applied["prompt"].endswith("<|im_start|>assistant\n")
    assert applied["chosen"] == pref["chosen"][0]["content"] + "<|im_end|>\n"
    assert applied["rejected"] == pref["rejected"][0]["content"] + "<|im_end|>\n"
    standard = loaded["preference_standard"]["train"][0]
    assert not data_utils.is_conversational(standard) and standard["id"] == pref["id"]
    assert standard["prompt"].endswith("\n\nAssistant: ") and standard["chosen"] == pref["chosen"][0]["content"]
    assert data_utils.maybe_apply_chat_template({k: standard[k] for k in ("prompt", "chosen", "rejected")}, tokenizer) == \
        {k: standard[k] for k in ("prompt", "chosen", "rejected")}
    for config in ("conversations", "chat"):
        row = loaded[config]["train"][0]
        assert data_utils.is_conversational(row)
        text = data_utils.maybe_apply_chat_template({"messages": row["messages"]}, tokenizer)["text"]
        assert text.count("<|im_start|>assistant\n") == sum(m["role"] == "assistant" for m in row["messages"])


def chat_tokenizer():
    """A tokenizer carrying SmolLM2-135M-Instruct's chat template, read from the embedded GGUF."""
    from llama_cpp import Llama  # heavy, optional: only this test reads the model's metadata
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from instructlake.udfs.llm import default_gguf

    template = Llama(default_gguf(), vocab_only=True, verbose=False).metadata["tokenizer.chat_template"]
    words = Tokenizer(models.WordLevel({"[UNK]": 0, "<|im_end|>": 1}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", eos_token="<|im_end|>")
    tokenizer.chat_template = template
    return tokenizer


def check_openai_line(row: dict) -> None:
    """OpenAI's fine-tuning file rules for chat models (as its data-preparation guide checks them):
    only `messages`; each message a role of system/user/assistant and string content; an assistant
    turn, and the last turn the assistant's."""
    assert set(row) == {"messages"}
    messages = row["messages"]
    assert messages and all(set(m) == {"role", "content"} for m in messages)
    assert all(m["role"] in ("system", "user", "assistant") and isinstance(m["content"], str) and m["content"] for m in messages)
    assert messages[-1]["role"] == "assistant"


def check_sharegpt_line(row: dict) -> None:
    """ShareGPT as trainers read it: `conversations` of `from` human/gpt alternating from human,
    ending on gpt, each with a `value`."""
    turns = row["conversations"]
    assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2) and len(turns) % 2 == 0
    assert all(isinstance(t["value"], str) and t["value"] for t in turns)


def test_openai_sharegpt_and_alpaca_rules(products_export):
    conf, result, release = products_export
    for product in ("pairs", "conversations"):
        openai = lines(release, result.manifest, product, "openai")
        chat = lines(release, result.manifest, product, "chat")
        sharegpt = lines(release, result.manifest, product, "sharegpt")
        assert len(openai) == len(chat) == len(sharegpt) > 0
        for o, c, s in zip(openai, chat, sharegpt):  # the same rows in the same order
            check_openai_line(o)
            check_sharegpt_line(s)
            assert o["messages"] == c["messages"] and s["id"] == c["id"]
            assert [t["value"] for t in s["conversations"]] == [m["content"] for m in c["messages"]]
    assert max(len(r["messages"]) for r in lines(release, result.manifest, "conversations", "openai")) > 2
    for row, pair in zip(lines(release, result.manifest, "pairs", "alpaca"), lines(release, result.manifest, "pairs", "chat")):
        assert row["input"] == "" and (row["instruction"], row["output"]) == tuple(m["content"] for m in pair["messages"])


def test_report_and_card_show_each_product(products_export):
    conf, result, release = products_export
    report = json.loads((release / "report.json").read_text())
    assert set(report["products"]) == {"preference", "conversations"}
    assert report["products"]["preference"]["hh_helpful"]["kept"] == result.manifest["products"]["preference"]["counts"]["hh_helpful"]["kept"]
    html = (release / "report.html").read_text()
    section = html[html.index('<section id="products">'):]
    assert "red_team_rating_too_high 20" in section[:section.index("</section>")]
    card = (release / "README.md").read_text()
    for config in ("preference", "preference_standard", "conversations", "conversations_openai", "conversations_sharegpt"):
        assert f"config_name: {config}\n" in card
    assert "## Preference pairs and conversations" in card


def test_a_rerun_leaves_the_tables_alone(spark, small_lake):
    conf = local_conf(small_lake, *SMALL_LAKE, conf=LOCAL, products=True)
    lake = Lake.of(conf)
    before = {name: latest_version(spark, getattr(lake, name)) for name in ("preference", "conversations")}
    results = run_products(spark, conf, RunContext())
    assert {n: (r.version, r.rebuilt) for n, r in results.items()} == {n: (v, False) for n, v in before.items()}


def test_later_turns_and_repeats_drop_conversations(spark, tmp_path):
    """Every-turn filters drop a conversation at its first failing later exchange; repeated texts
    keep the row of the first source in conf order."""
    conf = local_conf(tmp_path, conf=LOCAL, products=True)
    toxic = "You are a fucking idiot, shut the fuck up you stupid piece of shit."
    rows = [
        ("a", ["Hi", "Hello there.", "Insult me", toxic, "Why?", "Sorry."]),
        ("b", ["Hi", "Hello there.", "How are you?", "Fine, thanks."]),
        ("c", ["Hi", "Hello there.", "How are you?", "Fine,   THANKS!"]),  # b, normalized
    ]
    df = spark.createDataFrame(
        [("hh_helpful", "s", "f", i, key, [{"role": ("user", "assistant")[k % 2], "content": t} for k, t in enumerate(turns)],
          None, False, None, None) for i, (key, turns) in enumerate(rows)],
        "source string, source_name string, source_file string, row_index long, content_id string, "
        "messages array<struct<role:string,content:string>>, red_team_rating double, is_code boolean, "
        "drop_reason string, drop_stage string")
    specs = product_filters(conf, "conversations", ["toxicity"])
    judged = judge_later_turns(df, specs)
    from instructlake.udfs.conversation import turns_text

    out = {r["content_id"]: r for r in drop_repeats(judged, conf, turns_text(F.col("messages")), "duplicate_of").collect()}
    assert (out["a"][DROP_REASON], out["a"]["drop_stage"], out["a"]["failed_exchange"]) == ("toxic_response", "toxicity", 2)
    assert out["b"][DROP_REASON] is None and out["c"][DROP_REASON] == "duplicate_of:b"


@pytest.mark.parametrize("override,key,message", [
    ("products.preference.filters=[nope]", "products.preference.filters[0]", "unknown filter 'nope'"),
    ("products.conversations.sources=[nope]", "products.conversations.sources[0]", "unknown source 'nope'"),
    ("products.preference.formats=[]", "products.preference.formats", "at least one"),
])
def test_product_conf_errors_name_the_key(tmp_path, override, key, message):
    with pytest.raises(ConfigError) as e:
        local_conf(tmp_path, override, conf=LOCAL, products=True)
    assert key in str(e.value) and message in str(e.value)


def test_a_rewriting_filter_cannot_judge_a_product(tmp_path):
    conf = local_conf(tmp_path, "products.preference.filters=[pii]", conf=LOCAL, products=True)
    with pytest.raises(ConfigError, match="rewrites texts"):
        product_filters(conf, "preference", conf.products.preference.filters)
    conf = local_conf(tmp_path, "sources.conala.enabled=true", "products.conversations.sources=[conala]", conf=LOCAL, products=True)
    from instructlake.jobs.stages.products import product_sources
    with pytest.raises(ConfigError, match="has no dialogue"):
        product_sources(conf, "conversations")


def test_the_pipeline_stages_make_every_product(spark, small_lake, tmp_path):
    """The stage list's pairs and export stages (as `instructlake run` runs them) bring the product
    tables up to date and publish them, and the closing summary names them within its width."""
    from instructlake.jobs.runner import run_pipeline
    from instructlake.jobs.summary import WIDTH, summary

    conf = local_conf(small_lake, *SMALL_LAKE, f"paths.output={(tmp_path / 'out').as_uri()}", conf=LOCAL, products=True)
    result = run_pipeline(spark, conf, RunContext(), stages=("pairs", "export"))
    assert set(result.pairs.products) == {"preference", "conversations"}
    assert not any(p.rebuilt for p in result.pairs.products.values())  # the lake is up to date
    assert set(result.export.manifest["products"]) == {"preference", "conversations"}
    text = summary(result)
    assert max(len(line) for line in text.splitlines() if str(tmp_path) not in line) <= WIDTH  # but the output's path
    kept = result.pairs.products["preference"].kept
    assert f"preference: {kept} of " in text and "conversations: " in text
