"""One line of an error, for messages that quote another library's error inside their own.

Below every layer (the standard library only): ``train`` quotes Orbax and
``jax.distributed`` errors with it, ``app`` a model's shape error.
"""

from __future__ import annotations

#: How much of a quoted error a one-line message keeps.
LIMIT = 300


def first_line(err: BaseException, limit: int = LIMIT) -> str:
    """The first non-empty line of ``err``'s message, cut at ``limit`` characters (its
    type's name when the message is empty).

    >>> first_line(ValueError("shapes differ\\n  details..."))
    'shapes differ'
    >>> first_line(KeyError())
    'KeyError'
    """
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
