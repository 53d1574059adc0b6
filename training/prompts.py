"""The prompt that asks a large model for one synthetic group chat, and how to read the answer.

The seed system got its data by asking Mixtral-8x7B-Instruct for group chats in which
an AI assistant joins only when addressed or when it can fill a factual gap. This module
writes that request with the rules of docs/policy.md spelled out, and draws a different
topic, cast, length, writing style, kind of speaking and hard silent case for each
request so the data set does not collapse into one conversation told many times. It
also reads the answer back (``parse_answer``) into the data format.
``training.generate`` sends the prompts; nothing here touches the network.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from models.policy import POLICY_RULES
from models.turns import BOT_NAME
from training.dataset import validate_conversation

TOPICS = (
    "planning a weekend hiking trip", "a board game night", "a recipe that went wrong",
    "the new season of a TV series", "fantasy football trades", "learning Spanish",
    "moving into a new flat", "a broken bike chain", "a birthday present for a friend",
    "a video game boss fight", "houseplants dying", "a concert next month",
    "studying for a chemistry exam", "a job interview tomorrow", "running a first 10k",
    "a road trip playlist", "coffee brewing methods", "adopting a cat",
    "a Python bug at work", "building a gaming PC", "a Dungeons & Dragons campaign",
    "the weather ruining a barbecue", "a football match last night", "baking sourdough",
    "choosing a laptop", "a history documentary", "a trip to Japan", "a wedding speech",
    "splitting the rent", "a podcast episode about space", "knitting a scarf",
    "a chess tournament", "car trouble on the highway", "a gym routine",
    "a book club pick", "old cartoons from childhood", "a camping gear checklist",
    "a climbing gym session", "vegan cooking", "a museum visit", "learning guitar chords",
    "a group project deadline", "a phone screen cracked", "a movie marathon",
    "birdwatching", "a leaking kitchen tap", "the Olympics", "a city break in Lisbon",
    "a school reunion", "tax forms", "a music festival lineup", "photography tips",
    "a marathon training plan", "a dog that will not stop barking", "astronomy and a meteor shower",
    "a language exchange meetup", "a new anime series", "a pub quiz team",
    "the best pizza in town", "a flight delay", "cryptocurrency hype", "a garden vegetable patch",
    "a Minecraft server", "a karaoke night", "a science fair project", "a volunteer cleanup day",
)

NAMES = (
    # Given names from many places, as people set them on Discord.
    "Maya", "Tom", "Priya", "Lukas", "Aisha", "Kenji", "Sofia", "Mateo", "Olga", "Chen",
    "Fatima", "Liam", "Yuki", "Kwame", "Ingrid", "Diego", "Amara", "Ravi", "Elif", "Noah",
    "Zanele", "Hiroshi", "Camille", "Omar", "Anja", "Tariq", "Leila", "Mikael", "Siobhan", "Jun",
    "Ana", "Bogdan", "Chiara", "Dmitri", "Esme", "Felipe", "Greta", "Hamid", "Isla", "Jonas",
    "Keiko", "Lars", "Mei", "Nikolai", "Oona", "Pablo", "Qing", "Rosa", "Sven", "Tomasz",
    "Uma", "Viktor", "Wanjiru", "Xavier", "Yara", "Zoltan", "Ade", "Bea", "Cyrus", "Dana",
    "Emeka", "Farah", "Giulia", "Hugo", "Imani", "Jakob", "Kai", "Lucía", "Malik", "Nadia",
    "Oskar", "Parisa", "Quentin", "Rania", "Sanjay", "Thandiwe", "Ulla", "Vera", "Wei", "Ximena",
    "Yusuf", "Zeynep", "Aroha", "Björn", "Carmen", "Deepa", "Eitan", "Freya", "Gustavo", "Hana",
    "Ilya", "Jasmin", "Kofi", "Linnea", "Marek", "Nia", "Orla", "Pedro", "Rahel", "Sami",
    # Handles, because half of a Discord server is not called by a given name.
    "xX_gamer_Xx", "pixelpanda", "nightowl42", "jay.dev", "sk8rboi", "moonbeam", "the_real_tom",
    "coffeeaddict", "lil_mango", "quietstorm", "turbo_nerd", "bluefox", "kat_meow", "dr_beats",
    "zer0cool", "sunny.d", "cryptokid", "bookworm99", "frostbyte", "maplesyrup", "rainy_day",
    "noodle", "captain_k", "ghost404", "sleepyhead", "spicy_ramen", "vinyl_vibes", "mr.pickles",
    "lunatic", "honeybadger", "wafflez", "tinkerbell_", "nova", "orbit", "cactus_jack",
    "plantmom", "retro.rick", "tofu_master", "glitch", "starfish", "k1ngsley", "boba_tea",
    "echo", "mossy", "pyro", "lemon.drop", "atlas", "wren", "juju", "breadcrumb",
)

STYLES = {
    "casual": "casual Discord chat: mostly lowercase, short lines, a few typos and abbreviations "
    "(lol, idk, tbh, ngl), an emoji here and there",
    "formal": "tidy and polite: full sentences with capital letters and punctuation, no slang",
    "bursty": "bursty: people send two or three short messages in a row, reply out of order, "
    "and a side thread runs alongside the main one",
    "mixed": "mixed: one person writes long careful messages, the others answer in quick "
    "lowercase bits with emoji and the odd typo",
}

# The hard silent cases of docs/policy.md: moments that look like a cue to speak but are not.
SILENT_CASES = {
    "named question": "someone asks a question aimed at a specific person by name or @handle "
    "(for example '@{other} did you book it?'); only that person answers, the assistant stays "
    "silent",
    "gap already filled": "someone asks the room a factual question and another person answers it "
    "correctly straight away; the assistant stays silent because the gap is already filled",
    "third person": "someone mentions the assistant in the third person without asking it anything "
    "(for example 'the assistant was handy yesterday'); the assistant stays silent",
    "thanks": "the assistant answers a question, then people thank it or react ('thanks!', 'nice', "
    "a thumbs-up emoji) without asking anything new; the assistant stays silent after the thanks",
    "other sense": "the word 'assistant' is used in another sense (an assistant manager, a "
    "teaching assistant, a voice assistant on a phone); the assistant stays silent",
    "rhetorical": "someone asks a rhetorical question ('why does this always happen to me?', "
    "'who even eats pineapple on pizza?'); the assistant stays silent",
    "other bot": "another bot posts in the channel (give it a bot-like name such as 'MusicBot' or "
    "'RemindMe', writing like a bot) and people react to it; the assistant stays silent",
}

SPEAK_KINDS = {
    "addressed": "at least once, someone addresses the assistant directly ('@assistant ...', "
    "'assistant, ...', 'hey bot ...') with a question or a request, and it answers",
    "knowledge gap": "at least once, someone asks the room a factual question, or says they forgot "
    "a fact (a name, title, date, number, definition, unit, spelling), nobody answers it, and the "
    "assistant fills the gap",
    "both": "the assistant speaks once because it is addressed directly and once to fill a factual "
    "gap nobody else filled",
    "none": "nobody addresses the assistant and no factual gap is left open: it never speaks in "
    "this conversation",
}

@dataclass(frozen=True)
class ConversationSpec:
    """What one request asks for. Drawn at random; the prompt is a pure function of it."""

    topic: str
    names: tuple[str, ...]
    message_count: int
    style: str
    speak_kind: str
    silent_case: str


def draw_spec(rng: random.Random) -> ConversationSpec:
    """Pick the variety for one request: 2-5 people, 6-20 messages, one of each case."""
    # About one conversation in six where it never speaks, as in real channels.
    speak_kind = rng.choices(list(SPEAK_KINDS), weights=(4, 4, 2, 2))[0]
    # "Thanks after an answer" needs an answer to thank.
    silent_cases = [c for c in SILENT_CASES if not (speak_kind == "none" and c == "thanks")]
    return ConversationSpec(
        topic=rng.choice(TOPICS),
        names=tuple(rng.sample(NAMES, rng.randint(2, 5))),
        message_count=rng.randint(6, 20),
        style=rng.choice(list(STYLES)),
        speak_kind=speak_kind,
        silent_case=rng.choice(silent_cases),
    )


def build_prompt(spec: ConversationSpec) -> str:
    """The request text for one conversation, with the rules and the output format."""
    people = ", ".join(spec.names)
    other = spec.names[1] if len(spec.names) > 1 else spec.names[0]
    example = [
        {"role": "user", "name": spec.names[0], "content": "..."},
        {"role": "user", "name": other, "content": "..."},
        {"role": "assistant", "content": "..."},
        {"role": "user", "name": spec.names[0], "content": "..."},
    ]
    return f"""Write a realistic, synthetic group chat from a Discord server, between \
{len(spec.names)} people ({people}) and an AI assistant that joins only when the rules below \
say so.

{POLICY_RULES}

This conversation:
- Topic: {spec.topic}. Side remarks and small tangents are fine.
- About {spec.message_count} messages from the people in total (plus the assistant's).
- Writing style: {STYLES[spec.style]}.
- Speaking: {SPEAK_KINDS[spec.speak_kind]}.
- Include this hard case: {SILENT_CASES[spec.silent_case].format(other=other)}.
- Everywhere else the assistant stays silent, exactly as the rules say.

Output format: only a JSON array, nothing before or after it. Each person's message is \
{{"role": "user", "name": "<one of: {people}>", "content": "<text>"}}. Each time the assistant \
speaks, put {{"role": "assistant", "content": "<its words>"}} right after the message it \
answers. When it stays silent, write nothing for it. Never put two assistant messages in a \
row, never start with the assistant, and never write its silence as a message. For example:
{json.dumps(example, ensure_ascii=False)}"""


def prompt_messages(spec: ConversationSpec) -> list[dict]:
    """Chat messages for the request: a single user turn.

    No system message, because Mixtral-Instruct's chat template (the seed's generator)
    rejects the system role.
    """
    return [{"role": "user", "content": build_prompt(spec)}]


_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.DOTALL)


def extract_json_array(answer: str) -> list[dict]:
    """The first JSON array of objects in a model's answer.

    Models wrap the JSON in ```json fences or in prose ("Here is the conversation:"),
    so fenced blocks are tried first, then every ``[`` in the whole text.
    """
    decoder = json.JSONDecoder()
    for candidate in [m.group(1) for m in _FENCE.finditer(answer)] + [answer]:
        for bracket in re.finditer(r"\[", candidate):
            try:
                value, _ = decoder.raw_decode(candidate, bracket.start())
            except json.JSONDecodeError:
                continue
            if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
                return value
    raise ValueError("no JSON array of messages in the answer")


def _clean(message: dict) -> dict:
    # Keep only the keys of the data format, so stray fields the model adds do not leak in.
    keys = ("role", "name", "content") if message.get("role") == "user" else ("role", "content")
    return {k: message[k].strip() if isinstance(message[k], str) else message[k]
            for k in keys if k in message}


def parse_answer(answer: str) -> list[dict]:
    """A model's answer -> a conversation in the data format, or ValueError with the reason."""
    conversation = [_clean(m) for m in extract_json_array(answer)]
    validate_conversation(conversation)
    for number, message in enumerate(conversation, 1):
        # A person signed "assistant" would teach the model that it said something it did not.
        if message["role"] == "user" and message["name"].lower() == BOT_NAME:
            raise ValueError(f"message {number}: a user message signed {message['name']!r}")
    return conversation
