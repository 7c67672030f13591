"""The one text normalizer: the pure function, its Spark form, and the two steps that use it."""
from __future__ import annotations

from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from conftest import LOCAL, local_conf
from instructlake.core.config import Normalization
from instructlake.udfs.text import normalize, normalized_col

EDGES = [None, "", " \t\n ", "Hello,   World!\n", "Ｔｈｅ ﬁnal ＣＯＤＥ", "a+b", "«Ça va?» — oui…", "x" * 5000, "价格 $5 ＝ ５元"]


def test_normalize():
    assert normalize(None) == normalize("") == normalize(" \t\n ") == ""
    assert normalize("Hello,   World!\n") == "hello world"
    # NFKC: ligatures and full-width forms become plain letters; then lower case.
    assert normalize("Ｔｈｅ ﬁnal ＣＯＤＥ") == "the final code"
    # Punctuation and symbols are word breaks: code and prose tokenize alike.
    assert normalize("def has_close_elements(numbers: List[float]) -> bool:") == "def has close elements numbers list float bool"
    assert normalize("a+b") == normalize("a + b") == normalize("a_b") == "a b"
    assert normalize("«Ça va?» — oui…") == "ça va oui"
    assert normalize("Hello, World", Normalization(lowercase=False, strip_punctuation=False)) == "Hello, World"
    assert normalize("ﬁ", Normalization(nfkc=False)) == "ﬁ"


def test_the_spark_form_is_the_pure_function(spark):
    for spec in (Normalization(), Normalization(nfkc=False, lowercase=False), Normalization(strip_punctuation=False)):
        df = spark.createDataFrame([(i, t) for i, t in enumerate(EDGES)], "i int, t string")
        got = df.select("i", normalized_col(F.col("t"), spec).alias("n"))
        assertDataFrameEqual(got, [(i, normalize(t, spec)) for i, t in enumerate(EDGES)], checkRowOrder=False)


def test_dedup_and_decontamination_normalize_alike(tmp_path):
    conf = local_conf(tmp_path, conf=LOCAL)
    decontamination = next(f for f in conf.filters if f.rule == "decontamination")
    assert conf.dedup.normalization == decontamination.normalization == Normalization()
