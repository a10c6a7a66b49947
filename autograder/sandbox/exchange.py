"""One request to the child and its reply, with the child's callbacks in between.

A thread does all the pipe I/O (a child that stops reading or writing can then never
block the grader past the request's deadline); the caller's thread waits on a queue for
either the reply or a callback, answers callbacks with its handler, and gives up at the
deadline. Every outcome the child causes becomes a Reply; only a failing handler (a
grader bug) raises.
"""
import queue
import threading
import time
from dataclasses import dataclass

from .. import wire
from .reply import CallbackError

MAX_CALLBACKS = 100_000                  # per request; past it the reply is a PROTOCOL error


@dataclass
class Callback:
    name: str
    params: dict
    arrays: dict


class Timeout(Exception):
    pass


def run(requests, replies, header, arrays, seconds, on_callback, answers):
    """-> (header, arrays) of the child's reply, or the Exception that ended the exchange
    (EOFError: the child is gone; WireError: it sent garbage). Raises Timeout past `seconds`,
    and whatever on_callback raises but CallbackError. `answers` is the queue the thread
    reports on (the monitor may put an EOFError there when the worker dies)."""
    callback_answers = queue.Queue()
    deadline = time.monotonic() + seconds
    thread = threading.Thread(target=_talk, args=(requests, replies, header, arrays, answers, callback_answers),
                              daemon=True, name="sandbox-exchange")
    thread.start()
    try:
        while True:
            try:
                outcome = answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise Timeout() from None
            if not isinstance(outcome, Callback):
                return outcome
            callback_answers.put(_answer(outcome, on_callback))
    finally:
        callback_answers.put(None)           # the thread may wait for an answer: end it


def _answer(callback, on_callback):
    """-> (header, arrays) to send back. Exceptions other than CallbackError propagate."""
    if on_callback is None:
        return {"status": "error", "message": "no callbacks are served for this request"}, None
    try:
        info, arrays = on_callback(callback.name, callback.params, callback.arrays)
    except CallbackError as error:
        return {"status": "error", "message": str(error)}, None
    return {"status": "ok", "info": info or {}}, arrays or {}


def _talk(requests, replies, header, arrays, answers, callback_answers):
    try:
        wire.write_message(requests, header, arrays)
    except OSError:
        answers.put(EOFError("the child closed its request channel"))
        return
    try:
        for served in range(MAX_CALLBACKS + 1):
            header, arrays = wire.read_message(replies)
            if "callback" not in header:
                answers.put((header, arrays))
                return
            if served == MAX_CALLBACKS:
                break
            name, params = header["callback"], header.get("params", {})
            if not isinstance(name, str) or not isinstance(params, dict):
                raise wire.WireError("a callback needs a string name and a params object")
            answers.put(Callback(name, params, arrays))
            answer = callback_answers.get()
            if answer is None:               # the request ended meanwhile
                return
            wire.write_message(requests, *answer)
        answers.put(wire.WireError(f"more than {MAX_CALLBACKS} callbacks in one request"))
    except OSError:
        answers.put(EOFError("the child closed a channel"))
    except Exception as error:  # noqa: BLE001 - EOFError, WireError: all end the child
        answers.put(error)
