"""Text a submission controls (exception messages, printed output), made safe to print, store
and show: no lone surrogates (they cannot be encoded), no NULs or other control characters
(only tab and newline survive), no bidirectional overrides or line separators, and a bounded length."""
import re

# Control characters except tab and newline, the C1 block, and every surrogate code point: in a
# str, a surrogate is always a lone one (JSON's paired escapes decode to a single character).
# Also the bidirectional marks, embeddings, overrides and isolates (text shown to the student
# and the instructor would read in another order than it is stored, the "Trojan Source" trick)
# and U+2028/U+2029, line breaks to JavaScript and some viewers but not to Python.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff"
                     "\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def clean(text, limit=None):
    """`text` with every unsafe character replaced by U+FFFD and cut to `limit` characters."""
    text = _UNSAFE.sub("\ufffd", str(text).replace("\r\n", "\n"))
    if limit is not None and len(text) > limit:
        cut = len(text) - limit
        text = text[:limit] + f"... [{cut} more characters cut]"
    return text


def say(message, stream=None):
    """Print `message` so that no character can make printing fail, whatever the stream's
    encoding: what it cannot encode is written as a backslash escape."""
    import sys
    stream = stream or sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    stream.write(str(message).encode(encoding, "backslashreplace").decode(encoding, "replace") + "\n")
    stream.flush()
