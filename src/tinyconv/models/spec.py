"""Models written in the tutorial's pattern notation, parsed and built.

The tutorial draws every CNN as ``INPUT -> [[CONV]*N -> POOL?]*M -> [FC]*K``.
A spec is that notation made exact, for example::

    INPUT(1,28,28) -> [[CONV(32,3,pad=1)]*2 -> MAXPOOL(2)]*2 -> [FC(256)]*1 -> FC(10)

Grammar (spaces and line breaks anywhere between tokens; layer, argument
and activation names in any case)::

    spec     := element ( "->" item )+          the first element is INPUT
    chain    := item ( "->" item )*
    item     := element [ "?" ]                 "?" only after a pooling layer
              | "[" chain "]" [ "*" count ]      the chain repeated count times
    element  := NAME [ "(" [ arg ( "," arg )* ] ")" ]
    arg      := value | NAME "=" value          positional args come first
    value    := NUMBER | NAME

Layers (defaults after ``=``; positional arguments in this order)::

    INPUT(channels, height, width, act=relu)    the image shape; act sets the
                                                activation of every CONV and FC
    CONV(filters, kernel, stride=1, pad=0, act=)    Conv2d + its activation
    MAXPOOL(kernel=2, stride=kernel, pad=0)     POOL is another name for it
    AVGPOOL(kernel=2, stride=kernel, pad=0)     mean pooling
    FC(units, act=)                             Linear + its activation
    BN                                          BatchNorm2d on maps, 1d on vectors
    DROPOUT(p=0.5)                              inverted dropout
    FLATTEN                                     maps to vectors; implied before
                                                the first FC that meets maps

Activations are ``relu``, ``sigmoid``, ``tanh`` and ``none``. A CONV or FC
without ``act=`` takes INPUT's (ReLU unless INPUT says otherwise), except the
*last* FC of the model, which has none: it produces the logits that the
cross-entropy loss takes. An explicit ``act=`` is always obeyed. The
activation follows its layer directly, so ``CONV(8,3) -> BN`` is
conv, ReLU, batch normalisation.

A model may have at most :data:`MAX_LAYERS` layers after INPUT, repetitions
written out, and at most :data:`MAX_PARAMETERS` parameters; a map or vector
may hold at most :data:`MAX_VALUES` numbers per image. These bounds are
checked from the text and the shapes before anything is allocated, so a
mistyped count fails at once instead of filling the memory.

``?`` makes a pooling layer optional: it is applied only where its window
fits the map that reaches it (kernel no larger than the padded height and
width) and skipped where the map has become too small. So
``INPUT(1,28,28) -> [CONV(8,3,pad=1) -> MAXPOOL(2)?]*6 -> FC(10)`` pools four
times (28 -> 14 -> 7 -> 3 -> 1) and skips the last two pools on the 1x1 map. Without
``?`` a layer that does not fit is an error.

Weights are initialised by the rule that suits the activation after them
(:mod:`tinyconv.nn.init`): He for ReLU, Xavier for sigmoid, tanh and none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..checks import conv_output_size, kernel_fits, pool_padding_fits
from ..checks import as_generator
from ..nn.layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear,
                     MaxPool2d, ReLU, Sequential, Sigmoid, Tanh)

__all__ = ["SpecError", "Element", "Repeat", "Spec", "parse", "format_spec", "build",
           "input_shape", "ACTIVATIONS", "MAX_LAYERS", "MAX_PARAMETERS", "MAX_VALUES"]

#: The most layers a spec may describe, repetitions written out.
MAX_LAYERS = 1000
#: The deepest brackets may nest (the parser recurses once per level).
MAX_NESTING = 50
#: The most parameters a built model may have (400 MB of float32).
MAX_PARAMETERS = 100_000_000
#: The most numbers one image's input, map or vector may hold (400 MB of float32).
MAX_VALUES = 100_000_000

#: Activation name -> (layer class or None, init rule).
ACTIVATIONS = {
    "relu": (ReLU, "he"),
    "sigmoid": (Sigmoid, "xavier"),
    "tanh": (Tanh, "xavier"),
    "none": (None, "xavier"),
}

_REQUIRED = object()

# Layer name -> its arguments in positional order: (name, kind of value, default).
# Kinds: "count" an int >= 1, "size" an int >= 0, "act" an activation name,
# "prob" a number in [0, 1). A pool's stride default None means "the kernel".
_SIGNATURES = {
    "INPUT": (("channels", "count", _REQUIRED), ("height", "count", _REQUIRED),
              ("width", "count", _REQUIRED), ("act", "act", "relu")),
    "CONV": (("filters", "count", _REQUIRED), ("kernel", "count", _REQUIRED),
             ("stride", "count", 1), ("pad", "size", 0), ("act", "act", None)),
    "MAXPOOL": (("kernel", "count", 2), ("stride", "count", None), ("pad", "size", 0)),
    "AVGPOOL": (("kernel", "count", 2), ("stride", "count", None), ("pad", "size", 0)),
    "FC": (("units", "count", _REQUIRED), ("act", "act", None)),
    "BN": (),
    "DROPOUT": (("p", "prob", 0.5),),
    "FLATTEN": (),
}
_ALIASES = {"POOL": "MAXPOOL"}
_POOLS = ("MAXPOOL", "AVGPOOL")


class SpecError(ValueError):
    """A spec that cannot be parsed or built, with the place that is wrong.

    ``str(error)`` is the message, the position (1-based column, and line
    when the text has several), then the line with a caret under that column::

        expected ')' or ',' at column 14, got '->'
          INPUT(1,28,28 -> FC(10)
                       ^
    """

    def __init__(self, message: str, text: str, offset: int):
        self.message = message
        self.text = text
        self.offset = offset
        line_start = text.rfind("\n", 0, offset) + 1
        line_end = text.find("\n", offset)
        self.line = text.count("\n", 0, offset) + 1
        self.column = offset - line_start + 1
        where = f"column {self.column}"
        if "\n" in text:
            where = f"line {self.line}, {where}"
        source = text[line_start:len(text) if line_end < 0 else line_end]
        super().__init__(f"{message} at {where}\n  {source}\n  {' ' * (self.column - 1)}^")


@dataclass(frozen=True)
class Element:
    """One layer of a spec: ``kind`` (``"CONV"``...) and every argument.

    ``args`` holds (name, value) for each argument of the kind, in positional
    order, defaults filled in; ``act`` is None where the spec gave none (its
    meaning then depends on the position, see the module's docstring).
    ``optional`` is the ``?`` of a pooling layer. ``offset`` (0-based, not
    compared) is where the element starts in the text it came from.
    """

    kind: str
    args: tuple = ()
    optional: bool = False
    offset: int = field(default=0, compare=False)

    def __getitem__(self, name: str):
        return dict(self.args)[name]


@dataclass(frozen=True)
class Repeat:
    """``[ body ]*times``: the items of ``body`` repeated ``times`` times."""

    body: tuple
    times: int


@dataclass(frozen=True)
class Spec:
    """A parsed spec: the INPUT element, the items after it, and the text."""

    input: Element
    body: tuple
    text: str = field(default="", compare=False)

    def elements(self) -> list[Element]:
        """The layers after INPUT in order, repetitions written out."""
        return _expand(self.body)


def _count(items) -> int:
    """How many layers ``items`` hold, repetitions written out, without writing them out."""
    return sum(_count(item.body) * item.times if isinstance(item, Repeat) else 1
               for item in items)


def _expand(items) -> list[Element]:
    out = []
    for item in items:
        if isinstance(item, Repeat):
            out.extend(_expand(item.body) * item.times)
        else:
            out.append(item)
    return out


# ----------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<arrow>->)
  | (?P<number>\d+(?:\.\d*)?|\.\d+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[()\[\],=*?])
)""", re.VERBOSE)


@dataclass(frozen=True)
class _Token:
    kind: str    # "arrow", "number", "name", "punct" or "end"
    text: str
    offset: int

    def describe(self) -> str:
        return "the end of the spec" if self.kind == "end" else repr(self.text)


def _tokenize(text: str) -> list[_Token]:
    tokens, offset = [], 0
    while True:
        match = _TOKEN.match(text, offset)
        if match is None or match.lastgroup is None:
            rest = len(text) - len(text[offset:].lstrip())
            if rest == len(text):
                tokens.append(_Token("end", "", rest))
                return tokens
            raise SpecError(f"unexpected character {text[rest]!r}", text, rest)
        kind = match.lastgroup
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        offset = match.end()


class _Parser:
    """Recursive descent over the tokens, one method per grammar rule."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def error(self, message: str, token: _Token | None = None) -> SpecError:
        return SpecError(message, self.text, (token or self.token).offset)

    def expected(self, what: str) -> SpecError:
        return self.error(f"expected {what}, got {self.token.describe()}")

    def take(self, text: str) -> bool:
        """Consume the punctuation or arrow ``text`` if it comes next."""
        if self.token.kind in ("punct", "arrow") and self.token.text == text:
            self.index += 1
            return True
        return False

    def spec(self) -> Spec:
        first = self.token
        if not (first.kind == "name" and first.text.upper() == "INPUT"):
            raise self.expected("INPUT(channels, height, width)")
        head = self.element()
        if not self.take("->"):
            raise self.expected("'->' and the first layer")
        body = self.chain()
        if self.token.kind != "end":
            raise self.expected("'->' or the end of the spec")
        return Spec(head, body, self.text)

    def chain(self) -> tuple:
        items = [self.item()]
        while self.take("->"):
            start = self.token
            items.append(self.item())
            if _count(items) > MAX_LAYERS:
                raise self.error(f"{_count(items)} layers up to here: a model may have at "
                                 f"most {MAX_LAYERS} layers", start)
        return tuple(items)

    def item(self):
        start = self.token
        if self.take("["):
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise self.error(f"brackets nested more than {MAX_NESTING} deep", start)
            body = self.chain()
            if not self.take("]"):
                raise self.expected("'->' or ']'")
            self.depth -= 1
            times = 1
            if self.take("*"):
                count_token = self.token
                times = self.number("count", "the repeat count after '*'")
                if _count(body) * times > MAX_LAYERS:
                    layers = f" ({times} x {_count(body)} layers)" if _count(body) > 1 else ""
                    raise self.error(f"repeat count {times} is too large{layers}: a model "
                                     f"may have at most {MAX_LAYERS} layers", count_token)
            return Repeat(body, times)
        element = self.element()
        if element.kind == "INPUT":
            raise self.error("INPUT may only come first", start)
        if self.token.kind == "punct" and self.token.text == "?":
            if element.kind not in _POOLS:
                raise self.error(f"'?' (optional) applies to pooling only, not {element.kind}")
            self.index += 1
            element = Element(element.kind, element.args, True, element.offset)
        return element

    def element(self) -> Element:
        start = self.token
        if start.kind != "name":
            raise self.expected("a layer (" + ", ".join(_SIGNATURES) + ") or '['")
        kind = _ALIASES.get(start.text.upper(), start.text.upper())
        if kind not in _SIGNATURES:
            raise self.error(f"unknown layer {start.text!r}; expected one of "
                             + ", ".join(_SIGNATURES))
        self.index += 1
        signature = _SIGNATURES[kind]
        values = {}
        if self.take("("):
            values = self.arguments(kind, signature)
        args = []
        for name, _, default in signature:
            if name in values:
                args.append((name, values[name]))
            elif default is _REQUIRED:
                raise self.error(f"{kind} needs its argument {name!r}: "
                                 f"{kind}({', '.join(n for n, _, _ in signature)})", start)
            else:
                args.append((name, default))
        if kind in _POOLS and dict(args)["stride"] is None:
            args[1] = ("stride", dict(args)["kernel"])
        return Element(kind, tuple(args), False, start.offset)

    def arguments(self, kind: str, signature) -> dict:
        """Read ``arg, arg, ...)``; return {name: checked value}."""
        names = [name for name, _, _ in signature]
        kinds = {name: value_kind for name, value_kind, _ in signature}
        values, positional, keywords = {}, 0, False
        if self.take(")"):
            return values
        while True:
            token = self.token
            if token.kind == "name" and self.tokens[self.index + 1].text == "=":
                name = token.text.lower()
                if name not in names:
                    raise self.error(f"{kind} has no argument {token.text!r}; its arguments: "
                                     + ", ".join(names))
                if name in values:
                    raise self.error(f"{kind} argument {name!r} given twice")
                self.index += 2
                keywords = True
            elif keywords:
                raise self.error("positional argument after a keyword argument")
            elif positional == len(names):
                raise self.error(f"too many arguments for {kind}({', '.join(names)})")
            else:
                name = names[positional]
                positional += 1
            values[name] = self.value(kinds[name], kind, name)
            if self.take(")"):
                return values
            if not self.take(","):
                raise self.expected("',' or ')'")

    def value(self, kind: str, layer: str, name: str):
        if kind == "act":
            token = self.token
            if token.kind != "name" or token.text.lower() not in ACTIVATIONS:
                raise self.expected(f"an activation for {layer} {name} ("
                                    + ", ".join(ACTIVATIONS) + ")")
            self.index += 1
            return token.text.lower()
        return self.number(kind, f"{layer} {name}")

    def number(self, kind: str, what: str):
        """Read a number of ``kind`` ("count", "size" or "prob") for ``what``."""
        token = self.token
        want = {"count": "a positive integer", "size": "an integer >= 0",
                "prob": "a probability in [0, 1)"}[kind]
        if token.kind != "number":
            raise self.expected(f"{want} for {what}")
        is_int = token.text.isdigit()
        value = int(token.text) if is_int else float(token.text)
        if (kind == "count" and (not is_int or value < 1)) or (kind == "size" and not is_int) \
                or (kind == "prob" and not value < 1):
            raise self.error(f"expected {want} for {what}, got {token.text}")
        self.index += 1
        return float(value) if kind == "prob" else value


def parse(text: str) -> Spec:
    """Parse spec ``text``; raise :class:`SpecError` saying where and what was expected."""
    if not isinstance(text, str):
        raise TypeError(f"a spec is text, got {type(text).__name__}")
    return _Parser(text).spec()


# ----------------------------------------------------------------------------
# Printing
# ----------------------------------------------------------------------------

def _format_element(element: Element) -> str:
    signature = _SIGNATURES[element.kind]
    values = dict(element.args)
    parts = []
    for name, _, default in signature:
        value = values[name]
        if element.kind in _POOLS and name == "kernel":
            parts.append(str(value))  # always shown: MAXPOOL(2) reads better than MAXPOOL
        elif default is _REQUIRED:
            parts.append(str(value))
        elif element.kind == "DROPOUT":
            parts.append(repr(value))
        elif not (value == default or (element.kind in _POOLS and name == "stride"
                                       and value == values.get("kernel"))):
            # A pool's stride defaults to its kernel; a conv's stride is 1 by default.
            parts.append(f"{name}={value}")
    text = element.kind + (f"({','.join(parts)})" if parts else "")
    return text + ("?" if element.optional else "")


def _format_items(items) -> str:
    texts = []
    for item in items:
        if isinstance(item, Repeat):
            times = f"*{item.times}" if item.times != 1 else ""
            texts.append(f"[{_format_items(item.body)}]{times}")
        else:
            texts.append(_format_element(item))
    return " -> ".join(texts)


def format_spec(spec) -> str:
    """The canonical text of a spec (a :class:`Spec` or spec text).

    Layer names in capitals, POOL written MAXPOOL, required arguments
    positional, other arguments as ``name=value`` only where they differ
    from the default (an explicit ``act=`` is always kept, since its default
    depends on the position), one space around each ``->``, and ``*1`` left
    out. Parsing the result gives the same :class:`Spec`.
    """
    spec = parse(spec) if isinstance(spec, str) else spec
    return f"{_format_element(spec.input)} -> {_format_items(spec.body)}"


# ----------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------

def _as_spec(spec) -> Spec:
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, str):
        return parse(spec)
    raise TypeError(f"expected a Spec or spec text, got {type(spec).__name__}")


def input_shape(spec) -> tuple[int, int, int]:
    """(C, H, W) that the spec's INPUT declares."""
    head = _as_spec(spec).input
    return head["channels"], head["height"], head["width"]


def build(spec, *, rng=None, dtype=np.float32) -> Sequential:
    """Build the :class:`~tinyconv.nn.layers.Sequential` model a spec describes.

    Each layer's input size (``in_channels``, ``in_features``) follows from
    the shapes flowing from INPUT (eq. 4.2/4.3 for convolution and pooling);
    a layer that does not fit raises :class:`SpecError` pointing at it, and
    so does the layer whose weights would take the model past
    :data:`MAX_PARAMETERS` or whose output would hold more than
    :data:`MAX_VALUES` numbers per image, before any weight is allocated.

    Args:
        spec: a :class:`Spec` or spec text (a preset name: :func:`tinyconv.models.presets.resolve` first).
        rng: a seed or ``numpy.random.Generator``; every initial weight and
            every dropout mask comes from the one Generator made from it, so
            the same seed builds the same model, bit for bit.
        dtype: of the parameters, float32 by default.
    """
    spec = _as_spec(spec)
    generator = as_generator(rng)
    default_act = spec.input["act"]
    if _count(spec.body) > MAX_LAYERS:
        raise SpecError(f"{_count(spec.body)} layers: a model may have at most {MAX_LAYERS} "
                        "layers", spec.text, 0)
    elements = spec.elements()
    fc_positions = [i for i, e in enumerate(elements) if e.kind == "FC"]
    last_fc = fc_positions[-1] if fc_positions else None
    shape = input_shape(spec)  # (C, H, W) maps, or (features,) vectors
    layers = []
    n_params = 0

    def fail(message: str, element: Element):
        raise SpecError(message, spec.text or format_spec(spec),
                        element.offset if spec.text else 0)

    def check_size(element: Element, params: int, out_shape: tuple):
        """Refuse ``element`` if its ``params`` weights or its output are too large."""
        nonlocal n_params
        n_params += params
        if n_params > MAX_PARAMETERS:
            fail(f"{_format_element(element)} has {params:,} parameters, which brings the model to "
                 f"{n_params:,}: a model may have at most {MAX_PARAMETERS:,}", element)
        if int(np.prod(out_shape)) > MAX_VALUES:
            fail(f"{_format_element(element)} outputs {' x '.join(map(str, out_shape))} = "
                 f"{int(np.prod(out_shape)):,} numbers per image: at most {MAX_VALUES:,} "
                 "are allowed", element)

    if int(np.prod(shape)) > MAX_VALUES:
        fail(f"INPUT {' x '.join(map(str, shape))} = {int(np.prod(shape)):,} numbers per "
             f"image: at most {MAX_VALUES:,} are allowed", spec.input)

    def activation(act: str):
        """The activation layer (None for "none") and the init rule for act."""
        layer_cls, init = ACTIVATIONS[act]
        return (layer_cls() if layer_cls else None), init

    for position, element in enumerate(elements):
        kind = element.kind
        if kind in ("CONV", "MAXPOOL", "AVGPOOL", "FLATTEN") and len(shape) != 3:
            fail(f"{kind} needs image maps (C, H, W), but vectors of {shape[0]} features "
                 f"reach it", element)
        if kind in ("CONV", "MAXPOOL", "AVGPOOL"):
            c, h, w = shape
            k, s, p = element["kernel"], element["stride"], element["pad"]
            if not kernel_fits((h, w), (k, k), (p, p)):
                if element.optional:
                    continue
                fail(f"{kind} kernel {k}x{k} does not fit the {h}x{w} map (padding {p}) "
                     f"that reaches it", element)
            out_hw = (conv_output_size(h, k, s, p), conv_output_size(w, k, s, p))
            if kind == "CONV":
                # eq. 4.4: F filters of C x K x K weights, and one bias each.
                check_size(element, element["filters"] * (c * k * k + 1),
                           (element["filters"],) + out_hw)
                act = element["act"] or default_act
                act_layer, init = activation(act)
                layers.append(Conv2d(c, element["filters"], k, s, p, init=init,
                                     rng=generator, dtype=dtype))
                layers.extend([act_layer] if act_layer else [])
                shape = (element["filters"],) + out_hw
            else:
                if not pool_padding_fits((k, k), (p, p)):
                    fail(f"{kind} pad {p} is more than half its kernel {k}", element)
                pool = MaxPool2d if kind == "MAXPOOL" else AvgPool2d
                layers.append(pool(k, s, p))
                shape = (c,) + out_hw
        elif kind == "FLATTEN" or (kind == "FC" and len(shape) == 3):
            layers.append(Flatten())
            shape = (int(np.prod(shape)),)
        if kind == "FC":
            check_size(element, (shape[0] + 1) * element["units"], (element["units"],))
            act = element["act"] or ("none" if position == last_fc else default_act)
            act_layer, init = activation(act)
            layers.append(Linear(shape[0], element["units"], init=init, rng=generator,
                                 dtype=dtype))
            layers.extend([act_layer] if act_layer else [])
            shape = (element["units"],)
        elif kind == "BN":
            check_size(element, 2 * shape[0], shape)  # a scale and a shift per channel
            norm = BatchNorm2d if len(shape) == 3 else BatchNorm1d
            layers.append(norm(shape[0], dtype=dtype))
        elif kind == "DROPOUT":
            layers.append(Dropout(element["p"], rng=generator))
    return Sequential(*layers)
