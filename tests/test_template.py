from __future__ import annotations

from decimal import Decimal
from typing import Any, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smskit.errors import MissingVariableError, TemplateError, ValidationError
from smskit.template import Template, render


class FakeRecord:
    """An Odoo-like record: fields are attributes, an empty field reads as False."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)
        self.calls: List[str] = []

    def action_send(self) -> str:
        self.calls.append("action_send")
        return "sent"


def test_dict_lookup_and_whitespace_inside_braces_is_optional() -> None:
    template = Template("Olá {{name}}, {{ name }}!")
    assert template.render({"name": "Ana"}) == "Olá Ana, Ana!"
    assert template.variables == ("name",)


def test_nested_mapping_attribute_and_index_lookups() -> None:
    order = FakeRecord(name="SO042", lines=[{"sku": "A1"}, {"sku": "B2"}])
    context = {"customer": {"address": {"city": "São Paulo"}}, "order": order}
    source = "{{ customer.address.city }} {{ order.name }} {{ order.lines.1.sku }}"
    template = Template(source)
    assert template.render(context) == "São Paulo SO042 B2"
    assert template.variables == ("customer.address.city", "order.name", "order.lines.1.sku")


def test_mapping_key_wins_over_attribute() -> None:
    class Both(dict):  # type: ignore[type-arg]
        name = "attribute"

    assert render("{{ x.name }}", {"x": Both(name="key")}) == "key"
    assert render("{{ x.name }}", {"x": Both()}) == "attribute"


def test_integer_steps_on_sequences_strings_and_mappings() -> None:
    context = {"codes": ("a", "b"), "word": "Brasil", "by_int": {0: "zero"}, "by_str": {"1": "um"}}
    assert render("{{ codes.0 }}{{ word.0 }}.", context) == "aB."
    assert render("{{ by_int.0 }} {{ by_str.1 }}", context) == "zero um"
    assert render("{{ codes.5 | default('-') }}", context) == "-"


def test_odoo_style_object_path() -> None:
    partner = FakeRecord(name="José da Silva", mobile="+5511987654321")
    sale = FakeRecord(name="S00017", partner_id=partner, amount_total=Decimal("1234.50"))
    template = Template(
        "Olá {{ object.partner_id.name }}, seu pedido {{ object.name }} "
        "de R$ {{ object.amount_total }} foi confirmado."
    )
    assert template.render({"object": sale}) == (
        "Olá José da Silva, seu pedido S00017 de R$ 1234.50 foi confirmado."
    )


def test_odoo_false_means_an_empty_field() -> None:
    partner = FakeRecord(name=False, ref=False)
    assert render("Olá {{ p.name | default('cliente') }}", {"p": partner}) == "Olá cliente"
    with pytest.raises(MissingVariableError) as info:
        render("{{ p.ref }}", {"p": partner}, recipient="+5511987654321")
    assert str(info.value) == "template variable 'p.ref' is missing for recipient +5511987654321"


def test_none_and_blank_are_missing_but_zero_is_a_value() -> None:
    assert render("{{ a | default('x') }}", {"a": None}) == "x"
    assert render("[{{ a }}][{{ c }}]", {"a": 0, "c": True}) == "[0][True]"
    assert render("{{ a.b | default('x') }}", {"a": {"b": None}}) == "x"
    # A blank CSV cell (empty, or only spaces) has no value: the default applies...
    row = {"nome": "", "apelido": "   ", "cidade": "\t"}
    assert render("Olá {{ nome | default('cliente') }}", row) == "Olá cliente"
    assert render("{{ apelido | default('-') }}{{ cidade | default('-') }}", row) == "--"
    # ...and without one, it is missing, like an absent column.
    with pytest.raises(MissingVariableError, match="'nome' is missing for recipient 5"):
        render("Olá {{ nome }}", row, recipient="5")


def test_keep_blank_makes_a_blank_a_value() -> None:
    row = {"complemento": "", "nota": "  ", "nada": None}
    assert render("[{{ complemento | keep_blank }}][{{ nota|keep_blank }}]", row) == "[][  ]"
    assert render("{{ complemento | keep_blank | default('x') }}", row) == ""
    assert render("{{ complemento | default('x') | keep_blank }}", row) == ""
    assert render("{{ nada | keep_blank | default('x') }}", row) == "x"  # None stays missing
    with pytest.raises(MissingVariableError):
        render("{{ nada | keep_blank }}", row)
    with pytest.raises(TemplateError, match="keep_blank is given twice"):
        Template("{{ a | keep_blank | keep_blank }}")
    with pytest.raises(TemplateError, match="default.*given twice"):
        Template("{{ a | default('x') | default('y') }}")


def test_required_lists_the_paths_without_a_default() -> None:
    template = Template("{{ a }} {{ b | default('') }} {{ c.d | keep_blank }} {{ a }} {{ b }}")
    assert template.variables == ("a", "b", "c.d")
    assert template.required == ("a", "c.d", "b")


def test_values_use_plain_str_and_are_not_html_escaped() -> None:
    context = {"price": 9.5, "total": Decimal("10.00"), "html": "<b>&</b>"}
    assert render("{{ price }} {{ total }} {{ html }}", context) == "9.5 10.00 <b>&</b>"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{{ x | default("cliente") }}', "cliente"),
        ("{{ x | default('cliente') }}", "cliente"),
        ("{{x|default('')}}", ""),
        ('{{ x | default("R$ 0,00 | }} {{ ok") }}', "R$ 0,00 | }} {{ ok"),
        ("{{ x | default('it\\'s') }}", "it's"),
        ('{{ x | default("say \\"oi\\"") }}', 'say "oi"'),
        ("{{ x | default('a\\\\b') }}", "a\\b"),
        ("{{ x | default('line\\n') }}", "line\\n"),
        ("{{ x | default('ação é já') }}", "ação é já"),
        ('{{ x | default("it\'s") }}', "it's"),
    ],
)
def test_default_with_both_quote_styles_and_special_characters(source: str, expected: str) -> None:
    assert Template(source).render({}) == expected


def test_default_is_not_used_when_the_value_is_present() -> None:
    assert render("{{ x | default('none') }}", {"x": "Bia"}) == "Bia"


def test_missing_variable_without_and_with_recipient() -> None:
    template = Template("Olá {{ customer.name }}")
    with pytest.raises(MissingVariableError) as info:
        template.render({})
    assert str(info.value) == "template variable 'customer.name' is missing"
    assert info.value.variable == "customer.name"
    assert info.value.recipient is None

    with pytest.raises(MissingVariableError) as info:
        template.render({"customer": {}}, recipient="+5511987654321")
    assert str(info.value) == (
        "template variable 'customer.name' is missing for recipient +5511987654321"
    )
    assert info.value.recipient == "+5511987654321"
    assert isinstance(info.value, ValidationError)


def test_unicode_text_is_kept() -> None:
    source = "Olá, {{ nome }}! Sua consulta é amanhã às {{ hora }}. Não responda 🙂"
    assert render(source, {"nome": "João", "hora": "14h"}) == (
        "Olá, João! Sua consulta é amanhã às 14h. Não responda 🙂"
    )
    assert render("{{ endereço.cidade }}", {"endereço": {"cidade": "Belém"}}) == "Belém"


def test_braces_that_do_not_open_a_placeholder_are_text() -> None:
    source = "a } b }} c { d {% if x %} {# note #}"
    assert Template(source).render({}) == source
    assert Template(source).variables == ()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Olá {{ name", "template error at line 1, column 5: unclosed '{{'"),
        ("{{", "template error at line 1, column 1: unclosed '{{'"),
        ("{{ name }", "template error at line 1, column 1: unclosed '{{'"),
        ("{{ a | upper", "template error at line 1, column 1: unclosed '{{'"),
        ("x {{ a | default('}}')", "template error at line 1, column 3: unclosed '{{'"),
        ("a\nb {{ }}", "template error at line 2, column 3: empty placeholder '{{ }}'"),
        ("{{}}", "template error at line 1, column 1: empty placeholder '{{ }}'"),
        ("{{ 1+1 }}", "template error at line 1, column 4: expected a variable name, found '1+1'"),
        (
            "{{ foo() }}",
            "template error at line 1, column 7: unexpected '()' after 'foo'; a placeholder"
            ' holds a dotted path and optional filters: | default("...") and | keep_blank',
        ),
        (
            "{{ a | upper }}",
            "template error at line 1, column 8: unknown filter 'upper';"
            ' the filters are default("...") and keep_blank',
        ),
        (
            "{{ object.name or '' }}",
            "template error at line 1, column 16: unexpected \"or ''\" after 'object.name';"
            ' a placeholder holds a dotted path and optional filters: | default("...") and'
            " | keep_blank",
        ),
        (
            "{{ a. }}",
            "template error at line 1, column 6: expected a name or an index after '.', found '}}'",
        ),
        (
            "{{ a | default(x) }}",
            "template error at line 1, column 16: default(...) takes one quoted string, found 'x)'",
        ),
        (
            "{{ a | default }}",
            "template error at line 1, column 16: expected '(' after 'default', found '}}'",
        ),
        (
            "{{ a | default('x' }}",
            "template error at line 1, column 20: expected ')' to close default(...), found '}}'",
        ),
        (
            "{{ a | default('x) }}",
            "template error at line 1, column 16: unterminated string in default(...)",
        ),
        (
            "{{ __class__ }}",
            "template error at line 1, column 4: names starting with '_' are not allowed:"
            " '__class__'",
        ),
        (
            "{{ a.__dict__ }}",
            "template error at line 1, column 6: names starting with '_' are not allowed:"
            " '__dict__'",
        ),
        (
            "{{ a._private }}",
            "template error at line 1, column 6: names starting with '_' are not allowed:"
            " '_private'",
        ),
        (
            "{{ a['b'] }}",
            "template error at line 1, column 5: unexpected \"['b']\" after 'a'; a placeholder"
            ' holds a dotted path and optional filters: | default("...") and | keep_blank',
        ),
    ],
)
def test_malformed_templates_name_the_problem_and_position(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        Template(source)
    assert str(info.value) == message
    assert not isinstance(info.value, MissingVariableError)


def test_template_source_must_be_a_string() -> None:
    with pytest.raises(TemplateError, match="a template must be a string, not bytes"):
        Template(b"{{ x }}")  # type: ignore[arg-type]


def test_context_must_be_a_mapping() -> None:
    with pytest.raises(TemplateError, match="must be a mapping of names, not FakeRecord"):
        Template("{{ x }}").render(FakeRecord(x=1))  # type: ignore[arg-type]


def test_methods_are_never_called() -> None:
    record = FakeRecord(name="x")
    with pytest.raises(TemplateError) as info:
        render("{{ rec.action_send }}", {"rec": record})
    assert str(info.value) == (
        "template variable 'rec.action_send': 'action_send' is a callable;"
        " templates never call anything"
    )
    with pytest.raises(TemplateError, match="is a callable"):
        render("{{ rec.action_send | default('no') }}", {"rec": record})
    assert record.calls == []


def test_os_system_like_input_cannot_execute_anything() -> None:
    calls: List[str] = []

    class FakeOs:
        def system(self, command: str) -> int:
            calls.append(command)
            return 0

    with pytest.raises(TemplateError, match="'system' is a callable"):
        render("{{ os.system }}", {"os": FakeOs()})
    with pytest.raises(MissingVariableError, match=r"'os\.system' is missing"):
        render("{{ os.system }}", {})
    with pytest.raises(TemplateError, match="is a callable"):
        render("{{ f }}", {"f": lambda: calls.append("called")})
    with pytest.raises(TemplateError, match="'str' is a callable"):
        render("{{ str }}", {"str": str})
    # a dict's own methods are not reachable as values either
    with pytest.raises(TemplateError, match="'items' is a callable"):
        render("{{ d.items }}", {"d": {}})
    assert calls == []


def test_variables_are_listed_once_in_order_of_first_use() -> None:
    template = Template("{{ b }} {{ a.x | default('') }} {{ b }} {{ a.x }} {{ c.0 }}")
    assert template.variables == ("b", "a.x", "c.0")


def test_render_function_compiles_each_source_once() -> None:
    from smskit import template as module

    source = "Oi {{ nome }}, cache test 7f3a"
    before = module._compiled.cache_info()
    results = [
        render(source, {"nome": n}, recipient=str(i)) for i, n in enumerate(["Ana", "Bia", "Cai"])
    ]
    after = module._compiled.cache_info()
    assert results == [
        "Oi Ana, cache test 7f3a",
        "Oi Bia, cache test 7f3a",
        "Oi Cai, cache test 7f3a",
    ]
    assert after.misses - before.misses == 1
    assert after.hits - before.hits == 2


def test_render_function_reports_errors_every_time() -> None:
    for _ in range(2):
        with pytest.raises(TemplateError, match="unclosed"):
            render("{{ x", {})


def test_template_repr_and_source() -> None:
    template = Template("Oi {{ nome }}")
    assert template.source == "Oi {{ nome }}"
    assert repr(template) == "Template('Oi {{ nome }}')"


@given(st.text().filter(lambda text: "{{" not in text))
def test_text_without_an_opening_brace_pair_renders_to_itself(text: str) -> None:
    template = Template(text)
    assert template.variables == ()
    assert template.render({}) == text
    assert render(text, {"unused": 1}) == text
