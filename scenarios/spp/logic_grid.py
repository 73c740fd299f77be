"""Logic grid puzzles in the BIG-bench `logic_grid_puzzle` format, generated with a unique solution.

N houses in a row, K characteristics (flowers, instruments, ...), each value held by exactly one house. Clues use
the BIG-bench sentence forms ("lives directly left of", "There is one house between where ..."); clues true of a
random solution are added until the solver finds exactly one solution, then clues that are not needed for
uniqueness are dropped. The question asks for the house of one person; `targets` holds its number.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

# (intro line, [(how the list names a value, how a clue names its holder)]); five values each.
CATEGORIES: list[tuple[str, list[tuple[str, str]]]] = [
    ("Each person has different flowers in their foyer", [
        ("one has a carnations arrangement", "the person who has a carnations arrangement"),
        ("one has a bouquet of daffodils", "the person who has a bouquet of daffodils"),
        ("one has a vase of tulips", "the person who has a vase of tulips"),
        ("one has a bouquet of lilies", "the person who has a bouquet of lilies"),
        ("one has a rose bouquet", "the person who has a rose bouquet"),
    ]),
    ("Each person plays a different musical instrument", [
        ("one is a guitarist", "the guitarist"), ("one is a pianist", "the pianist"),
        ("one is a percussionist", "the percussionist"), ("one is a flutist", "the flutist"),
        ("one is a cellist", "the cellist"),
    ]),
    ("Each person is eating a different kind of fruit", [
        ("one is eating kiwis", "the person who is eating kiwis"),
        ("one is eating grapes", "the person who is eating grapes"),
        ("one is eating oranges", "the person who is eating oranges"),
        ("one is eating mangos", "the person who is eating mangos"),
        ("one is eating a banana", "the person who is eating a banana"),
    ]),
    ("Each person has a favorite drink", [
        ("one is a coffee drinker", "the coffee drinker"), ("one is a root beer lover", "the root beer lover"),
        ("one only drinks water", "the person who only drinks water"), ("one is a tea drinker", "the tea drinker"),
        ("one likes milk", "the person who likes milk"),
    ]),
    ("Each person has a favorite color", [
        ("one likes blue", "the person who likes blue"), ("one likes white", "the person who likes white"),
        ("one likes green", "the person who likes green"), ("one likes red", "the person who likes red"),
        ("one likes yellow", "the person who likes yellow"),
    ]),
    ("Each person has a different device", [
        ("one has a television", "the person who has a television"),
        ("one has a phone", "the person who has a phone"),
        ("one has a gameboy", "the person who has a gameboy"),
        ("one has a computer", "the person who has a computer"),
        ("one has a radio", "the person who has a radio"),
    ]),
    ("Each person has different pets", [
        ("one is a cat lover", "the cat lover"), ("one is a dog owner", "the dog owner"),
        ("one is a bird keeper", "the bird keeper"), ("one is a fish enthusiast", "the fish enthusiast"),
        ("one owns horses", "the person who owns horses"),
    ]),
    ("Each person plays a different sport", [
        ("one is a golfer", "the golfer"), ("one is a swimmer", "the swimmer"),
        ("one is a tennis player", "the tennis player"), ("one is a soccer player", "the soccer player"),
        ("one is a cricketer", "the cricketer"),
    ]),
]  # fmt: skip

ORDINALS = ["first", "second", "third", "fourth", "fifth"]
MAX_HOUSES = len(ORDINALS)

Entity = tuple[int, int]  # (characteristic, value)
Clue = tuple[str, Entity, int | Entity]  # (kind, entity, a house index or another entity)
Grid = list[list[int]]  # grid[characteristic][value] = house index (0-based)


def holds(clue: Clue, grid: Grid) -> bool:
    """Whether a clue is true of a (complete or partial: the entities it names are placed) assignment."""
    kind, (ca, va), other = clue
    a = grid[ca][va]
    if isinstance(other, int):  # at / not_at a house
        return a == other if kind == "at" else a != other
    b = grid[other[0]][other[1]]
    return {
        "directly_left": a + 1 == b,
        "somewhere_left": a < b,
        "somewhere_right": a > b,
        "next_to": abs(a - b) == 1,
        "one_between": abs(a - b) == 2,
        "two_between": abs(a - b) == 3,
    }[kind]


def _chars(clue: Clue) -> set[int]:
    return {clue[1][0]} | ({clue[2][0]} if isinstance(clue[2], tuple) else set())


def solutions(clues: list[Clue], houses: int, characteristics: int, *, limit: int = 2) -> Iterator[Grid]:
    """Every assignment satisfying all clues (at most `limit`): backtracking one characteristic at a time,
    checking a clue as soon as every characteristic it names is placed."""
    ready = [[c for c in clues if max(_chars(c)) == k] for k in range(characteristics)]
    perms = list(itertools.permutations(range(houses)))
    grid: Grid = []
    found = 0

    def place(k: int) -> Iterator[Grid]:
        nonlocal found
        if k == characteristics:
            found += 1
            yield [list(row) for row in grid]
            return
        for perm in perms:
            grid.append(list(perm))
            if all(holds(c, grid) for c in ready[k]):
                yield from place(k + 1)
            grid.pop()
            if found >= limit:
                return

    yield from place(0)


def count_solutions(clues: list[Clue], houses: int, characteristics: int, *, limit: int = 2) -> int:
    return sum(1 for _ in solutions(clues, houses, characteristics, limit=limit))


def _random_clue(rng: random.Random, grid: Grid, houses: int) -> Clue:
    kinds = ["at", "not_at", "directly_left", "somewhere_left", "somewhere_right", "next_to", "one_between"]
    kinds += ["two_between"] if houses >= 4 else []
    while True:
        a = (rng.randrange(len(grid)), rng.randrange(houses))
        kind = rng.choice(kinds)
        other: int | Entity = rng.randrange(houses)
        if kind not in ("at", "not_at"):
            other = (rng.randrange(len(grid)), rng.randrange(houses))
            if other == a:
                continue
        clue = (kind, a, other)
        if holds(clue, grid):
            return clue


def phrase(clue: Clue, names: list[list[str]]) -> str:
    """The clue as a BIG-bench sentence."""
    kind, (ca, va), other = clue
    a = names[ca][va]
    if isinstance(other, int):
        text = f"{a} {'lives' if kind == 'at' else 'does not live'} in the {ORDINALS[other]} house."
    else:
        b = names[other[0]][other[1]]
        text = {
            "directly_left": f"{a} lives directly left of {b}.",
            "somewhere_left": f"{a} lives somewhere to the left of {b}.",
            "somewhere_right": f"{a} lives somewhere to the right of {b}.",
            "next_to": f"{a} and {b} live directly next to each other.",
            "one_between": f"There is one house between where {a} lives and where {b} lives.",
            "two_between": f"There are two houses between where {a} lives and where {b} lives.",
        }[kind]
    return text[0].upper() + text[1:]


def _listing(items: list[str]) -> str:
    return " and ".join(items) if len(items) == 2 else ", ".join(items[:-1]) + ", and " + items[-1]


def generate_puzzle(rng: random.Random, *, houses: int, characteristics: int) -> tuple[dict[str, Any], list[Clue]]:
    """One puzzle with a unique solution: its BIG-bench record (without `idx`) and its clues."""
    cats = rng.sample(range(len(CATEGORIES)), characteristics)
    values = [rng.sample(range(MAX_HOUSES), houses) for _ in cats]  # which of the category's values are used
    grid: Grid = [rng.sample(range(houses), houses) for _ in cats]
    clues: list[Clue] = []
    while count_solutions(clues, houses, characteristics) > 1:
        clue = _random_clue(rng, grid, houses)
        if clue not in clues:
            clues.append(clue)
    for clue in rng.sample(clues, len(clues)):  # drop clues that uniqueness does not need
        rest = [c for c in clues if c != clue]
        if count_solutions(rest, houses, characteristics) == 1:
            clues = rest
    listed = [[CATEGORIES[c][1][v][0] for v in vs] for c, vs in zip(cats, values, strict=True)]
    names = [[CATEGORIES[c][1][v][1] for v in vs] for c, vs in zip(cats, values, strict=True)]
    asked = (rng.randrange(characteristics), rng.randrange(houses))
    target = grid[asked[0]][asked[1]] + 1
    choices = rng.sample(range(1, houses + 1), houses)
    lines = [f" - {CATEGORIES[c][0]}: {_listing(items)}" for c, items in zip(cats, listed, strict=True)]
    text = (
        f"Q: There are {houses} houses in a row, numbered 1 on the left to {houses} on the right. There is one "
        "person living in each house. The people in these houses have different characteristics:\n"
        + "\n".join(lines)
        + "\n\nClue(s):\n"
        + "\n".join(f"{i}. {phrase(c, names)}" for i, c in enumerate(clues, 1))
        + f"\n\nWhat is the number of the house where {names[asked[0]][asked[1]]} lives?\n"
        + "".join(f"  choice: {k}\n" for k in choices)
        + "A:"
    )
    options = [str(k) for k in range(1, houses + 1)]
    return {
        "inputs": text,
        "targets": [str(target)],
        "multiple_choice_targets": options,
        "multiple_choice_scores": [int(o == str(target)) for o in options],
    }, clues
