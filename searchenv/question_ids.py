"""Opaque question ids: what an agent sees of a question's id during an episode.

Readable ids give answers away: the factbook's ``internet_code/eg`` is answered by "eg", and a
bridge question's id names its first-hop entity. So ``info["question_id"]`` holds
:func:`opaque_question_id` of the readable id while an episode runs; the readable id comes back
in the end-of-episode ``info`` (``readable_question_id``) and in the ``EpisodeRecord``, and
evaluation code, which picks questions by readable id, keeps using those.

The opaque id is a sha256 of the readable one: stable across processes and machines (a GRPO
group started from one member's reset ``info`` asks the same question anywhere), and it carries
nothing an agent can read an answer from. It is a hash, not encryption: someone who can list
candidate readable ids can hash them and match.
"""

from __future__ import annotations

import functools
import hashlib

OPAQUE_PREFIX = "q-"
OPAQUE_HEX_CHARS = 12


# Every env construction maps its split's ids (4,633 factbook train questions: ~15 ms of hashing).
@functools.lru_cache(maxsize=1 << 20)
def opaque_question_id(readable_id: str) -> str:
    """The id an agent sees for the question whose readable id is ``readable_id``.

    Args:
        readable_id: The task's question id, e.g. ``"internet_code/eg"``.

    Returns:
        ``"q-"`` and the first 12 hex digits of the id's sha256.

    >>> opaque_question_id("internet_code/eg")
    'q-7dfe39253c65'
    >>> opaque_question_id("internet_code/eg") == opaque_question_id("internet_code/eg")
    True
    """
    # surrogatepass: a question id is any str the loader accepted, even one it could not encode.
    digest = hashlib.sha256(readable_id.encode("utf-8", "surrogatepass")).hexdigest()
    return OPAQUE_PREFIX + digest[:OPAQUE_HEX_CHARS]
