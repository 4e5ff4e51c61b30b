"""smskit.segments: GSM-7/UCS-2 detection, part counts, cost and transliteration.

The differential tests (marker ``node``) compare every count with Twilio's
``sms-segments-calculator`` 1.3.0, pinned in ``tests/node/package-lock.json``. They run one
``node tests/node/oracle.js`` process for the whole session; when ``tests/node/node_modules`` is
missing the session fixture runs ``npm ci`` there once (CI should run
``npm ci --prefix tests/node --no-audit --no-fund`` beforehand). Without ``node`` on PATH they
are skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from decimal import Decimal
from itertools import accumulate
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Set, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smskit._graphemes import cluster_sizes, has_joiners
from smskit.errors import ValidationError
from smskit.segments import (
    GSM_7,
    UCS_2,
    SegmentInfo,
    _pack,
    _pack_split,
    count_segments,
    transliterate,
)

NODE_DIR = Path(__file__).parent / "node"
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "\f^{}\\[~]|€"
GSM_ALL = frozenset(GSM_BASIC + GSM_EXTENSION)


# --------------------------------------------------------------------------------------------
# GSM-7


def test_empty_text_is_one_empty_gsm_part() -> None:
    assert count_segments("") == SegmentInfo(GSM_7, 1, 0, 0, ())


@pytest.mark.parametrize(
    ("length", "parts"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_plain_ascii_fills_160_then_153_per_part(length: int, parts: int) -> None:
    info = count_segments("x" * length)
    assert info == SegmentInfo(GSM_7, parts, length, length, ())


def test_extension_characters_cost_two_septets() -> None:
    info = count_segments("{[€]}|^~\\\f")
    assert info.encoding == GSM_7
    assert info.characters == 10
    assert info.code_units == 20
    assert count_segments("a" * 158 + "€").segments == 1  # 160 septets
    assert count_segments("a" * 159 + "€").segments == 2  # 161 septets


def test_escape_and_character_never_straddle_two_parts() -> None:
    # 306 septets either way, but a euro sign starting at septet 153 must move to part two.
    fits = count_segments("a" * 153 + "€" + "a" * 151)
    moved = count_segments("a" * 152 + "€" + "a" * 152)
    assert (fits.code_units, fits.segments) == (306, 2)
    assert (moved.code_units, moved.segments) == (306, 3)


def test_line_breaks_are_counted_as_written() -> None:
    assert count_segments("a\r\nb") == SegmentInfo(GSM_7, 1, 4, 4, ())
    assert count_segments("a\nb").code_units == 3
    assert count_segments("\r\n" * 80).segments == 1
    assert count_segments("\r\n" * 80 + "x").segments == 2


@pytest.mark.parametrize(
    "text",
    [
        "Café à noite: ñ, ü, Ç, Ø, Å, Æ, ß, É, è, ù, ì, ò, ä, ö, Ä, Ö, Ñ, Ü",
        "Pagamento de R$ 10,00 confirmado as 10h. Duvidas? Ligue (11) 4000-0000 @loja",
        "ΔΦΓΛΩΠΨΣΘΞ ¡¿ §¤£¥ _",
    ],
)
def test_accented_letters_of_the_gsm_table_stay_gsm(text: str) -> None:
    info = count_segments(text)
    assert info.encoding == GSM_7
    assert info.non_gsm_characters == ()


# --------------------------------------------------------------------------------------------
# UCS-2


@pytest.mark.parametrize(
    ("text", "non_gsm"),
    [
        ("Olá, sua fatura vence amanhã", ("á", "ã")),
        ("Você já pagou?", ("ê", "á")),
        ("ação", ("ç", "ã")),
        ("AÇÃO", ("Ã",)),  # Ç is GSM-7, Ã is not
        ("Preço `especial`", ("ç", "`")),
        ("\u201cOi\u201d \u2013 tudo bem…", ("\u201c", "\u201d", "\u2013", "…")),
    ],
)
def test_pt_br_letters_outside_the_gsm_table_force_ucs2(
    text: str, non_gsm: Sequence[str]
) -> None:
    info = count_segments(text)
    assert info.encoding == UCS_2
    assert info.non_gsm_characters == tuple(non_gsm)
    assert info.characters == len(text)
    assert info.code_units == len(text)
    assert info.segments == 1


@pytest.mark.parametrize(
    ("length", "parts"), [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_ucs2_fills_70_then_67_per_part(length: int, parts: int) -> None:
    info = count_segments("ã" * length)
    assert info == SegmentInfo(UCS_2, parts, length, length, ("ã",))


def test_gsm_extension_characters_cost_one_unit_in_ucs2() -> None:
    info = count_segments("ã" + "€" * 69)
    assert (info.encoding, info.code_units, info.segments) == (UCS_2, 70, 1)


def test_emoji_counts_two_units_and_is_never_split() -> None:
    # 134 units either way; the emoji may end part one but never straddle it.
    fits = count_segments("ã" * 65 + "😀" + "ã" * 67)
    moved = count_segments("ã" * 66 + "😀" + "ã" * 66)
    assert (fits.characters, fits.code_units, fits.segments) == (133, 134, 2)
    assert (moved.characters, moved.code_units, moved.segments) == (133, 134, 3)
    assert moved.non_gsm_characters == ("ã", "😀")


def test_a_whole_grapheme_cluster_moves_to_the_next_part() -> None:
    # Thumbs up + skin tone is one user-perceived character (4 units): it cannot end part one
    # at unit 69 even though its first surrogate pair would fit.
    info = count_segments("ã" * 65 + "👍🏽" + "ã" * 65)
    assert (info.code_units, info.segments) == (134, 3)
    assert count_segments("ã" * 63 + "👍🏽" + "ã" * 67).segments == 2


def test_surrogate_pairs_given_as_two_code_points_are_one_character() -> None:
    info = count_segments("\ud83d\ude00")
    assert info == SegmentInfo(UCS_2, 1, 1, 2, ("😀",))


def test_a_lone_surrogate_is_one_unit() -> None:
    info = count_segments("a\ud800b")
    assert info == SegmentInfo(UCS_2, 1, 3, 3, ("\ud800",))


# A grapheme cluster longer than a part (67 units) cannot travel whole: the gateway cuts it by
# code units (3GPP TS 23.038), so it is counted so. Twilio's calculator counts it as one part
# whatever its length, which would let a "zalgo" name field slip past max_segments and the bill.


def test_a_cluster_longer_than_a_part_is_cut_by_code_units() -> None:
    # 'a' + 300 combining accents: 301 units in one cluster, 67 + 67 + 67 + 67 + 33 (Twilio: 2).
    assert count_segments("a" + "\u0301" * 300).segments == 5
    # 2005 units, the cluster starts part two: 1 + 30 parts (Twilio: 2).
    assert count_segments("Olá " + "a" + "\u0303" * 2000).segments == 31
    assert count_segments("o" + "\u0302" * 4999).segments == 75


def test_a_cluster_longer_than_a_part_starts_a_new_part() -> None:
    # 10 units, then a 101-unit cluster from the start of part two: 10 | 67 | 34.
    assert count_segments("ã" * 10 + "a" + "\u0301" * 100).segments == 3
    # Three of them: each starts a part and needs two: 67 | 34 | 67 | 34 | 67 | 34.
    assert count_segments(("a" + "\u0301" * 100) * 3).segments == 6
    # Part one gives up its last two units for its header; they open part two with the
    # cluster, as whatever overflows part one does: 67 | 2 + 65 | 67 | 67 | 67 | 34.
    assert count_segments("ã" * 69 + "a" + "\u0301" * 299).segments == 6
    # What follows the cluster fills the rest of its last part: 67 | 34 + 33 | 37.
    assert count_segments("a" + "\u0301" * 100 + "ã" * 70).segments == 3


def test_a_cluster_of_70_units_alone_is_still_one_part() -> None:
    assert count_segments("a" + "\u0301" * 69).segments == 1
    assert count_segments("a" + "\u0301" * 70).segments == 2


def test_a_long_cluster_is_never_cut_inside_a_surrogate_pair() -> None:
    # An emoji and 66 tag characters (astral, 2 units each): 134 units in one cluster. Cut
    # anywhere it would be 67 + 67; kept in pairs each part holds 66 units: 3 parts.
    info = count_segments("😀" + "\U000e0061" * 66)
    assert (info.code_units, info.segments) == (134, 3)
    # Given as separate surrogate code points, the same.
    assert count_segments("\ud83d\ude00" + "\udb40\udc61" * 66).segments == 3


def _joined(text: str) -> str:
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def has_long_cluster(text: str) -> bool:
    """Whether ``text`` (taken as UCS-2) has a grapheme cluster longer than a part (67 units)."""
    return any(size > 67 for size in cluster_sizes(_joined(text)))


def standard_parts(text: str) -> int:
    """UCS-2 parts by 3GPP TS 23.038 alone: 70 units in one part, else 67 a part, cut anywhere
    but inside a surrogate pair (no grapheme rule): the fewest parts a gateway can send."""
    widths = [2 if char > "\uffff" else 1 for char in _joined(text)]
    if sum(widths) <= 70:
        return 1
    parts, fill = 1, 0
    for width in widths:
        if fill + width > 67:
            parts, fill = parts + 1, 0
        fill += width
    return parts


# Characters that join the cluster before them (Unicode 10: Extend, ZWJ), 1 or 2 units.
JOINING = st.sampled_from(["\u0301", "\u0303", "\u0327", "\u200d", "\ufe0f", "\U000e0061",
                           "\U000e0067", "\U000e007f", "\U000e0100"])
LONG_CLUSTERS = st.builds(
    lambda base, marks: base + "".join(marks),
    st.sampled_from(["a", "o", "ã", "😀", "👍", "🏳", "\u0301"]),
    st.lists(JOINING, min_size=34, max_size=400),
).filter(lambda text: len(text.encode("utf-16-le")) // 2 > 67)


@given(LONG_CLUSTERS)
def test_a_long_cluster_alone_costs_what_3gpp_says(text: str) -> None:
    assert len(cluster_sizes(text)) == 1
    assert count_segments(text).segments == standard_parts(text)


# Words and clusters that never join what comes before them, so the clusters stay short.
SHORT_TOKENS = st.sampled_from(["Olá", "ação", "você", "R$ 49,90", " ", "x", "ã", "€", "\r\n",
                                "😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🇧🇷", "❤️", "a\u0303",
                                "日本語", "한글"])


@settings(max_examples=300, deadline=None)
@given(before=st.lists(SHORT_TOKENS, max_size=80).map("".join),
       cluster=LONG_CLUSTERS,
       after=st.lists(SHORT_TOKENS, max_size=80).map("".join))
def test_a_long_cluster_never_lets_a_text_cost_less_than_3gpp_says(
        before: str, cluster: str, after: str) -> None:
    # Every part counted holds at most 67 units and no surrogate pair is cut, so no gateway
    # can send the text in fewer parts: max_segments and the recorded cost hold.
    text = before + cluster + after
    assert count_segments(text).segments >= standard_parts(text)


ITEM_SIZES = st.one_of(
    st.tuples(st.lists(st.integers(1, 67), max_size=60), st.just((70, 67))),
    st.tuples(st.lists(st.integers(1, 4), max_size=300), st.just((70, 67))),
    st.tuples(st.lists(st.sampled_from([1, 1, 1, 2]), max_size=700), st.just((160, 153))),
)


@given(ITEM_SIZES)
def test_packing_one_item_at_a_time_counts_as_before_without_long_clusters(
        case: Tuple[List[int], Tuple[int, int]]) -> None:
    # The item-by-item packer that cuts long clusters answers exactly what the fast one does
    # (Twilio's counts) for every text without such a cluster.
    sizes, (single, multi) = case
    assert _pack_split(sizes, frozenset(), single, multi) == _pack(
        list(accumulate(sizes, initial=0)), single, multi)


# --------------------------------------------------------------------------------------------
# Cost and bad input


def test_cost_is_segments_times_price() -> None:
    info = count_segments("ã" * 135)
    assert info.segments == 3
    assert info.cost(Decimal("0.08")) == Decimal("0.24")
    assert info.cost(Decimal("0")) == Decimal("0")
    assert info.cost(1) == Decimal(3)
    assert count_segments("").cost(Decimal("0.08")) == Decimal("0.08")


@pytest.mark.parametrize("price", [0.08, "0.08", None, True, Decimal("-0.01"), Decimal("NaN")])
def test_cost_refuses_prices_that_are_not_decimal_amounts(price: Any) -> None:
    with pytest.raises(ValidationError, match="price_per_segment"):
        count_segments("oi").cost(price)


@pytest.mark.parametrize("text", [None, b"oi", 42, ["oi"]])
def test_non_text_is_refused_with_its_type(text: Any) -> None:
    with pytest.raises(ValidationError, match=type(text).__name__):
        count_segments(text)


def test_segment_info_is_frozen() -> None:
    info = count_segments("oi")
    with pytest.raises(AttributeError):
        info.segments = 5  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Transliteration


def test_transliteration_strips_accents_gsm_lacks() -> None:
    result = transliterate("Olá, sua fatura vence amanhã")
    assert result.text == "Ola, sua fatura vence amanha"
    assert result.changes == (("á", "a", 1), ("ã", "a", 1))
    assert count_segments(result.text).encoding == GSM_7


def test_transliteration_keeps_accented_letters_gsm_has() -> None:
    result = transliterate("Você é incrível, AÇÃO à vista, pingüim")
    assert result.text == "Voce é incrivel, AÇAO à vista, pingüim"
    assert result.changes == (("ê", "e", 1), ("í", "i", 1), ("Ã", "A", 1))


def test_transliteration_plain_punctuation() -> None:
    result = transliterate("\u201cOi\u201d \u2013 \u2018tudo\u2019 bem… R$\u00a010 \u2014 ok\u200b")
    assert result.text == "\"Oi\" - 'tudo' bem... R$ 10 - ok"
    assert ("…", "...", 1) in result.changes
    assert ("\u200b", "", 1) in result.changes
    assert count_segments(result.text).encoding == GSM_7


def test_transliteration_counts_each_character_in_order_of_appearance() -> None:
    result = transliterate("ãõçãã ÕÇ")
    assert result.text == "aocaa OÇ"
    assert result.changes == (("ã", "a", 3), ("õ", "o", 1), ("ç", "c", 1), ("Õ", "O", 1))


def test_transliteration_handles_decomposed_accents() -> None:
    result = transliterate("manha\u0303 cafe\u0301")
    assert result.text == "manha café"  # e + acute composes to é, which GSM-7 has
    assert result.changes == (("a\u0303", "a", 1), ("e\u0301", "é", 1))


def test_transliteration_leaves_characters_without_a_look_alike() -> None:
    result = transliterate("Olá 😀 ¨ 日本")
    assert result.text == "Ola 😀 ¨ 日本"
    assert result.changes == (("á", "a", 1),)
    assert count_segments(result.text).encoding == UCS_2


def test_transliteration_of_gsm_text_changes_nothing() -> None:
    text = "Café à noite {ok} €5"
    result = transliterate(text)
    assert (result.text, result.changes, result.saved) == (text, (), 0)
    assert result.segments_before == result.segments_after == 1


def test_transliteration_reports_the_parts_it_saves() -> None:
    text = "Olá! Sua fatura de março vence amanhã; não esqueça de pagá-la até às 18h. " * 2
    result = transliterate(text)
    assert count_segments(text).segments == 3
    assert (result.segments_before, result.segments_after, result.saved) == (3, 1, 2)


def test_transliteration_may_cost_more_when_the_text_stays_ucs2() -> None:
    result = transliterate("😀" + "…" * 60)
    assert result.text == "😀" + "..." * 60
    assert (result.segments_before, result.segments_after, result.saved) == (1, 3, -2)


def test_transliteration_refuses_non_text() -> None:
    with pytest.raises(ValidationError, match="bytes"):
        transliterate(b"ola")  # type: ignore[arg-type]


PT_BR = "ãõçáéíóúâêôàüÃÕÇÁÉÍÓÚÂÊÔÀÜ"


TYPOGRAPHY = "\u201c\u201d\u2018\u2019\u2013\u2014…\u00a0"


@given(st.text(alphabet=st.sampled_from(sorted(GSM_ALL) + list(PT_BR) + list(TYPOGRAPHY))))
def test_transliterated_pt_br_is_always_gsm7_and_keeps_gsm_characters(text: str) -> None:
    result = transliterate(text)
    assert count_segments(result.text).encoding == GSM_7
    assert result.segments_after == count_segments(result.text).segments
    assert result.segments_before == count_segments(text).segments
    mapping = {original: replacement for original, replacement, _count in result.changes}
    assert "".join(mapping.get(c, c) for c in text) == result.text
    for original, _replacement, count in result.changes:
        assert original not in GSM_ALL
        assert count == text.count(original)


# --------------------------------------------------------------------------------------------
# Grapheme clusters (no node needed)


@given(st.text())
def test_text_without_joiners_is_cut_into_code_points(text: str) -> None:
    if not has_joiners(text):
        assert cluster_sizes(text) == [2 if c > "\uffff" else 1 for c in text]
    assert sum(cluster_sizes(text)) == len(text.encode("utf-16-le")) // 2


def test_known_clusters() -> None:
    assert cluster_sizes("a\u0303") == [2]
    assert cluster_sizes("\r\n") == [1, 1]
    assert cluster_sizes("🇧🇷🇧🇷🇧") == [4, 4, 2]
    assert cluster_sizes("👨\u200d👩\u200d👧") == [8]
    assert cluster_sizes("한글") == [1, 1]
    assert cluster_sizes("\u1100\u1161\u11a8") == [3]


# --------------------------------------------------------------------------------------------
# Differential tests against Twilio's calculator


class Oracle:
    """One long-lived ``node oracle.js`` process answering JSON lines."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def describe(self, texts: Sequence[str], *, graphemes: bool = False) -> List[Dict[str, Any]]:
        """Twilio's view of each text."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"texts": list(texts), "graphemes": graphemes}))
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the node oracle exited; see its stderr above")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the node oracle failed: {answer['error']}")
        results: List[Dict[str, Any]] = answer["results"]
        return results


@pytest.fixture(scope="session")
def oracle() -> Iterator[Oracle]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: skipping the comparison with sms-segments-calculator")
    if not (NODE_DIR / "node_modules" / "sms-segments-calculator").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(
                "node is installed but npm is not, and tests/node/node_modules is missing: run "
                "`npm ci --prefix tests/node --no-audit --no-fund`"
            )
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(
                "`npm ci` in tests/node failed (the npm registry must be reachable once; CI "
                "should run `npm ci --prefix tests/node --no-audit --no-fund`):\n"
                + done.stderr[-2000:]
            )
    process = subprocess.Popen(
        [node, "oracle.js"],
        cwd=NODE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        yield Oracle(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def assert_agrees(text: str, twilio: Dict[str, Any]) -> None:
    """Our counts for ``text`` are Twilio's."""
    info = count_segments(text)
    ours = {
        "encoding": info.encoding,
        "segments": info.segments,
        "characters": info.characters,
        "code_units": info.code_units,
        "non_gsm": info.non_gsm_characters,
    }
    theirs = {
        "encoding": twilio["encoding"],
        "segments": twilio["segments"],
        "characters": twilio["scalars"],
        "code_units": twilio["codeUnits"],
        # Twilio lists whole non-GSM graphemes ("a" + U+0303); we list the code points at fault.
        "non_gsm": tuple(
            dict.fromkeys(c for grapheme in twilio["nonGsm"] for c in grapheme if c not in GSM_ALL)
        ),
    }
    if info.encoding == UCS_2 and has_long_cluster(text):
        # Twilio counts a cluster longer than a part as one part; smskit cuts it (see above).
        assert info.segments >= standard_parts(text)
        del ours["segments"], theirs["segments"]
    assert ours == theirs, f"disagreement on {text!r}"
    if info.encoding == GSM_7:
        assert info.code_units == twilio["characters"]


WORDS = [
    "Olá", "sua", "fatura", "vence", "amanhã", "ação", "você", "não", "pagamento", "R$ 49,90",
    "às", "é", "Café", "mês", "código", "PIX", "João", "São Paulo", "Conceição", "até", "obrigado",
    "{link}", "[OK]", "~", "|", "€", "^", "\\", "\f", "@loja", "100%", "#123", "ÇÃO", "pingüim",
    " ", " ", " ", " ", ".", ",", "!", "?", "Ø", "Ñ", "ß", "Δ", "¿", "§",
    *TYPOGRAPHY, "«", "»", "•", "`", "\t",
    "\n", "\r\n", "\r", "\n\n",
]
CLUSTERS = [
    "😀", "👍", "👍🏽", "👩🏾\u200d💻", "👨\u200d👩\u200d👧\u200d👦", "🇧🇷", "🇧", "❤️", "1️⃣",
    "🏳️\u200d🌈", "a\u0303", "c\u0327", "e\u0301", "o\u0302\u0323", "\u0301",
    "👍\u0301🏽", "👍\u0301\u0301🏽", "🇧🇷\u0301\u0301", "\u0600🇧🇷", "🇧🇷🇧", "\u0600\u0600a",
    "한글", "\u1100\u1161\u11a8", "\u0915\u094d\u0937\u093f", "\u200d❤", "\u200d👩",
    "👩\u200d❤\ufe0f\u200d💋\u200d👨", "\U0001f3fb", "日本語",
]
ANY_CHAR = st.characters(blacklist_categories=("Cs",))
GSM_WORDS = st.sampled_from([w for w in WORDS if all(c in GSM_ALL for c in w)])
ANY_WORD = st.sampled_from(WORDS + CLUSTERS)
TOKEN = st.one_of(ANY_WORD, ANY_WORD, ANY_WORD, ANY_CHAR)
# Lengths just below and above the 1/2/3-part limits of both encodings.
LIMITS = st.sampled_from([0, 67, 70, 134, 153, 160, 201, 306, 459])
FILLERS = st.sampled_from(["x", "a", " ", "é", "€", "ã", "ç", "😀", "👍🏽", "\r\n"])


@st.composite
def sms_texts(draw: st.DrawFn) -> str:
    """pt-BR-flavoured texts whose length crosses part boundaries."""
    if draw(st.booleans()):  # free text, mostly GSM-7 or mixed
        words = GSM_WORDS if draw(st.booleans()) else TOKEN
        return "".join(draw(st.lists(words, max_size=draw(st.sampled_from([10, 60, 120])))))
    # a filler run sized around a part limit, with a few tokens dropped in somewhere
    filler = draw(FILLERS)
    count = max(0, draw(LIMITS) + draw(st.integers(-8, 3)))
    middle = "".join(draw(st.lists(st.one_of(GSM_WORDS, TOKEN), max_size=6)))
    cut = draw(st.integers(0, count))
    return filler * cut + middle + filler * (count - cut)


@pytest.mark.node
@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(text=sms_texts())
def test_counts_agree_with_twilio(oracle: Oracle, text: str) -> None:
    (twilio,) = oracle.describe([text])
    assert_agrees(text, twilio)


BOUNDARY_CASES = [
    "",
    "x" * 160, "x" * 161, "x" * 306, "x" * 307,
    "a" * 152 + "€" + "a" * 152, "a" * 153 + "€" + "a" * 151, "a" * 159 + "€",
    "€" * 80, "€" * 81, "\r\n" * 80 + "x",
    "ã" * 70, "ã" * 71, "ã" * 134, "ã" * 135,
    "ã" * 65 + "😀" + "ã" * 67, "ã" * 66 + "😀" + "ã" * 66,
    "ã" * 65 + "👍🏽" + "ã" * 65, "ã" * 63 + "👍🏽" + "ã" * 67,
    "a" + "\u0301" * 80, "a" + "\u0301" * 200 + "b" * 70, "\u0301" * 71,
    "ã" * 66 + "👨\u200d👩\u200d👧\u200d👦" * 20, "🇧🇷" * 40, "ã" + "🇧" * 40,
    "ã" * 64 + "👍\u0301\u0301🏽" * 3, "ã" * 64 + "🇧🇷\u0301\u0301" * 3, "ã" * 67 + "\u0600🇧🇷" * 9,
    "\ud83d\ude00" * 40, "a\ud800" * 40, "\udc00\ud800" * 40,
]


@pytest.mark.node
def test_boundary_cases_agree_with_twilio(oracle: Oracle) -> None:
    for text, twilio in zip(BOUNDARY_CASES, oracle.describe(BOUNDARY_CASES)):
        assert_agrees(text, twilio)


@pytest.mark.node
def test_every_bmp_character_has_twilios_encoding(oracle: Oracle) -> None:
    texts = [chr(code) for code in range(0x10000)]
    for text, twilio in zip(texts, oracle.describe(texts)):
        assert count_segments(text).encoding == twilio["encoding"], f"U+{ord(text):04X}"


def _probes(code: int) -> List[str]:
    """Short texts whose clusters reveal the grapheme-break class of one code point."""
    c = chr(code)
    return [
        "a" + c + "a", "\u0600" + c, "👍" + c + "🏽", c + "❤", c + c, "\u1100" + c,
        c + "\u1161", c + "\u11a8", c + "🏽", "\u200d" + c, "🇧🇷" + c + c,
    ]


def _class_boundaries() -> List[int]:
    from smskit._graphemes import _parse

    codes: Set[int] = set()
    for first, last, _cls in _parse():
        codes.update((first - 1, first, last, last + 1))
    codes.update(range(0, 0x10FFFF, 251))  # and a sample of everything in between
    return sorted(c for c in codes if 0 <= c <= 0x10FFFF and not 0xD800 <= c <= 0xDFFF)


@pytest.mark.node
def test_grapheme_clusters_agree_with_twilio_on_every_class_boundary(oracle: Oracle) -> None:
    texts = ["\n".join(_probes(code)) for code in _class_boundaries()]
    for start in range(0, len(texts), 5000):
        batch = texts[start : start + 5000]
        for text, twilio in zip(batch, oracle.describe(batch, graphemes=True)):
            assert cluster_sizes(text) == twilio["graphemes"], f"clusters of {text!r}"


JOINER_HEAVY = st.one_of(
    st.sampled_from(CLUSTERS),
    st.sampled_from(["\u0301", "\u200d", "\ufe0f", "🏽", "🇧", "👍", "👩", "❤", "\u0600", "\u0903",
                     "\u1100", "\u1161", "\u11a8", "가", "각", "\r", "\n", "a", "\x01"]),
    ANY_CHAR,
)


@pytest.mark.node
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(JOINER_HEAVY, max_size=40).map("".join))
def test_grapheme_clusters_agree_with_twilio(oracle: Oracle, text: str) -> None:
    (twilio,) = oracle.describe([text], graphemes=True)
    assert cluster_sizes(text) == twilio["graphemes"], f"clusters of {text!r}"


def test_gsm_alphabet_matches_the_standard_table() -> None:
    from smskit import segments

    # 128 basic positions minus the escape; the extension table adds 10 characters.
    assert len(frozenset(GSM_BASIC)) == 127
    assert frozenset(GSM_BASIC) == segments.GSM_BASIC
    assert frozenset(GSM_EXTENSION) == segments.GSM_EXTENSION


def test_the_docs_page_examples_run() -> None:
    page = (Path(__file__).parent.parent / "docs" / "segments.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) == 2
    namespace: Dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "segments.md", "exec"), namespace)
    assert namespace["info"].non_gsm_characters == ("á", "ã")
    assert namespace["result"].saved == 2
