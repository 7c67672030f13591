"""Personal data in a pair: e-mail addresses, phone numbers, IP addresses, payment card and IBAN numbers.

The scorer (`find_pii`) finds them with libraries that know their shapes
and check digits, offline: phone numbers with Google's libphonenumber
(`phonenumbers`, strict grouping: a number valid for its region whose digit
groups are grouped as that region writes them; a bare run of digits with no
separator and no `+` is not taken for one, as digit runs in code and
arithmetic are far more common than unformatted phone numbers), payment
cards with the Luhn check and the issuers' prefixes and lengths, IBANs with
their ISO 7064 check digits and national lengths (`python-stdnum`), IP
addresses with the standard library's `ipaddress` (IPv4: four parts of at
most three digits; IPv6: at least three groups with digits, so that Python
slices such as `[1::2]` are not taken for addresses). E-mail addresses are
the one regular expression: a local part, `@`, a domain with a dotted
top-level domain of letters. Digits right after a decimal point are no card
number.

The decision, per `action`: `drop` sets `pii:<kind>` (the first kind found,
in the order of `kinds`); `redact` keeps the pair and writes its texts with
each finding replaced by a placeholder (`<EMAIL>`, `<PHONE>`,
`<IP_ADDRESS>`, `<CREDIT_CARD>`, `<IBAN>`) into `pii_instruction` and
`pii_response` (null where nothing was found): the export writes those, the
pairs table keeps the originals. `pii_kinds` lists the kinds found.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import ClassVar, Iterator, Literal, NamedTuple, Optional

import pandas as pd
import phonenumbers
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType
from stdnum import iban, luhn

from instructlake.core.config import FilterSpec
from instructlake.core.errors import ConfigError
from instructlake.udfs.filters.base import DROP_REASON, Filter, Rewrite, applies_to, set_reason

KINDS = ("email", "phone", "ip_address", "credit_card", "iban")
PLACEHOLDERS = {kind: f"<{kind.upper()}>" for kind in KINDS}
COLUMNS = ("pii_kinds", "pii_instruction", "pii_response")


@dataclass(kw_only=True)
class PiiFilter(FilterSpec):
    """Drops or redacts pairs that hold personal data (see `instructlake.udfs.filters.pii`)."""

    rule: Literal["pii"]
    kinds: list[Literal["email", "phone", "ip_address", "credit_card", "iban"]] = field(default_factory=lambda: list(KINDS))
    action: Literal["drop", "redact"] = "redact"
    # The region a phone number without a country code is read in (ISO 3166 code, as libphonenumber's).
    phone_region: str = "US"
    on_paragraphs: ClassVar[bool] = True

    def validate(self) -> None:
        if not self.kinds or len(set(self.kinds)) != len(self.kinds):
            raise ConfigError("kinds", f"list each kind once, at least one of {', '.join(KINDS)}")
        if self.phone_region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError("phone_region", f"not a region libphonenumber knows: {self.phone_region!r} (e.g. US, GB, DE)")


# --- the pure scorer ------------------------------------------------------------------

class Finding(NamedTuple):
    kind: str
    start: int
    end: int
    text: str


EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]*[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])")
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
CARD = re.compile(r"(?<![\w.,-])\d(?:[ -]?\d){12,18}(?![\w-]|[.,]\d)")
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
# Issuer prefixes and lengths of the payment card networks (ISO/IEC 7812 ranges in use).
CARD_NETWORKS = (
    (re.compile(r"^4"), (13, 16, 19)),                                   # Visa
    (re.compile(r"^(5[1-5]|2(2[2-9][1-9]|2[3-9]|[3-6]|7[01]|720))"), (16,)),  # Mastercard
    (re.compile(r"^3[47]"), (15,)),                                      # American Express
    (re.compile(r"^(6011|65|64[4-9])"), (16, 17, 18, 19)),               # Discover
    (re.compile(r"^35(2[89]|[3-8])"), (16, 17, 18, 19)),                 # JCB
    (re.compile(r"^3(0[0-5]|[689])"), (14, 16, 17, 18, 19)),             # Diners Club
)


def _card_ok(digits: str) -> bool:
    return any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in CARD_NETWORKS) and luhn.is_valid(digits)


def _ip_ok(candidate: str, version: int) -> bool:
    if version == 6 and sum(1 for group in candidate.split(":") if group) < 3:
        return False
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return address.version == version and not address.is_unspecified


def _regex_findings(text: str, kinds: set[str]) -> Iterator[Finding]:
    if "email" in kinds:
        yield from (Finding("email", m.start(), m.end(), m.group()) for m in EMAIL.finditer(text))
    if "credit_card" in kinds:
        for m in CARD.finditer(text):
            if _card_ok(re.sub(r"[ -]", "", m.group())):
                yield Finding("credit_card", m.start(), m.end(), m.group())
    if "iban" in kinds:
        yield from (Finding("iban", m.start(), m.end(), m.group()) for m in IBAN.finditer(text) if iban.is_valid(m.group()))
    if "ip_address" in kinds:
        yield from (Finding("ip_address", m.start(), m.end(), m.group()) for m in IPV4.finditer(text) if _ip_ok(m.group(), 4))
        yield from (Finding("ip_address", m.start(), m.end(), m.group()) for m in IPV6.finditer(text) if _ip_ok(m.group(), 6))


def _phone(match) -> Finding:
    """A phone number as found, without an opening bracket it does not close ("(1-800-222-1222")."""
    start, raw = match.start, match.raw_string
    if raw.startswith("(") and ")" not in raw:
        start, raw = start + 1, raw[1:]
    return Finding("phone", start, start + len(raw), raw)


def find_pii(text: Optional[str], kinds: tuple[str, ...] = KINDS, region: str = "US") -> list[Finding]:
    """The personal data in `text`, in text order, without overlaps (an earlier kind of `KINDS`
    wins where two overlap: a card number is not also a phone number)."""
    if not text:
        return []
    wanted = set(kinds)
    found = list(_regex_findings(text, wanted))
    if "phone" in wanted:
        matches = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.STRICT_GROUPING)
        found += [_phone(m) for m in matches if not m.raw_string.isdigit()]
    found.sort(key=lambda f: (KINDS.index(f.kind) if f.kind != "phone" else 4.5, f.start))
    kept: list[Finding] = []
    for f in found:
        if not any(f.start < k.end and k.start < f.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def redact(text: str, findings: list[Finding]) -> str:
    """`text` with each finding replaced by its kind's placeholder."""
    out, last = [], 0
    for f in findings:
        out += [text[last:f.start], PLACEHOLDERS[f.kind]]
        last = f.end
    return "".join(out + [text[last:]])


def score_pii(instruction: Optional[str], response: Optional[str], spec: PiiFilter) -> tuple[list[str], Optional[str], Optional[str]]:
    """(kinds found in either side, in `spec.kinds` order; the redacted instruction and response,
    None for a side with nothing found)."""
    found = {side: find_pii(text, tuple(spec.kinds), spec.phone_region) for side, text in (("i", instruction), ("r", response))}
    kinds = [k for k in spec.kinds if any(f.kind == k for fs in found.values() for f in fs)]
    return (kinds, redact(instruction, found["i"]) if found["i"] else None, redact(response, found["r"]) if found["r"] else None)


# --- Spark ----------------------------------------------------------------------------

SCHEMA = StructType([StructField("pii_kinds", ArrayType(StringType())), StructField("pii_instruction", StringType()),
                     StructField("pii_response", StringType())])


def pii_udf(spec: PiiFilter):
    """A `pandas_udf(wanted, instruction, response) -> struct<pii_kinds, pii_instruction, pii_response>`:
    null where `wanted` is false."""

    @F.pandas_udf(SCHEMA)
    def score(batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        for wanted, instruction, response in batches:
            rows = [score_pii(i, r, spec) if w is True else (None, None, None)
                    for w, i, r in zip(wanted.tolist(), instruction.tolist(), response.tolist())]
            yield pd.DataFrame(rows, columns=list(COLUMNS))

    return score


def with_pii(df: DataFrame, spec: PiiFilter, wanted: Column) -> DataFrame:
    """Adds `pii_kinds`, `pii_instruction`, `pii_response` (see the module doc) on the `wanted` rows."""
    scored = df.withColumn("_pii", pii_udf(spec)(F.coalesce(wanted, F.lit(False)), F.col("instruction"), F.col("response")))
    return scored.select("*", *[F.col(f"_pii.{c}").alias(c) for c in COLUMNS]).drop("_pii")


def filter_pii(df: DataFrame, spec: PiiFilter, texts_seen=None) -> DataFrame:
    """Finds personal data in the kept pairs of `spec.sources`; drops them (`pii:<kind>`) or keeps
    them with their redacted texts, per `spec.action`."""
    df = with_pii(df, spec, F.col(DROP_REASON).isNull() & applies_to(spec.sources))
    if spec.action == "redact":
        return df
    found = F.size(F.coalesce(F.col("pii_kinds"), F.array())) > 0
    return set_reason(df, [(found, F.concat(F.lit("pii:"), F.try_element_at(F.col("pii_kinds"), F.lit(1))))], spec.key)


def _rewrite(spec: PiiFilter) -> Optional[Rewrite]:
    return Rewrite("pii_instruction", "pii_response", "pii_kinds") if spec.action == "redact" else None


FILTER = Filter(spec=PiiFilter, apply=filter_pii, reasons=("pii",), rewrite=_rewrite)
