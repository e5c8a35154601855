"""Property-based tests of the prompt language: it never crashes, and canonical text round-trips."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.prompt import PromptError, PromptLimits, Request, parse

ALIASES = ("6", "niji", "niji 6", "Dream Shaper")
LIMITS = PromptLimits(model_aliases=ALIASES)
# Canonical text can be longer than what was typed (long names, explicit `::1` weights).
ROUND_TRIP_LIMITS = PromptLimits(
    max_length=100_000, max_repeat=40, max_permutations=200, model_aliases=ALIASES
)

# Pieces that exercise every rule of the grammar, glued together in random orders.
FRAGMENTS = (
    " ", "  ", "\t", "\n", "a", "cat", "red fox", "7", "-0.5", ".5", "1.5", "2", ":", "::", "::2", "::-1",
    ",", "\\", "\\,", "{", "}", "{a, b}", "{x,{y,z}}", "-", "--", "\u2014", "\u2013", "<", ">",
    "http://example.com/a.png", "https://x.org/b.jpg", "ftp://x/y", "<https://e.com/c.png>",
    "--ar", "--aspect", "--ar 16:9", "--ar 1:5", "--seed", "--seed 42", "--no", "--no wall, tree",
    "--c", "--chaos 30", "--s", "--stylize 250", "--q", "--quality .25", "--stop 50", "--tile",
    "--r", "--repeat 2", "--iw", "--iw 1.5", "--v", "--v 6", "--version niji 6", "--niji", "--niji 6",
    "--steps 30", "--cfg 7.5", "--sampler euler_a", "--sampler Euler-A", "--weird", "--sref", "--styl",
    "\u2014ar 3:2", "\u2014no", "--AR 2:3", "--ar16:9", "0", "100", "4294967296", "{--ar 16:9, --ar 1:1}",
)  # fmt: skip

WORDS = ("a", "red fox", "C:\\dir", "x\\,y", "{p, q}", "it's", "50%", "a—b", "é", "u:", ":v", "w:x", "")
WEIGHTS = ("", "::", "::2", "::-0.5", "::0", "::.25", "::1.0", " ::3")
PARAMETERS = (
    *(fragment for fragment in FRAGMENTS if fragment.startswith(("--", "\u2014"))),
    "--no {a, b}", "--seed 4294967295", "--quality 2", "--q 0.5", "--cfg 0", "--cfg 30", "--steps 150",
    "--v Dream  Shaper", "--v dream shaper", "--iw 0", "--iw 3", "--stop 10", "--ar 4:1", "--ar 40:10",
)  # fmt: skip
structured_texts = st.tuples(
    st.lists(st.sampled_from(("http://example.com/a.png", "<https://x.org/b.jpg>")), max_size=2),
    st.lists(
        st.tuples(st.sampled_from(WORDS), st.sampled_from(WEIGHTS)).map("".join), min_size=1, max_size=4
    ),
    st.lists(st.sampled_from(PARAMETERS), max_size=5),
).map(lambda t: " ".join([*t[0], *t[1], *t[2]]))

prompt_texts = st.one_of(
    structured_texts,
    st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=10).map("".join),
    st.text(max_size=80),
)
defaults_maps = st.dictionaries(
    st.sampled_from(
        ("ar", "--aspect", "s", "stylize", "iw", "seed", "tile", "niji", "v", "no", "weird", "q")
    ),
    st.sampled_from(("16:9", "250", "1", "2", "", "off", "6", "tree", "0:0", "abc")),
    max_size=3,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(text=prompt_texts, defaults=defaults_maps)
@example(text="a::2 b: ::3 c::-1 --no d, e", defaults={})
@example(text="x {a, }\u2014ar 2:1", defaults={})
def test_parse_raises_only_prompt_error(text: str, defaults: dict[str, str]) -> None:
    try:
        requests = parse(text, limits=LIMITS, defaults=defaults)
    except PromptError as exc:
        message = exc.message
    else:
        assert 1 <= len(requests) <= LIMITS.max_permutations
        assert all(isinstance(request, Request) for request in requests)
        return
    assert message.strip()
    assert len(message) < 1000  # it goes into a Discord message


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(text=prompt_texts)
@example(text="a: ::2 :b::-0.5 c --no d")
@example(text="C:\\{x\\,y\\} \\\\, {p\\,q, r}")
@example(text="https://x.org/a.png a::2 --iw 0.5 --niji 6")
def test_canonical_text_parses_back_to_the_same_request(text: str) -> None:
    try:
        requests = parse(text, limits=ROUND_TRIP_LIMITS)
    except PromptError:
        return
    for request in requests:
        canonical = str(request)
        assert parse(canonical, limits=ROUND_TRIP_LIMITS) == [request], canonical
        assert str(parse(canonical, limits=ROUND_TRIP_LIMITS)[0]) == canonical


@settings(max_examples=100)
@given(
    words=st.lists(st.from_regex(r"[a-z]{1,8}", fullmatch=True), min_size=1, max_size=6, unique=True),
    repeat=st.integers(min_value=1, max_value=4),
)
def test_permutations_times_repeat_give_one_request_per_option_each_repeated(
    words: list[str], repeat: int
) -> None:
    requests = parse(f"a {{{', '.join(words)}}} bird --repeat {repeat}", limits=ROUND_TRIP_LIMITS)
    assert [request.prompt for request in requests] == [
        f"a {word} bird" for word in words for _ in range(repeat)
    ]


@settings(max_examples=100)
@given(text=prompt_texts, padding=st.sampled_from((" ", "\n ", "\t\t")))
def test_extra_whitespace_between_words_changes_nothing(text: str, padding: str) -> None:
    try:
        expected = parse(text, limits=ROUND_TRIP_LIMITS)
    except PromptError:
        return
    assert parse(padding + text.replace(" ", padding) + padding, limits=ROUND_TRIP_LIMITS) == expected
