"""``segments``: encoding and part count over a pt-BR corpus, against the PyPI peers.

The work: for each text, decide GSM-7 or UCS-2 and count the SMS parts.

* smskit: ``count_segments(text)`` (``.encoding``, ``.segments``), which also lists the
  characters that forced UCS-2 and keeps grapheme clusters and extension characters whole;
* ``smsutil``: ``split(text)`` (``.encoding``, ``len(.parts)``);
* ``gsm0338``: its codec does not count parts, so the peer is the shortest natural use of it:
  ``text.encode("gsm03.38")`` gives the septets (or fails: UCS-2, counted in UTF-16 units),
  then 160/153 or 70/67 a part.

The corpus is generated (seeded): pt-BR messages of the kinds companies send (bills, codes,
appointments, deliveries, campaigns), 55% with accents (UCS-2), 40% with the accents stripped
as many senders do to stay in GSM-7, 5% with emoji; 1 to 4 parts. Each side runs over the
whole corpus 5 times; the best run counts.
"""

from __future__ import annotations

import random
import sys
import time
import unicodedata
from pathlib import Path
from typing import Callable, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import Figure

FULL_N = 20_000
QUICK_N = 2_000
ROUNDS = 5
INSTALL_HINT = ("the segments benchmark compares against the PyPI packages smsutil and gsm0338: "
                "pip install -r benchmarks/requirements.txt")

_OPENINGS = ("Olá {nome}, ", "Oi {nome}! ", "Prezado(a) {nome}, ", "{nome}, ", "")
_BODIES = (
    "sua fatura de R$ {valor} vence em {data}. Pague pelo app ou pelo código de barras.",
    "seu código de verificação é {codigo}. Não compartilhe este código com ninguém.",
    "sua consulta está confirmada para {data} às {hora}. Para cancelar, responda NÃO.",
    "seu pedido nº {codigo} saiu para entrega e chega até {data}. Acompanhe pelo nosso site.",
    "aproveite: até 40% de desconto em toda a loja só até {data}. Válido para compras acima "
    "de R$ {valor}, exceto promoções.",
    "identificamos um débito em aberto de R$ {valor}. Regularize até {data} e evite juros e "
    "multa. Dúvidas? Ligue para nossa central de atendimento, de segunda a sexta, das 8h às "
    "18h, ou responda esta mensagem que um atendente falará com você.",
    "lembrete: a reunião de condomínio será em {data} às {hora} no salão de festas. Pauta: "
    "orçamento anual, obras na fachada e eleição do síndico. Sua presença é importante!",
    "sua renegociação foi aprovada! Parcelas de R$ {valor} a partir de {data}. O boleto chegará "
    "por e-mail. Guarde este número de protocolo: {codigo}. Conte sempre conosco para o que "
    "precisar. Equipe de atendimento, São Paulo - SP. Mensagem automática, não é preciso "
    "responder.",
)
_CLOSINGS = ("", " Obrigado!", " Att, Equipe Financeira.", " Responda SAIR para não receber.")
_EMOJI = (" 😀", " 👍🏽", " 🇧🇷", " ❤️", " 🎉🎉")
_NAMES = ("Ana", "João", "Conceição", "Sebastião", "Luíza", "Antônio", "Thaís", "Caio", "Bruna",
          "Raimundo", "Letícia", "José")


def strip_accents(text: str) -> str:
    """``text`` without combining accents (``ç`` -> ``c``), as GSM-7 senders write."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def corpus(n: int, seed: int = 2024) -> List[str]:
    """``n`` pt-BR texts (see the module docs for the mix)."""
    rng = random.Random(seed)
    out: List[str] = []
    for _ in range(n):
        text = (rng.choice(_OPENINGS) + rng.choice(_BODIES) + rng.choice(_CLOSINGS)).format(
            nome=rng.choice(_NAMES), valor=f"{rng.randint(10, 9999)},{rng.randint(0, 99):02d}",
            data=f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}",
            hora=f"{rng.randint(7, 19)}h{rng.choice(('00', '30'))}",
            codigo=str(rng.randint(100_000, 999_999)))
        kind = rng.random()
        if kind < 0.40:
            text = strip_accents(text)
        elif kind < 0.45:
            text += rng.choice(_EMOJI)
        out.append(text)
    return out


Counter_ = Callable[[str], Tuple[str, int]]


def smskit_counter() -> Counter_:
    """smskit's count."""
    from smskit.segments import count_segments

    def count(text: str) -> Tuple[str, int]:
        info = count_segments(text)
        return info.encoding, info.segments

    return count


def smsutil_counter() -> Counter_:
    """smsutil's split."""
    import smsutil

    def count(text: str) -> Tuple[str, int]:
        result = smsutil.split(text)
        return ("GSM-7" if result.encoding == "gsm0338" else "UCS-2"), len(result.parts)

    return count


def gsm0338_counter() -> Counter_:
    """The gsm0338 codec and the part sizes."""
    import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

    def count(text: str) -> Tuple[str, int]:
        try:
            units, single, multi, encoding = len(text.encode("gsm03.38")), 160, 153, "GSM-7"
        except UnicodeEncodeError:
            units, single, multi, encoding = len(text.encode("utf-16-le")) // 2, 70, 67, "UCS-2"
        return encoding, 1 if units <= single else -(-units // multi)

    return count


def best_time(count: Counter_, texts: List[str]) -> float:
    """The best of :data:`ROUNDS` runs over ``texts``, in seconds."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for text in texts:
            count(text)
        best = min(best, time.perf_counter() - started)
    return best


def peers_available() -> bool:
    """Whether smsutil and gsm0338 can be imported."""
    try:
        import gsm0338  # noqa: F401
        import smsutil  # noqa: F401
    except ImportError:
        return False
    return True


def run(quick: bool = False) -> List[Figure]:
    """Time smskit and both peers over the same corpus; the ratio to the fastest peer."""
    if not peers_available():
        raise RuntimeError(INSTALL_HINT)
    texts = corpus(QUICK_N if quick else FULL_N)
    common.log(f"segments: {len(texts):,} pt-BR texts, best of {ROUNDS} ...")
    ours = smskit_counter()
    peers = {"smsutil": smsutil_counter(), "gsm0338": gsm0338_counter()}
    times = {"smskit": best_time(ours, texts)}
    disagree = {}
    for name, peer in peers.items():
        times[name] = best_time(peer, texts)
        disagree[name] = sum(1 for t in texts if peer(t) != ours(t))
    fastest = min(peers, key=lambda name: times[name])
    ratio = times[fastest] / times["smskit"]
    per_text = {name: seconds / len(texts) * 1e6 for name, seconds in times.items()}
    note = (f"fastest peer {fastest}; per text: " + ", ".join(
        f"{name} {value:.2f} us" for name, value in per_text.items())
        + "; texts counted differently from smskit: "
        + ", ".join(f"{name} {count}" for name, count in disagree.items()))
    return [
        Figure("segments_ratio_vs_fastest_peer", ratio, "x", goal=">= 1", met=ratio >= 1,
               note=note),
    ]
