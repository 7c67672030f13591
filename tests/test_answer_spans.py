"""Answer-first generation's candidate answers: spans of a real paragraph by question type, and the
seeded pick of the k-th."""
from __future__ import annotations

from instructlake.udfs.answer_spans import candidates, pick

# The embedded sample's first WikiText paragraph, detokenized.
BOULTER = (
    "Robert Boulter is an English film, television and theatre actor. He had a guest-starring role on the television "
    "series The Bill in 2000. This was followed by a starring role in the play Herons written by Simon Stephens, which "
    "was performed in 2001 at the Royal Court Theatre. He had a guest role in the television series Judge John Deed in "
    "2002. In 2004 Boulter landed a role as \"Craig\" in the episode \"Teddy's Story\" of the television series The Long "
    "Firm; he starred alongside actors Mark Strong and Derek Jacobi. He was cast in the 2005 theatre productions of the "
    "Philip Ridley play Mercury Fur, which was performed at the Drum Theatre in Plymouth and the Menier Chocolate "
    "Factory in London."
)
APOLLO = (
    "Apollo 11 was the spaceflight that first landed humans on the Moon. Commander Neil Armstrong and lunar module "
    "pilot Buzz Aldrin landed on July 20, 1969, while Michael Collins stayed in lunar orbit because someone had to fly "
    "the command module. The crew brought back 21.5 kilograms of lunar material by using sample bags."
)


def test_spans_by_type():
    assert candidates(BOULTER, "when") == ["2000", "2001", "2002", "2004", "2005"]
    who = candidates(BOULTER, "who")
    assert {"Simon Stephens", "Mark Strong", "Derek Jacobi", "Philip Ridley"} <= set(who)
    assert "Robert Boulter" not in who  # a sentence's first words are not taken for a name
    assert candidates(BOULTER, "where") == ["the Royal Court Theatre", "the Drum Theatre", "Plymouth", "London"]
    assert candidates(APOLLO, "when") == ["July 20, 1969"]
    assert candidates(APOLLO, "why") == ["someone had to fly the command module"]
    assert candidates(APOLLO, "how") == ["21.5 kilograms"]
    assert candidates("Bees make honey by collecting nectar from flowers.", "how") == ["collecting nectar from flowers"]
    assert candidates(APOLLO, "what", topics=["lunar module", "moon landing"]) == ["lunar module"]  # a topic the text has
    assert candidates("", "who") == [] and candidates(None, "when") == [] and candidates(BOULTER, "why") == []


def test_pick_is_seeded_and_stable():
    spans = candidates(BOULTER, "when")
    first = [pick(spans, "0:abc:when", k) for k in range(len(spans))]
    assert sorted(first) == sorted(spans) and pick(spans, "0:abc:when", len(spans)) is None
    assert first == [pick(spans, "0:abc:when", k) for k in range(len(spans))]
    assert [pick(spans, f"{seed}:abc:when", 0) for seed in range(6)] != [first[0]] * 6  # another seed, other questions
    assert pick([], "s", 0) is None
