from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.runtime import Undefined

from schola import sandbox
from schola.errors import ConfigError
from schola.templates import check, evaluate, render, variables

SECRET_NAME = "SCHOLA_TEMPLATE_TEST_SECRET"
SECRET = "s3cr3t-value-7f1d"

# Known ways out of a Jinja sandbox (and ways to exhaust memory), each refused. `static`: `check` finds it
# before any run; every one is refused by `render` in any case.
ESCAPES = [
    pytest.param(
        "{{ str.format_map('{x.__globals__[os].environ[" + SECRET_NAME + "]}', {'x': lipsum}) }}",
        True,
        id="str-format-map",
    ),
    pytest.param("{{ lipsum.__globals__['os'].environ['" + SECRET_NAME + "'] }}", True, id="lipsum-globals"),
    pytest.param("{{ lipsum|string }}", True, id="lipsum"),
    pytest.param("{{ cycler.__init__.__globals__.os.environ['" + SECRET_NAME + "'] }}", True, id="cycler-globals"),
    pytest.param("{{ joiner.__init__.__globals__ }}", True, id="joiner"),
    pytest.param("{{ namespace(a=1) }}", True, id="namespace"),
    pytest.param("{{ ()|attr('__class__') }}", True, id="attr-filter"),
    pytest.param("{{ ''|attr('__class__')|attr('__mro__') }}", True, id="attr-filter-mro"),
    pytest.param("{{ ''.__class__.__mro__[1].__subclasses__() }}", True, id="mro"),
    pytest.param("{{ ''['__class__'] }}", True, id="dunder-item"),
    pytest.param("{{ self }}", True, id="self"),
    pytest.param("{{ self._TemplateReference__context }}", True, id="self-context"),
    pytest.param("{% include 'x.txt' %}", True, id="include"),
    pytest.param("{% import 'x.txt' as m %}", True, id="import"),
    pytest.param("{% from 'x.txt' import y %}", True, id="from-import"),
    pytest.param("{% extends 'x.txt' %}", True, id="extends"),
    pytest.param("{{ range(10**9) }}", True, id="range-literal"),
    pytest.param("{{ range(0, 10**10, 2)|length }}", True, id="range-step"),
    pytest.param("{{ 'A' * 4000000000 }}", True, id="huge-repeat"),
    pytest.param("{{ [0] * 10**7 }}", True, id="long-list"),
    pytest.param("{{ 10 ** (10 ** 10) }}", True, id="huge-power"),
    pytest.param("{{ (10 ** 4000) * (10 ** 4000) * (10 ** 4000) }}", True, id="huge-product"),
    pytest.param("{{ '%50000000s' % 'x' }}", True, id="percent-width"),
    pytest.param("{{ 1/0 }}", True, id="constant-division-by-zero"),
    pytest.param("{{ '{0.__class__.__mro__}'.format(1) }}", False, id="format-dunder"),
    pytest.param("{{ '{x.__globals__}'.format_map({'x': range}) }}", False, id="format-map-globals"),
    pytest.param("{{ ('{0.__globals__}'|attr('format'))(range) }}", False, id="attr-format"),
    pytest.param("{{ '%s'|format(big * 1000) }}", False, id="format-filter-big"),
    pytest.param("{{ '%50000000s'|format('x') }}", False, id="format-filter-width"),
    pytest.param("{{ '{:50000000}'.format('x') }}", False, id="format-spec-width"),
    pytest.param("{{ x|attr(dunder) }}", False, id="attr-dynamic"),
    pytest.param("{{ range(n) }}", False, id="range-dynamic"),
    pytest.param("{{ big * n }}", False, id="repeat-dynamic"),
    pytest.param("{{ 'x'.center(w) }}", False, id="center-method"),
    pytest.param("{{ 'x'|center(w) }}", False, id="center-filter"),
    pytest.param("{{ big|indent(w) }}", False, id="indent-filter"),
    pytest.param("{{ big.replace('x', big) }}", False, id="replace-method"),
    pytest.param("{{ round(5, -r) }}", False, id="round-digits"),
    pytest.param("{{ list.append(xs, 1) }}", False, id="list-append"),
    pytest.param("{{ dict.update(params, seed=1) }}", False, id="dict-update"),
    pytest.param("{{ [mega, mega, mega, mega, mega] }}", False, id="list-of-references"),
    pytest.param("{{ mega ~ mega ~ mega ~ mega ~ mega }}", False, id="concat"),
    pytest.param("{% set b = mega ~ mega %}{% set c = b ~ b %}{% set d = c ~ c %}{{ d }}", False, id="concat-doubling"),
    pytest.param("{{ '{}{}{}{}{}'.format(mega, mega, mega, mega, mega) }}", False, id="format-many"),
    pytest.param("{{ '%s%s%s%s%s' % (mega, mega, mega, mega, mega) }}", False, id="percent-many"),
    pytest.param("{{ ('%(m)s' * 5) % {'m': mega} }}", False, id="percent-named"),
    pytest.param("{{ [mega, mega, mega, mega, mega]|upper }}", False, id="filter-of-container"),
    pytest.param("{{ ''.join([mega] * 5) }}", False, id="join-method"),
    pytest.param("{{ ([mega] * 5)|join }}", False, id="join-filter"),
    pytest.param("{{ big.translate({120: big}) }}", False, id="translate"),
    pytest.param("{{ 'x'.encode().center(w) }}", False, id="bytes"),
]


def context() -> dict[str, Any]:
    return {
        "x": "text",
        "dunder": "__class__",
        "n": 10**9,
        "w": 50_000_000,
        "r": 10**6,
        "big": "x" * 10_000,
        "mega": "x" * 1_000_000,
        "xs": [1],
        "params": {"seed": 0},
    }


@pytest.mark.parametrize(("source", "static"), ESCAPES)
def test_known_sandbox_escapes_are_refused(source: str, static: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_NAME, SECRET)
    ctx = context()
    if static:
        with pytest.raises(ConfigError) as found:
            check(source, key="scenario.graph[0].prompt")
        assert found.value.key == "scenario.graph[0].prompt" and SECRET not in str(found.value)
    with pytest.raises(ConfigError) as refused:
        render(source, ctx, key="scenario.graph.ask")
    assert refused.value.key == "scenario.graph.ask"
    assert SECRET not in str(refused.value)
    assert ctx == context()  # nothing in the state was changed


def test_check_names_file_and_key_of_an_unsafe_template() -> None:
    with pytest.raises(ConfigError, match="not allowed") as e:
        check("{{ answer.__class__ }}", key="scenario.graph[2].prompt", file="my.yaml")
    assert (e.value.key, e.value.file) == ("scenario.graph[2].prompt", "my.yaml")


@pytest.mark.parametrize("size", [50_000_000, 4_000_000_000])
def test_a_huge_constant_is_refused_without_building_it(size: int) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="limit"):
            check("{{ 'A' * " + str(size) + " }}")
        with pytest.raises(ConfigError, match="limit"):
            render("{{ 'A' * " + str(size) + " }}", {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_a_range_larger_than_the_sandbox_allows_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="range"):
        check("range(200000)", is_expression=True, key="scenario.graph[0].over.k")
    with pytest.raises(ConfigError, match="range") as e:
        evaluate("range(n)", {"n": 200_000}, key="scenario.graph.teach.over.k")
    assert e.value.key == "scenario.graph.teach.over.k"
    assert len(evaluate("range(n)", {"n": sandbox.MAX_RANGE})) == sandbox.MAX_RANGE


@pytest.mark.parametrize(
    ("source", "ctx", "reason"),
    [
        ("{{ a / b }}", {"a": 1, "b": 0}, "ZeroDivisionError"),
        ("{{ a + 1 }}", {"a": "text"}, "TypeError"),
        ("{{ a|int + b }}", {"a": "1", "b": None}, "TypeError"),
        ("{{ xs[3] }}", {"xs": [1]}, "UndefinedError"),
    ],
)
def test_render_and_evaluate_errors_are_config_errors_naming_the_key(
    source: str, ctx: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason) as e:
        render(source, ctx, key="scenario.graph.ask")
    assert e.value.key == "scenario.graph.ask" and source[:8] in str(e.value)
    expression = source.removeprefix("{{ ").removesuffix(" }}")
    with pytest.raises(ConfigError, match=reason) as e:
        evaluate(expression, ctx, key="scenario.graph.score.inputs.x")
    assert e.value.key == "scenario.graph.score.inputs.x"


def test_a_template_nested_too_deeply_is_a_config_error() -> None:
    source = "1" + "+1" * 20_000
    for is_expression in (True, False):
        with pytest.raises(ConfigError, match="nested too deeply") as e:
            check(source if is_expression else "{{ " + source + " }}", is_expression=is_expression, key="k")
        assert e.value.key == "k"
    with pytest.raises(ConfigError, match="nested too deeply"):
        evaluate(source, {})


def test_rendered_output_is_bounded() -> None:
    with pytest.raises(ConfigError, match="limit"):
        render("{% for i in range(100000) %}{{ s }}{% endfor %}", {"s": "x" * 100})
    with pytest.raises(ConfigError, match="limit"):
        render("{{ s }}", {"s": "x" * (sandbox.MAX_LENGTH + 1)})  # the fast path too
    assert len(render("{{ s }}", {"s": "x" * sandbox.MAX_LENGTH})) == sandbox.MAX_LENGTH


def test_helpers_and_safe_formatting_still_work() -> None:
    ctx = {"xs": [3, 1, 2], "a": "7", "name": "Ana", "d": {"k": 1}}
    assert (
        render("{{ sorted(xs) }} {{ list(range(2)) }} {{ int(a) + 1 }} {{ float(a) }}", ctx) == "[1, 2, 3] [0, 1] 8 7.0"
    )
    assert render("{{ dict(a=1) }} {{ len(xs) }} {{ sum(xs) }} {{ max(xs) }} {{ round(2.567, 2) }}", ctx) == (
        "{'a': 1} 3 6 3 2.57"
    )
    assert render("{{ '{} is {:>4}'.format(name, a) }} {{ '%s=%d'|format(name, 3) }} {{ xs|join('-') }}", ctx) == (
        "Ana is    7 Ana=3 3-1-2"
    )
    assert render("{{ '{n}!'.format_map({'n': name}) }} {{ d.k }} {{ xs|string }}", ctx) == "Ana! 1 [3, 1, 2]"
    assert evaluate("sum([[1], [2]], [])", {}) == [1, 2]
    assert variables("{{ question }} {{ roles.teacher.name }} {{ len(xs) }}") == {"question", "roles", "xs"}


@pytest.mark.parametrize(
    "source",
    ["{{ a }}\n", "line\r\n{{ a }}\rend", "{{ true }}", "{{ none }}", "{{ True }}", "{{ d.items }}", "{{ d.k }}"],
)
def test_fast_path_gives_what_jinja_gives(source: str) -> None:
    ctx: dict[str, Any] = {"a": "v", "true": "T", "none": "N", "True": "T", "d": {"k": "x", "items": "i"}}
    assert render(source, ctx) == sandbox.ENV.from_string(source).render(ctx)


NAMES = st.sampled_from(["a", "b", "q", "true", "none", "items", "keys", "_x", "x1"])
SCALARS = st.one_of(
    st.text(max_size=20), st.integers(), st.floats(allow_nan=True), st.none(), st.booleans(),
    st.lists(st.one_of(st.text(max_size=5), st.integers(), st.none()), max_size=3),
)  # fmt: skip
VALUES = st.recursive(SCALARS, lambda inner: st.dictionaries(NAMES, inner, max_size=3), max_leaves=6)


@st.composite
def plain_templates(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(st.text(max_size=8), st.lists(NAMES, min_size=1, max_size=3)), max_size=5))
    return "".join(p if isinstance(p, str) else "{{ " + ".".join(p) + " }}" for p in parts)


@settings(max_examples=300, deadline=None)
@given(source=plain_templates(), ctx=st.dictionaries(NAMES, VALUES, max_size=5))
def test_render_of_plain_lookups_equals_jinja(source: str, ctx: dict[str, Any]) -> None:
    try:
        expected = sandbox.ENV.from_string(source).render(ctx)
    except Exception:  # whatever Jinja refuses, render refuses as a ConfigError
        with pytest.raises(ConfigError):
            render(source, ctx)
        return
    assert render(source, ctx) == expected


@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "items", "keys", "x_1"]),
        st.one_of(
            st.integers(),
            st.text(max_size=5),
            st.dictionaries(st.sampled_from(["c", "get", "d"]), st.integers(), max_size=3),
        ),
        max_size=4,
    ),
    st.sampled_from(["s.a", "s.b.c", "s.items", "s.x_1.d", "s.a.get"]),
)
def test_a_dotted_lookup_evaluates_as_jinja_does(value: dict[str, Any], source: str) -> None:
    context = {"s": value}
    try:
        expected: Any = sandbox.ENV.compile_expression(source, undefined_to_none=False)(**context)
        if isinstance(expected, Undefined):
            expected = ConfigError
    except Exception:
        expected = ConfigError
    try:
        got: Any = evaluate(source, context)
    except ConfigError:
        got = ConfigError
    if callable(expected) and expected is not ConfigError:  # a bound method (`s.items`): the same one
        assert callable(got)
    else:
        assert got == expected
