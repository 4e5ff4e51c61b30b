"""Our X-Twilio-Signature check agrees with the official ``twilio`` package's
``RequestValidator`` on generated requests (the package is a test dependency only)."""

from __future__ import annotations

from typing import Dict, List, Tuple
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smskit_twilio.signature import compute_signature, validate_signature

request_validator = pytest.importorskip("twilio.request_validator")
RequestValidator = request_validator.RequestValidator

# Form fields as Twilio sends them: names like "MessageSid" or "MediaUrl0", any Unicode text.
names = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                       blacklist_characters="&="), min_size=1, max_size=12)
values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
params = st.dictionaries(names, values, max_size=12)
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,10}){1,2}", fullmatch=True)
path_parts = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1,
                              max_size=10), max_size=4)
ports = st.sampled_from(["", ":443", ":80", ":8443", ":8000"])
queries = st.lists(st.tuples(names, values), max_size=3)
tokens = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                 max_size=40)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["https", "http"]))
    path = "/" + "/".join(draw(path_parts))
    query = draw(queries)
    url = f"{scheme}://{draw(hosts)}{draw(ports)}{quote(path)}"
    return f"{url}?{urlencode(query)}" if query else url


@settings(max_examples=300, deadline=None)
@given(token=tokens, url=urls(), fields=params)
def test_same_signature_as_twilios_validator(token: str, url: str,
                                             fields: Dict[str, str]) -> None:
    official = RequestValidator(token)
    ours = compute_signature(token, url, fields)
    assert ours == official.compute_signature(url, fields)
    assert validate_signature(token, url, fields, ours) == official.validate(url, fields, ours)
    assert validate_signature(token, url, fields, ours)


@settings(max_examples=300, deadline=None)
@given(token=tokens, url=urls(), fields=params, signer=urls(), other=tokens)
def test_same_verdict_on_signatures_made_elsewhere(token: str, url: str, fields: Dict[str, str],
                                                   signer: str, other: str) -> None:
    # Signatures for another URL, or with another token, or with the port added/dropped:
    # both implementations accept and refuse exactly the same ones.
    official = RequestValidator(token)
    for signature in (official.compute_signature(signer, fields),
                      RequestValidator(other).compute_signature(url, fields),
                      official.compute_signature(url.replace("https://", "http://"), fields)):
        assert validate_signature(token, url, fields, signature) == official.validate(
            url, fields, signature)


@settings(max_examples=200, deadline=None)
@given(token=tokens, url=urls(),
       pairs=st.lists(st.tuples(st.sampled_from(["MediaUrl0", "Body", "To"]), values),
                      max_size=6))
def test_repeated_fields_are_signed_like_twilios_validator(token: str, url: str,
                                                           pairs: List[Tuple[str, str]]) -> None:
    multidict = _MultiDict(pairs)
    assert compute_signature(token, url, pairs) == RequestValidator(token).compute_signature(
        url, multidict)


class _MultiDict(dict):  # type: ignore[type-arg]
    """The shape of Django's QueryDict the validator reads repeated fields from."""

    def __init__(self, pairs: List[Tuple[str, str]]) -> None:
        super().__init__((name, value) for name, value in pairs)
        self._pairs = pairs

    def getlist(self, name: str) -> List[str]:
        return [value for key, value in self._pairs if key == name]
