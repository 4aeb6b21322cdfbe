"""The provider chain on in-memory providers: order, failures, sanity check, disagreement check."""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl
import pytest

from headwater import events
from headwater.errors import FetchError, NotFoundError
from headwater.providers import PROVIDERS_DISAGREE, Provider, run_chain

DAY = date(2025, 5, 9)


def frame(values: dict[str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"day": [DAY] * len(values), "quote": list(values), "value": list(values.values())},
        schema={"day": pl.Date, "quote": pl.String, "value": pl.Float64},
    )


def answers(values: dict[str, float], calls: list[str] | None = None, name: str = "") -> Any:
    def fetch() -> pl.DataFrame:
        if calls is not None:
            calls.append(name)
        return frame(values)

    return fetch


def fails(error: Exception) -> Any:
    def fetch() -> pl.DataFrame:
        raise error

    return fetch


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, dict[str, Any]]]:
    calls: list[tuple[str, str, str, dict[str, Any]]] = []
    monkeypatch.setattr(
        events, "emit", lambda event, instance, source, **payload: calls.append((event, instance, source, payload))
    )
    return calls


def chain(providers: list[Provider], **kwargs: Any) -> Any:
    return run_chain(
        "test-source", providers, compare_key=("day", "quote"), compare_value="value", tolerance=0.02, **kwargs
    )


def test_first_valid_answer_wins_and_every_row_names_it(emitted: list[Any]) -> None:
    calls: list[str] = []
    result = chain(
        [
            Provider("a", answers({"USD": 1.1, "JPY": 160.0}, calls, "a")),
            Provider("b", answers({"USD": 1.1, "JPY": 160.0}, calls, "b")),
            Provider("c", answers({"USD": 1.1}, calls, "c")),
        ]
    )
    assert result.winner == "a"
    assert result.frame.get_column("provider").to_list() == ["a", "a"]
    assert result.failures == []
    assert calls == ["a", "b"]  # the next provider is asked for the comparison only; c never
    assert (result.compared_with, result.compared_keys, result.disagreements) == (["b"], 2, [])
    assert emitted == []


def test_failures_are_recorded_with_their_error_text_in_order(emitted: list[Any]) -> None:
    result = chain(
        [
            Provider("a", fails(NotFoundError("test-source", "http://a/x", "HTTP 404 Not Found", 404))),
            Provider("b", answers({})),  # empty answer
            Provider("c", answers({"USD": -1.0})),  # fails the built-in sanity check
            Provider("d", answers({"USD": 5000.0}), check=lambda f: "implausible" if f["value"].max() > 100 else None),  # type: ignore[operator]
            Provider("e", answers({"USD": 1.1})),
        ],
        compare_with="none",
    )
    assert result.winner == "e"
    assert [name for name, _ in result.failures] == ["a", "b", "c", "d"]
    errors = dict(result.failures)
    assert "HTTP 404" in errors["a"]
    assert "http://a/x" in errors["a"]
    assert "no rows" in errors["b"]
    assert "not above zero" in errors["c"]
    assert "implausible" in errors["d"]
    notes = result.notes()
    assert notes["winner"] == "e"
    assert notes["failures"][0] == {"provider": "a", "error": errors["a"]}


def test_all_providers_failing_raises_a_fetch_error_naming_each() -> None:
    with pytest.raises(FetchError) as raised:
        chain([Provider("a", fails(RuntimeError("boom"))), Provider("b", answers({}))])
    message = str(raised.value)
    assert message.startswith("test-source: a,b: every provider failed")
    assert "a: RuntimeError: boom" in message
    assert "b: failed the sanity check: answered no rows" in message


def test_disagreement_beyond_tolerance_is_flagged_logged_and_emitted(
    emitted: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    result = chain(
        [
            Provider("a", answers({"USD": 1.10, "JPY": 160.0, "GBP": 0.85})),
            Provider("b", answers({"USD": 1.21, "JPY": 161.0, "CHF": 0.93})),  # USD +10%, JPY +0.6%
        ],
        instance="test-instance",
        source_name="test",
    )
    assert result.compared_keys == 2  # USD and JPY: the keys both answered
    [d] = result.disagreements
    assert (d.key, d.provider_a, d.value_a, d.provider_b, d.value_b) == ((DAY, "USD"), "a", 1.10, "b", 1.21)
    assert result.notes()["disagreements"] == [
        {
            "key": {"day": "2025-05-09", "quote": "USD"},
            "provider_a": "a",
            "value_a": 1.10,
            "provider_b": "b",
            "value_b": 1.21,
            "relative_difference": pytest.approx(0.090909, abs=1e-6),
        }
    ]
    [(event, instance, source, payload)] = emitted
    assert (event, instance, source, payload["winner"]) == (PROVIDERS_DISAGREE, "test-instance", "test", "a")
    assert "providers disagree" in caplog.text


def test_comparison_skips_failing_and_static_providers_and_can_ask_all(emitted: list[Any]) -> None:
    static_calls: list[str] = []
    result = chain(
        [
            Provider("a", answers({"USD": 1.10})),
            Provider("b", fails(RuntimeError("down"))),
            Provider("c", answers({"USD": 1.105})),
            Provider("d", answers({"USD": 1.50})),
            Provider("static", answers({"USD": 9.0}, static_calls, "static"), comparable=False),
        ],
        compare_with="all",
    )
    assert result.compared_with == ["c", "d"]
    assert result.comparison_failures == [("b", "RuntimeError: down")]
    assert result.failures == []  # the winner answered; comparison failures are not chain failures
    assert [d.provider_b for d in result.disagreements] == ["d"]
    assert static_calls == []


def test_a_static_winner_is_not_compared(emitted: list[Any]) -> None:
    result = chain(
        [Provider("a", fails(RuntimeError("down"))), Provider("static", answers({"USD": 9.0}), comparable=False)]
    )
    assert (result.winner, result.compared_with, result.failures) == ("static", [], [("a", "RuntimeError: down")])
