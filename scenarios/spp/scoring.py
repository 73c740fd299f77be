"""Answer extraction and the three tasks' metrics, as the authors compute them (tasks/*.py in their repository).

Extraction (`prompt_unwrap`): the SPP prompts end in "Final answer:", the standard and CoT prompts in "Answer:"
(trivia CoT: "Story:"); the text after the marker is the answer. Whether a reply without its marker still counts
as parsed follows the authors per task (a trivia story is the whole reply under the standard prompt; a codenames
reply without "Answer:" is used whole). Unlike the authors, an unparsed answer scores 0 here (they scored the
whole reply, which can leak the target words a spymaster was shown), and the parse rate is reported.
"""

from __future__ import annotations

import re
from typing import Any

ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"]
SPP_FAMILY = {"spp", "spp_profile", "spp_fixed_persona", "spp_multi"}
ASSISTANT = "AI Assistant (you)"
ASSISTANT_PROFILE = "A super-intelligent AI assistant capable of performing tasks more effectively than humans."


def _after(reply: str, markers: tuple[str, ...]) -> str | None:
    """The text after the first marker found (up to a second occurrence of it), as the authors' split()[1]."""
    for marker in markers:
        if marker in reply:
            return reply.split(marker)[1].strip()
    return None


def unwrap(reply: str, *, task: str, variant: str) -> dict[str, Any]:
    """The answer in a reply and whether it was found: `{"text", "parsed"}`.

    Args:
        reply: the model's reply (for self_refine: the refined answer).
        task: trivia_creative_writing, codenames or logic_grid_puzzle.
        variant: the prompt variant; spp_multi's final answer is read like the SPP prompt's.
    """
    if variant in SPP_FAMILY:
        markers: tuple[str, ...] = ("Final answer:", "final answer:")
        whole_is_answer = False
    elif task == "trivia_creative_writing":
        markers = ("Story:", "story:") if variant == "cot" else ()
        whole_is_answer = variant != "cot"
    else:
        markers = ("Answer:", "answer:")
        whole_is_answer = task == "codenames"
    found = _after(reply, markers)
    text = found if found is not None else reply.strip() if whole_is_answer else ""
    # an empty answer ("Final answer: .") is no answer: a codenames guesser would be asked about the word ""
    return {"text": text, "parsed": (found is not None or whole_is_answer) and bool(text.strip(" .\n"))}


def trivia_score(story: str, answers: list[list[str]]) -> float:
    """Share of questions with any answer alias in the story (case-insensitive substring)."""
    text = story.lower()
    return sum(any(alias.lower() in text for alias in aliases) for aliases in answers) / len(answers)


def guessed_words(text: str) -> set[str]:
    """The guesser's comma-separated words, lower-cased, without periods."""
    return {w.strip().replace(".", "").lower() for w in text.split(",")}


def codenames_score(guesses: str, targets: list[str]) -> float:
    """|guesses ∩ targets| / |targets|."""
    gold = {t.strip().lower() for t in targets}
    return len(guessed_words(guesses) & gold) / len(gold)


def logic_correct(output: str, target: str) -> float:
    """1.0 if the target house (its number or ordinal) appears and no other number or ordinal from 1 to 10 does:
    the authors' substring check, kept as is ("10" also contains "1")."""
    text = output.lower().strip()
    numbers = [str(i) for i in range(1, 11)]
    wanted = [target] + ([ORDINALS[numbers.index(target)]] if target in numbers else [])
    others = [x for i, n in enumerate(numbers) if n not in wanted for x in (n, ORDINALS[i])]
    if not any(w.lower().strip() in text for w in wanted):
        return 0.0
    return 0.0 if any(o in text for o in others) else 1.0


def task_score(task: str, text: str, gold: Any) -> float:
    if task == "trivia_creative_writing":
        return trivia_score(text, gold)
    if task == "codenames":
        return codenames_score(text, gold)
    return logic_correct(text, str(gold))


def hint_word(answer: dict[str, Any]) -> str:
    """The spymaster's hint as the guesser sees it: the answer without periods (as the authors' run.py)."""
    return str(answer["text"]).replace(".", "").strip()


def participants(reply: str, *, max_personas: int = 3) -> dict[str, Any]:
    """The personas a model named (`Participants: A; B; C`, then optional `- Name: profile` lines), in speaking
    order: the other participants first, the AI Assistant (you) last, as in the paper's demonstrations.
    Without a `Participants:` line, the fixed pair (Expert, AI Assistant) and `parsed: False`."""
    found = re.search(r"participants\s*:\s*(.+)", reply, re.IGNORECASE)
    profiles = {
        m.group(1).strip().lower(): m.group(2).strip()
        for m in re.finditer(r"^\s*[-*]\s*([^:\n]+?)\s*:\s*(.+)$", reply, re.MULTILINE)
    }
    names: list[str] = []
    if found:
        line = found.group(1)
        for name in re.split(r";" if ";" in line else r",", line):
            name = name.strip().strip(".").strip()
            if name and name.lower() not in {n.lower() for n in names} and "ai assistant" not in name.lower():
                names.append(name)
    if not names:
        fixed = [{"name": "Expert", "profile": ""}, {"name": ASSISTANT, "profile": ASSISTANT_PROFILE}]
        return {"participants": fixed, "parsed": False}
    cast = [{"name": n, "profile": profiles.get(n.lower(), "")} for n in names[:max_personas]]
    assistant_profile = next((p for n, p in profiles.items() if "ai assistant" in n), ASSISTANT_PROFILE)
    return {"participants": [*cast, {"name": ASSISTANT, "profile": assistant_profile}], "parsed": True}
