"""A synthetic Spanish extractive-QA dataset, written from templates, for the demo and the tests.

Each paragraph tells one *event* (someone did something to a work, somewhere, in some year,
before a crowd) and, before or after it, a *distractor* sentence with another person, city,
year, count and work in other roles (someone visited, remembered, commented). So every answer
has a distractor of its own type in the same context, and questions of five types in varied
phrasing ask about the event:

    quién    ¿Quién inauguró el teatro municipal en Cádiz?            -> the person
    cuándo   ¿En qué año inauguró Rosa Molina el teatro municipal?    -> the year
    dónde    ¿En qué ciudad inauguró Rosa Molina el teatro municipal? -> the city
    cuántos  ¿Cuántos vecinos asistieron cuando ...?                  -> the count
    qué      ¿Qué inauguró Rosa Molina en 1843?                       -> the work

Answering means finding the sentence of the event the question names (its verb, work or person)
and the entity of the asked type in it. (An earlier version told two events of the same kind and
asked about either; a model small enough to train in the demo's minutes does not learn to tell
them apart, so the distractors now play other roles.) Answers are recorded while the context is
rendered, so each one is the exact substring at its ``answer_start``.

Train and dev never share a context nor an event: an event (person, verb, work) belongs to dev
when a stable hash of it falls in the dev share, so the split does not depend on the sizes
asked for. Everything is drawn from ``random.Random`` seeded per split: the same seed gives the
same files.
"""

from __future__ import annotations

import random
import string
import zlib
from dataclasses import dataclass

from kdtool.errors import InputError

QUESTION_TYPES = ("quién", "cuándo", "dónde", "cuántos", "qué")

FIRST_NAMES = [
    "María", "Juan", "Ana", "Luis", "Carmen", "José", "Lucía", "Pedro", "Rosa", "Tomás", "Elena", "Andrés", "Isabel",
    "Miguel", "Teresa", "Rafael", "Pilar", "Diego", "Julia", "Álvaro", "Inés", "Fernando", "Marta", "Gonzalo", "Beatriz",
    "Ramón", "Clara", "Sergio", "Lorena", "Ignacio", "Nuria", "Esteban", "Sofía", "Víctor", "Adela", "Jaime", "Olga",
    "Bruno", "Irene", "Hugo",
]
SURNAMES = [
    "López", "Pérez", "Gómez", "Fernández", "Ruiz", "Martín", "Díaz", "Sánchez", "Molina", "Ibarra", "Navarro", "Ortega",
    "Castillo", "Herrera", "Vega", "Romero", "Morales", "Delgado", "Campos", "Rubio", "Serrano", "Blanco", "Cabrera",
    "Medina", "Aguilar", "Peña", "Cortés", "Santana", "Iglesias", "Prieto", "Lozano", "Vidal", "Esteve", "Mendoza",
    "Quintana", "Salazar", "Arroyo", "Fuentes", "Bravo", "Zamora",
]
CITIES = [
    "Sevilla", "Valencia", "Bilbao", "Zaragoza", "Málaga", "Granada", "Toledo", "Salamanca", "Cádiz", "Córdoba",
    "Oviedo", "Santander", "Burgos", "León", "Segovia", "Cuenca", "Murcia", "Almería", "Huesca", "Lugo", "Vigo",
    "Girona", "Tarragona", "Badajoz", "Cáceres", "Soria", "Teruel", "Jaén", "Pamplona", "Logroño", "Lima", "Quito",
    "Bogotá", "Montevideo", "Rosario", "Cusco", "Valparaíso", "Guadalajara", "Puebla", "Mérida",
]
# verb (3rd person preterite) -> works it goes with; the category keeps the sentences sensible
ACTIONS = {
    "construyó": ["el puente de hierro", "un faro de piedra", "la estación del norte", "un acueducto nuevo",
                  "el mercado central", "una torre de vigía"],
    "inauguró": ["el teatro municipal", "la biblioteca pública", "un hospital de campaña", "el museo de ciencias",
                 "la primera línea de tranvía", "un observatorio astronómico"],
    "fundó": ["la academia de música", "una escuela de náutica", "el club de ajedrez", "un periódico local",
              "la sociedad de amigos del país", "una imprenta"],
    "restauró": ["la catedral vieja", "el claustro gótico", "un molino de viento", "las murallas árabes",
                 "el órgano de la colegiata", "un retablo barroco"],
    "escribió": ["un tratado de botánica", "una ópera en tres actos", "una crónica de viajes", "un manual de cocina",
                 "una gramática del quechua", "un poema épico"],
    "descubrió": ["una mina de plata", "unas ruinas romanas", "un manantial termal", "una cueva con pinturas",
                  "un cometa brillante", "un yacimiento de fósiles"],
    "pintó": ["un retrato del alcalde", "un mural sobre la cosecha", "una vista del puerto", "un tríptico religioso",
              "un paisaje nevado", "una serie de bodegones"],
}
AUDIENCES = ["vecinos", "estudiantes", "invitados", "espectadores", "curiosos", "fieles", "trabajadores", "periodistas"]

# Sentence templates for one event. Every slot is filled from the event; the rendering records
# where each slot landed, which is how answers get exact offsets.
EVENT_TEMPLATES = [
    "En {year}, {person} {verb} {work} en {city} ante {count} {audience}.",
    "{person} {verb} {work} en {city} en el año {year}; asistieron {count} {audience}.",
    "Fue en {city} donde {person} {verb} {work}, en {year}, con {count} {audience} presentes.",
    "El año {year} quedó marcado porque {person} {verb} {work} en la ciudad de {city} frente a {count} {audience}.",
    "Según las crónicas, {person} {verb} {work} en {city} durante {year}, y {count} {audience} acudieron a verlo.",
    "{count} {audience} vieron cómo {person} {verb} {work} en {city} en {year}.",
    "En la ciudad de {city}, {person} {verb} {work} en {year} a la vista de {count} {audience}.",
]
# The distractor sentence: the same entity types, other roles, verbs that are never asked about.
DISTRACTOR_TEMPLATES = [
    "Años antes, en {year}, {person} había visitado {city} con {count} {audience} para ver {work}.",
    "Al saberlo en {city}, {person} lo comentó en {year} ante {count} {audience}, comparándolo con {work}.",
    "En {year}, {person} recordó en {city}, ante {count} {audience}, que nada igualaba a {work}.",
    "Desde {city}, {person} contó en {year} a {count} {audience} que prefería {work}.",
    "Tiempo después, {person} criticó en {city} {work} ante {count} {audience}, en {year}.",
]
QUESTION_TEMPLATES = {
    "quién": ["¿Quién {verb} {work}?", "¿Quién {verb} {work} en {city}?", "¿Qué persona {verb} {work} en {year}?",
              "¿Cómo se llama la persona que {verb} {work}?"],
    "cuándo": ["¿Cuándo {verb} {person} {work}?", "¿En qué año {verb} {person} {work}?",
               "¿En qué año {verb} {person} {work} en {city}?", "¿Cuál fue el año en que {person} {verb} {work}?"],
    "dónde": ["¿Dónde {verb} {person} {work}?", "¿En qué ciudad {verb} {person} {work}?",
              "¿En qué lugar {verb} {person} {work} en {year}?", "¿Cuál es la ciudad donde {person} {verb} {work}?"],
    "cuántos": ["¿Cuántos {audience} asistieron cuando {person} {verb} {work}?",
                "¿Cuántos {audience} estuvieron presentes cuando {person} {verb} {work}?",
                "¿Cuántos {audience} vieron cómo {person} {verb} {work} en {city}?",
                "¿Ante cuántos {audience} {verb} {person} {work}?"],
    "qué": ["¿Qué {verb} {person}?", "¿Qué {verb} {person} en {city}?", "¿Qué {verb} {person} en {year}?",
            "¿Qué {verb} {person} ante {count} {audience}?"],
}
ID_SUFFIX = {"quién": "quien", "cuándo": "cuando", "dónde": "donde", "cuántos": "cuantos", "qué": "que"}
ANSWER_SLOT = {"quién": "person", "cuándo": "year", "dónde": "city", "cuántos": "count", "qué": "work"}


@dataclass(frozen=True)
class SyntheticConfig:
    train_paragraphs: int = 600  # five questions each
    dev_paragraphs: int = 100
    seed: int = 0
    dev_share: float = 0.2  # share of the (person, verb, work) event space reserved for dev

    def __post_init__(self):
        if self.train_paragraphs < 1 or self.dev_paragraphs < 1:
            raise InputError("the synthetic dataset needs at least one paragraph in train and in dev")
        if not 0.0 < self.dev_share < 1.0:
            raise InputError(f"dev share must be between 0 and 1, got {self.dev_share}")


@dataclass(frozen=True)
class Event:
    person: str
    verb: str
    work: str
    city: str
    year: str
    count: str
    audience: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies an event across splits."""
        return self.person, self.verb, self.work

    def slots(self) -> dict[str, str]:
        return dict(person=self.person, verb=self.verb, work=self.work, city=self.city, year=self.year,
                    count=self.count, audience=self.audience)


def event_split(event: Event, dev_share: float) -> str:
    """``"dev"`` or ``"train"``: a stable hash of the event key, independent of seed and sizes."""
    h = zlib.crc32("|".join(event.key).encode("utf-8")) / 2**32
    return "dev" if h < dev_share else "train"


def render(template: str, slots: dict[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
    """Fill ``template`` and return the text with the (start, end) of every slot it used."""
    out, spans = [], {}
    pos = 0
    for literal, field_name, _, _ in string.Formatter().parse(template):
        out.append(literal)
        pos += len(literal)
        if field_name is not None:
            value = slots[field_name]
            spans[field_name] = (pos, pos + len(value))
            out.append(value)
            pos += len(value)
    return "".join(out), spans


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _draw(rng: random.Random) -> Event:
    verb = rng.choice(sorted(ACTIONS))
    return Event(f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}", verb, rng.choice(ACTIONS[verb]),
                 rng.choice(CITIES), str(rng.randint(1500, 2020)), str(rng.randint(12, 989)), rng.choice(AUDIENCES))


def _draw_event(rng: random.Random, split: str, dev_share: float, used: set) -> tuple[Event, Event]:
    """The event (of ``split``, its key not used before) and a distractor differing in every entity."""
    while True:
        event = _draw(rng)
        if event_split(event, dev_share) == split and event.key not in used:
            break
    used.add(event.key)
    while True:
        other = _draw(rng)
        if all(getattr(other, f) != getattr(event, f) for f in ("person", "work", "city", "year", "count")) \
                and other.person.split()[0] != event.person.split()[0]:
            return event, other


def _paragraph(rng: random.Random, event: Event, other: Event) -> tuple[str, dict]:
    """The context and the absolute spans of the event's slots."""
    event_text, spans = render(rng.choice(EVENT_TEMPLATES), event.slots())
    distractor = render(rng.choice(DISTRACTOR_TEMPLATES), other.slots())[0]
    event_text = _capitalise(event_text)
    if rng.random() < 0.5:  # the distractor before or after the event: position tells nothing
        parts, shift = [event_text, distractor], 0
    else:
        parts, shift = [distractor, event_text], len(distractor) + 1
    return " ".join(parts), {k: (a + shift, b + shift) for k, (a, b) in spans.items()}


def _questions(rng: random.Random, event: Event, spans: dict, context: str, prefix: str) -> list[dict]:
    qas = []
    for qtype in QUESTION_TYPES:
        question = _capitalise_question(render(rng.choice(QUESTION_TEMPLATES[qtype]), event.slots())[0])
        slot = ANSWER_SLOT[qtype]
        start, end = spans[slot]
        answer = context[start:end]
        if answer != getattr(event, slot):  # the rendering bookkeeping is the contract: check it
            raise AssertionError(f"synthetic answer {answer!r} is not {getattr(event, slot)!r}")
        qas.append({"id": f"{prefix}-{ID_SUFFIX[qtype]}", "question": question,
                    "answers": [{"text": answer, "answer_start": start}]})
    return qas


def _capitalise_question(q: str) -> str:
    return "¿" + _capitalise(q[1:]) if q.startswith("¿") else _capitalise(q)


def _split(cfg: SyntheticConfig, split: str, n_paragraphs: int, per_article: int = 5) -> dict:
    rng = random.Random(f"kdtool-synthetic-{cfg.seed}-{split}")
    used: set = set()
    seen_contexts: set[str] = set()
    data, paragraphs = [], []
    k = 0
    while k < n_paragraphs:
        event, other = _draw_event(rng, split, cfg.dev_share, used)
        context, spans = _paragraph(rng, event, other)
        if context in seen_contexts:
            continue
        seen_contexts.add(context)
        paragraphs.append({"context": context, "qas": _questions(rng, event, spans, context, f"{split}-{k:05d}")})
        k += 1
        if len(paragraphs) == per_article or k == n_paragraphs:
            data.append({"title": f"Crónica sintética {split} {len(data) + 1}", "paragraphs": paragraphs})
            paragraphs = []
    return {"version": "1.1", "data": data}


def generate(config: SyntheticConfig = SyntheticConfig()) -> tuple[dict, dict]:
    """The (train, dev) SQuAD v1.1 JSON objects for ``config``."""
    return _split(config, "train", config.train_paragraphs), _split(config, "dev", config.dev_paragraphs)
