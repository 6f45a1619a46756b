"""The server-drawn SVG charts: known numbers give known bars, titles and axis; accessible and scalable."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

import pytest

from callerid.console import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ElementTree.Element:
    return ElementTree.fromstring(str(markup))  # well-formed XML, or this raises


def bars(root: ElementTree.Element, colour: str) -> list[dict[str, float]]:
    return [
        {name: float(rect.attrib[name]) for name in ("x", "y", "width", "height")}
        for rect in root.iter(f"{SVG}rect")
        if rect.attrib.get("fill") == colour
    ]


@pytest.mark.parametrize(("value", "ceiling"), [(0, 1), (1, 1), (3, 5), (7, 10), (11, 20), (150, 200), (501, 1000)])
def test_nice_ceiling(value: float, ceiling: int) -> None:
    assert charts.nice_ceiling(value) == ceiling


def test_stacked_bars_of_known_numbers() -> None:
    svg = charts.stacked_bars(
        "chart-calls",
        "Calls per day by outcome",
        "3 answered, 1 missed, 1 rejected",
        ["1 Dec", "2 Dec"],
        [
            charts.Series("Answered", charts.ANSWERED, [3, 0]),
            charts.Series("Missed", charts.MISSED, [1, 0]),
            charts.Series("Rejected", charts.REJECTED, [1, 0]),
        ],
        category_titles=["Tue 1 Dec 2026", "Wed 2 Dec 2026"],
    )
    root = parse(svg)
    # Accessible: an image named by its title and described by its summary; scales with its viewBox (no size).
    assert root.attrib["role"] == "img"
    assert root.attrib["aria-labelledby"] == "chart-calls-title"
    assert root.attrib["aria-describedby"] == "chart-calls-desc"
    assert root.attrib["viewBox"] == f"0 0 {charts.WIDTH} {charts.HEIGHT}"
    assert "width" not in root.attrib and "height" not in root.attrib and "style" not in root.attrib
    assert root.find(f"{SVG}title").text == "Calls per day by outcome"  # type: ignore[union-attr]
    assert root.find(f"{SVG}desc").text == "3 answered, 1 missed, 1 rejected"  # type: ignore[union-attr]
    # The top of the axis is 5 (the tallest bar): 3 + 1 + 1 fills the plot; the empty day has no bars.
    plot = charts.HEIGHT - 12 - 40
    [answered] = bars(root, charts.ANSWERED)
    [missed] = bars(root, charts.MISSED)
    [rejected] = bars(root, charts.REJECTED)
    assert answered["height"] == pytest.approx(plot * 3 / 5, abs=0.1)
    assert missed["height"] == pytest.approx(plot / 5, abs=0.1)
    assert rejected["y"] == pytest.approx(12, abs=0.1)  # stacked to the top
    assert answered["y"] + answered["height"] == pytest.approx(12 + plot, abs=0.1)  # from the axis up
    assert answered["x"] == missed["x"] == rejected["x"]
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "Tue 1 Dec 2026: 3 answered, 1 missed, 1 rejected" in titles
    assert "Wed 2 Dec 2026: 0 answered, 0 missed, 0 rejected" in titles
    assert [t.text for t in root.iter(f"{SVG}text")] == ["0", "1", "2", "3", "4", "5", "1 Dec", "2 Dec"]


@pytest.mark.parametrize(
    ("top", "ticks"), [(1, [0, 1]), (2, [0, 1, 2]), (10, [0, 2, 4, 6, 8, 10]), (20, [0, 5, 10, 15, 20])]
)
def test_axis_ticks_are_whole_round_numbers(top: int, ticks: list[int]) -> None:
    steps = charts.axis_steps(top)
    assert [top * step // steps for step in range(steps + 1)] == ticks


def test_many_days_get_at_most_eight_labels_but_every_bar() -> None:
    days = [f"day {i}" for i in range(90)]
    svg = charts.stacked_bars(
        "c", "t", "s", days, [charts.Series("Blocked attempts", charts.BLOCKED, [i % 3 for i in range(90)])]
    )
    root = parse(svg)
    labels = [t.text for t in root.iter(f"{SVG}text") if (t.text or "").startswith("day ")]
    assert 1 < len(labels) <= 8
    assert len(bars(root, charts.BLOCKED)) == sum(1 for i in range(90) if i % 3)
    assert len([t for t in root.iter(f"{SVG}title")]) == 1 + 90  # the chart's and one per day


def test_empty_chart_has_an_axis_and_no_bars() -> None:
    root = parse(charts.stacked_bars("c", "t", "nothing", [], [charts.Series("Answered", charts.ANSWERED, [])]))
    assert bars(root, charts.ANSWERED) == []
    assert [t.text for t in root.iter(f"{SVG}text")] == ["0", "1"]


def test_horizontal_bars_of_rates_and_escaping() -> None:
    svg = charts.horizontal_bars(
        "chart-rate",
        "Answer rate per label",
        "<Acme> 75 %",
        [("<Acme> & Co", 0.75, "75.0 % of 4"), ("Quiet", None, "— of 0")],
    )
    text = str(svg)
    assert "<Acme>" not in text and "&lt;Acme&gt; &amp; Co" in text  # names are escaped
    root = parse(svg)
    filled = bars(root, charts.RATE)
    assert len(filled) == 1
    track = [r for r in root.iter(f"{SVG}rect") if r.attrib["fill"] == "#eef3fd"]
    assert len(track) == 2
    assert float(filled[0]["width"]) == pytest.approx(float(track[0].attrib["width"]) * 0.75, abs=0.1)
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert titles == ["Answer rate per label", "<Acme> & Co: 75.0 % of 4", "Quiet: — of 0"]
    assert re.search(rf'viewBox="0 0 {charts.WIDTH} \d+"', text)


def test_percent() -> None:
    assert charts.percent(None) == "—"
    assert charts.percent(0.5386) == "53.9 %"
    assert charts.percent(1) == "100.0 %"
