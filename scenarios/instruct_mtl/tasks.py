"""The project's own small biomedical tasks, generated from a lexicon of drugs, diseases and the relations between
them (well-known indications and adverse effects), seeded so a run is reproducible:

- `drug_disease_ner`: tag every drug and disease name in a sentence (`aspirin <Drug>, migraine <Disease>`);
- `drug_disease_relation`: does the drug treat the disease, cause it (an adverse effect), or neither;
- `biomedical_yesno`: a yes/no question about a short context;
- `abstract_sentence_role`: the role of a sentence in a clinical abstract (BACKGROUND, METHODS, RESULTS,
  CONCLUSIONS), after PubMed 200k RCT.

Their definitions and positive examples are in `instructions.yaml`, in the authors' instruction-file layout.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from typing import Any

# drug -> (diseases it treats, diseases it can cause)
LEXICON: dict[str, tuple[list[str], list[str]]] = {
    "metformin": (["type 2 diabetes"], ["lactic acidosis"]),
    "aspirin": (["migraine", "rheumatic fever"], ["gastric ulcer"]),
    "ibuprofen": (["osteoarthritis"], ["acute kidney injury"]),
    "lisinopril": (["hypertension", "heart failure"], ["angioedema"]),
    "atorvastatin": (["hypercholesterolemia"], ["myopathy"]),
    "amoxicillin": (["pneumonia", "otitis media"], ["urticaria"]),
    "warfarin": (["atrial fibrillation", "deep vein thrombosis"], ["intracranial hemorrhage"]),
    "prednisone": (["asthma", "rheumatoid arthritis"], ["osteoporosis"]),
    "levothyroxine": (["hypothyroidism"], ["atrial fibrillation"]),
    "insulin": (["type 1 diabetes"], ["hypoglycemia"]),
    "sertraline": (["major depression"], ["insomnia"]),
    "salbutamol": (["asthma"], ["tachycardia"]),
}
DRUGS = sorted(LEXICON)
DISEASES = sorted({d for treats, causes in LEXICON.values() for d in treats + causes})

_NER = [
    "Patients with {disease} were given {drug} twice daily for twelve weeks .",
    "A 54 - year - old woman with {disease} was started on {drug} .",
    "{drug} was withdrawn after the patient developed {disease} .",
    "The trial enrolled adults with {disease} and excluded those already taking {drug} .",
    "Serum levels were measured in healthy volunteers before the first dose .",
]
_TREATS = [
    "{drug} is a first - line treatment for {disease} .",
    "In this cohort , {drug} improved symptoms of {disease} within four weeks .",
]
_CAUSES = [
    "{drug} therapy was complicated by {disease} in three patients .",
    "Cases of {disease} have been reported after long - term use of {drug} .",
]
_NONE = [
    "Both {drug} use and a history of {disease} were recorded at the baseline visit .",
    "The survey asked about {disease} in relatives and about the cost of {drug} .",
]
_ROLES = {
    "BACKGROUND": [
        "{disease} affects millions of adults and its optimal management remains uncertain .",
        "Little is known about the long - term effects of {drug} in older adults .",
    ],
    "METHODS": [
        "We randomly assigned {n} patients with {disease} to receive {drug} or placebo .",
        "The primary outcome was assessed at {k} weeks by investigators unaware of group assignment .",
    ],
    "RESULTS": [
        "{drug} reduced the rate of hospital admission for {disease} by {p} percent ( P < 0.01 ) .",
        "Adverse events occurred in {p} percent of patients in the {drug} group .",
    ],
    "CONCLUSIONS": [
        "{drug} is an effective and safe option for patients with {disease} .",
        "These findings support wider use of {drug} in the treatment of {disease} .",
    ],
}


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _ner(rng: random.Random) -> tuple[str, list[str]]:
    template = rng.choice(_NER)
    drug, disease = rng.choice(DRUGS), rng.choice(DISEASES)
    text = _sentence(template.format(drug=drug, disease=disease))
    found = [(text.lower().find(name), name, kind) for name, kind in ((drug, "Drug"), (disease, "Disease"))]
    # gold entities as they appear, in order of appearance; a sentence may have none
    labels = [f"{text[i : i + len(name)]} <{kind}>" for i, name, kind in sorted(found) if i >= 0]
    return text, labels or ["none"]


def _relation(rng: random.Random) -> tuple[str, list[str]]:
    label = rng.choice(["treats", "causes", "none"])
    drug = rng.choice(DRUGS)
    treats, causes = LEXICON[drug]
    if label == "none":
        disease = rng.choice([d for d in DISEASES if d not in treats + causes])
    else:
        disease = rng.choice(treats if label == "treats" else causes)
    template = rng.choice({"treats": _TREATS, "causes": _CAUSES, "none": _NONE}[label])
    text = _sentence(template.format(drug=drug, disease=disease))
    return f"{text} [drug: {drug}; disease: {disease}]", [label]


def _yesno(rng: random.Random) -> tuple[str, list[str]]:
    drug = rng.choice(DRUGS)
    treats = LEXICON[drug][0]
    disease = rng.choice(treats)
    context = _sentence(rng.choice(_TREATS).format(drug=drug, disease=disease))
    if rng.random() < 0.5:
        asked, gold = disease, "yes"
    else:
        asked, gold = rng.choice([d for d in DISEASES if d not in treats]), "no"
    question = f"Is {drug} used to treat {asked} ?"
    return f"Context: {context} Question: {question}", [gold]


def _sentence_role(rng: random.Random) -> tuple[str, list[str]]:
    label = rng.choice(sorted(_ROLES))
    drug = rng.choice(DRUGS)
    disease = rng.choice(LEXICON[drug][0])
    numbers = {"n": rng.randint(60, 900), "k": rng.choice([4, 8, 12, 24, 52]), "p": rng.randint(10, 45)}
    return _sentence(rng.choice(_ROLES[label]).format(drug=drug, disease=disease, **numbers)), [label]


GENERATORS: dict[str, Callable[[random.Random], tuple[str, list[str]]]] = {
    "drug_disease_ner": _ner,
    "drug_disease_relation": _relation,
    "biomedical_yesno": _yesno,
    "abstract_sentence_role": _sentence_role,
}


def generate(task: str, count: int, *, seed: int, avoid: Collection[str] = ()) -> list[dict[str, Any]]:
    """`count` distinct instances `{task, input, output}` of a bundled task; inputs in `avoid` (the task's
    positive examples) are never drawn, so no instance is also a demonstration."""
    rng = random.Random(f"instruct_mtl/{task}/{seed}")
    seen: set[str] = set(avoid)
    out: list[dict[str, Any]] = []
    for _ in range(count * 200):
        if len(out) == count:
            break
        text, labels = GENERATORS[task](rng)
        if text not in seen:
            seen.add(text)
            out.append({"task": task, "input": text, "output": ", ".join(labels)})
    return out
