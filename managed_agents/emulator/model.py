"""The offline triage model: reads the agent's system prompt and a ticket, answers one JSON line.

It behaves the way the prompt asks, transparently:

1. The allowed labels come from the prompt's output template: every ``"key": "<a|b|c>"``.
2. Routing rules written in the prompt ("If the ticket text mentions A, B, or C, route
   to T.") are applied first, matched ignoring case and plural endings; the prompt says
   not to second-guess them, so nothing overrides them.
3. Otherwise cue phrases from ``lexicon.json`` score each allowed team (the customer's
   problem: invoices and refunds are billing even when usage or rate limits come up);
   urgency cues pick the priority among the allowed priority labels.
4. Optional noise: with probability ``noise`` the second-best team is answered, the way a
   real model varies from run to run; the caller supplies the dice, so runs reproduce.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import json
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LEXICON_PATH = Path(__file__).with_name("lexicon.json")
TEAM_KEYS = ("team", "queue", "department", "group", "route", "routing", "category")
PRIORITY_KEYS = ("priority", "severity", "urgency", "level")
DEFAULT_PRIORITY_LABELS = ("P1", "P2", "P3")

_TEMPLATE_FIELD = re.compile(r'"([A-Za-z_][\w-]*)"\s*:\s*"<([^<>"]+)>"')
_RULE = re.compile(
    r"\bif\s+(?:the|a|any)\s+ticket(?:'s)?(?:\s+(?:text|body|subject))?\s+"
    r"(?:mentions|contains|refers\s+to|talks\s+about|is\s+about)\s+(?P<phrases>[^.;:\n]+?),?\s+"
    r"(?:then\s+)?(?:(?:route|send|assign|escalate)(?:\s+it)?\s+to\s+(?:the\s+)?(?P<team>[\w-]+)"
    r"|(?:set|use|give)(?:\s+(?:it|the))?\s+priority(?:\s+(?:to|of))?\s+(?P<priority>[\w-]+))",
    re.IGNORECASE,
)
_PHRASE_SEPARATOR = re.compile(r"\s*,\s*(?:or\s+|and\s+)?|\s+or\s+|\s+and\s+", re.IGNORECASE)
_CURRENCY = re.compile(r"(?:[$€£]\s?\d[\d,.]*[kKmM]?|\b\d[\d,.]*\s?(?:usd|eur|gbp|dollars?|euros?)\b)", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+\*?")


# --- words -----------------------------------------------------------------------------------


def singular(word: str) -> str:
    """Plural-insensitive form of a word: quotas → quota, policies → policy, boxes → box."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Lower-case words of ``text``; money amounts become the single word ``currency_amount``."""
    text = _CURRENCY.sub(" currencyamount ", text.lower())
    return ["currency_amount" if word == "currencyamount" else word for word in re.findall(r"[a-z0-9]+", text)]


@dataclasses.dataclass(frozen=True)
class Cue:
    """A phrase of one or more words; ``word*`` matches by prefix, other words ignoring plurals."""

    parts: tuple[str, ...]
    weight: float

    @classmethod
    def parse(cls, phrase: str, weight: float) -> Cue:
        parts = tuple(
            part if part.endswith("*") else singular(part)
            for part in _WORD.findall(phrase.lower().replace("currency_amount", "currencyamount"))
        )
        return cls(tuple(part.replace("currencyamount", "currency_amount") for part in parts), float(weight))


class Text:
    """A ticket's words, indexed by singular form and by prefix, so hundreds of cues match quickly."""

    def __init__(self, text: str) -> None:
        self.words = words(text)
        self.singulars = [singular(word) for word in self.words]
        self._positions: dict[str, list[int]] = {}
        for position, word_singular in enumerate(self.singulars):
            self._positions.setdefault(word_singular, []).append(position)
        # (word, position) in word order: the words starting with a prefix are one contiguous run.
        self._sorted = sorted((word, position) for position, word in enumerate(self.words))
        self._prefix_positions: dict[str, list[int]] = {}

    def _positions_of(self, part: str) -> list[int]:
        if not part.endswith("*"):
            return self._positions.get(part, [])
        found = self._prefix_positions.get(part)
        if found is None:
            prefix = part[:-1]
            found = []
            for word, position in itertools.islice(self._sorted, bisect.bisect_left(self._sorted, (prefix,)), None):
                if not word.startswith(prefix):
                    break
                found.append(position)
            found.sort()
            self._prefix_positions[part] = found
        return found

    def _matches_at(self, part: str, position: int) -> bool:
        if position >= len(self.words):
            return False
        if part.endswith("*"):
            return self.words[position].startswith(part[:-1])
        return self.singulars[position] == part

    def has(self, cue: Cue) -> bool:
        parts = cue.parts
        if not parts:
            return False
        starts = self._positions_of(parts[0])
        if not starts or len(parts) == 1:
            return bool(starts)
        rest = parts[1:]
        return any(
            all(self._matches_at(part, start + offset) for offset, part in enumerate(rest, start=1)) for start in starts
        )


@functools.lru_cache(maxsize=512)
def text_read(text: str) -> Text:
    """The indexed words of ``text``, shared by every cue check on the same ticket (safe to share: its lazy prefix index only ever gains the same entries)."""
    return Text(text)


# --- the lexicon -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Lexicon:
    subject_weight: float
    label_name_weight: float
    team_cues: Mapping[str, tuple[Cue, ...]]
    priority_levels: Mapping[str, int]
    default_priority_level: int
    priority_bands: Mapping[str, tuple[float, tuple[Cue, ...]]]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Lexicon:
        priority = data["priority"]
        return cls(
            subject_weight=float(data.get("subject_weight", 1.0)),
            label_name_weight=float(data.get("label_name_weight", 1.0)),
            team_cues={
                team: tuple(Cue.parse(phrase, weight) for phrase, weight in cues.items())
                for team, cues in data["teams"].items()
            },
            priority_levels={label.lower(): int(level) for label, level in priority["levels"].items()},
            default_priority_level=int(priority.get("default_level", 2)),
            priority_bands={
                band: (
                    float(priority[band]["threshold"]),
                    tuple(Cue.parse(p, w) for p, w in priority[band]["cues"].items()),
                )
                for band in ("critical", "urgent", "low")
            },
        )


@functools.lru_cache(maxsize=4)
def _lexicon_cached(path: str, modified: int, size: int) -> Lexicon:
    return Lexicon.from_data(json.loads(Path(path).read_text(encoding="utf-8")))


def lexicon_load(path: Path | None = None) -> Lexicon:
    """The lexicon as currently saved; an edited file is picked up without restarting."""
    path = path or LEXICON_PATH
    status = path.stat()
    return _lexicon_cached(str(path), status.st_mtime_ns, status.st_size)


# --- reading the prompt -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RoutingRule:
    phrases: tuple[Cue, ...]
    field: str  # "team" or "priority"
    target: str


@dataclasses.dataclass(frozen=True)
class PromptReading:
    """What the model takes from a system prompt: output fields with their labels, and rules."""

    fields: tuple[tuple[str, tuple[str, ...]], ...]
    team_field: str | None
    priority_field: str | None
    rules: tuple[RoutingRule, ...]


def _field_role(key: str, labels: Sequence[str], lexicon: Lexicon) -> str | None:
    lowered = key.lower()
    if lowered in TEAM_KEYS:
        return "team"
    if lowered in PRIORITY_KEYS:
        return "priority"
    if any(label in lexicon.team_cues for label in labels):
        return "team"
    if all(label.lower() in lexicon.priority_levels for label in labels):
        return "priority"
    return None


@functools.lru_cache(maxsize=256)
def prompt_read(system_prompt: str, lexicon: Lexicon) -> PromptReading:
    fields: list[tuple[str, tuple[str, ...]]] = []
    for key, options in _TEMPLATE_FIELD.findall(system_prompt):
        labels = tuple(option.strip() for option in options.split("|") if option.strip())
        if labels and key not in dict(fields):
            fields.append((key, labels))
    if not fields:
        fields = [("team", tuple(lexicon.team_cues)), ("priority", DEFAULT_PRIORITY_LABELS)]
    roles = {key: _field_role(key, labels, lexicon) for key, labels in fields}
    team_field = next((key for key, role in roles.items() if role == "team"), None)
    priority_field = next((key for key, role in roles.items() if role == "priority" and key != team_field), None)
    allowed = dict(fields)

    rules = []
    for match in _RULE.finditer(system_prompt):
        field = "team" if match.group("team") else "priority"
        key = team_field if field == "team" else priority_field
        wanted = (match.group("team") or match.group("priority") or "").lower()
        target = next((label for label in allowed.get(key, ()) if label.lower() == wanted), None) if key else None
        if target is None:
            continue  # a rule naming a label the output template cannot produce is ignored
        phrases = tuple(
            Cue.parse(phrase.strip(" \"'"), 1.0)
            for phrase in _PHRASE_SEPARATOR.split(match.group("phrases"))
            if phrase.strip()
        )
        rules.append(RoutingRule(phrases=phrases, field=field, target=target))
    return PromptReading(tuple(fields), team_field, priority_field, tuple(rules))


# --- classifying ----------------------------------------------------------------------------------


def _split_subject(ticket: str) -> tuple[str, str]:
    first_line, _, rest = ticket.partition("\n")
    if first_line.lower().startswith("subject:"):
        return first_line[len("subject:") :], rest
    return "", ticket


def team_scores(ticket: str, labels: Sequence[str], lexicon: Lexicon) -> dict[str, float]:
    """Each allowed label's evidence: cue weights, boosted when the cue is in the subject line."""
    subject, _ = _split_subject(ticket)
    whole, subject_text = text_read(ticket), text_read(subject)
    scores = {}
    for label in labels:
        cues = list(lexicon.team_cues.get(label, ()))
        cues.append(Cue.parse(label.replace("-", " "), lexicon.label_name_weight))
        score = 0.0
        for cue in cues:
            if subject_text.has(cue):
                score += cue.weight * lexicon.subject_weight
            elif whole.has(cue):
                score += cue.weight
        scores[label] = score
    return scores


def priority_choose(ticket: str, labels: Sequence[str], lexicon: Lexicon) -> str:
    """Urgency band from cue totals, then the allowed label nearest to that band's level."""
    text = text_read(ticket)

    def band_reached(band: str) -> bool:
        threshold, cues = lexicon.priority_bands[band]
        return sum(cue.weight for cue in cues if text.has(cue)) >= threshold

    if band_reached("critical"):
        level = 0
    elif band_reached("urgent"):
        level = 1
    elif band_reached("low"):
        level = 3
    else:
        level = lexicon.default_priority_level

    def label_level(position_and_label: tuple[int, str]) -> int:
        position, label = position_and_label
        return lexicon.priority_levels.get(label.lower(), position)

    ranked = sorted(enumerate(labels), key=lambda pair: (abs(label_level(pair) - level), label_level(pair)))
    return ranked[0][1]


def _ranked(scores: Mapping[str, float], labels: Sequence[str]) -> list[str]:
    """Best first; ties keep the template's order, as a model tends to favour the first listed."""
    return sorted(labels, key=lambda label: (-scores[label], labels.index(label)))


def triage_verdict(
    system_prompt: str, ticket: str, *, noise: float = 0.0, dice: random.Random | None = None
) -> dict[str, str]:
    """The model's answer as a dict in the template's field order."""
    lexicon = lexicon_load()
    reading = prompt_read(system_prompt or "", lexicon)
    dice = dice or random.Random()
    text = text_read(ticket)
    ruled = {}
    for rule in reading.rules:
        if rule.field not in ruled and any(text.has(phrase) for phrase in rule.phrases):
            ruled[rule.field] = rule.target
    verdict = {}
    for key, labels in reading.fields:
        if key == reading.team_field:
            ranking = _ranked(team_scores(ticket, labels, lexicon), labels)
            if "team" in ruled:
                ranking = [ruled["team"]] + [label for label in ranking if label != ruled["team"]]
            pick_second = len(ranking) > 1 and noise > 0 and dice.random() < noise
            verdict[key] = ranking[1] if pick_second else ranking[0]
        elif key == reading.priority_field:
            verdict[key] = ruled.get("priority") or priority_choose(ticket, labels, lexicon)
        else:
            verdict[key] = labels[0]
    return verdict


def triage_reply(system_prompt: str, ticket: str, *, noise: float = 0.0, dice: random.Random | None = None) -> str:
    """Exactly one line of raw JSON, as the tutorial's prompts ask."""
    return json.dumps(triage_verdict(system_prompt, ticket, noise=noise, dice=dice))


def malformed_reply(system_prompt: str, ticket: str, dice: random.Random) -> str:
    """A reply that is not the one JSON line: prose, cut-off JSON, or JSON with chatter after it."""
    verdict = triage_verdict(system_prompt, ticket, dice=dice)
    values = list(verdict.values()) + ["", ""]
    shapes = [
        f"This looks like a {values[0]} issue to me; I would file it as {values[1]}.",
        json.dumps(verdict)[: max(8, len(json.dumps(verdict)) // 2)],
        json.dumps(verdict) + " Let me know if you need anything else!",
    ]
    return dice.choice(shapes)
