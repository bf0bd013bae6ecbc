"""``tinyconv explain``: the tutorial's computations written out, on its numbers or yours.

The explanations are :mod:`tinyconv.tutorial.explain`'s; this module reads
the arrays given on the command line (:func:`parse_array`) and picks the topic.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import numpy as np

from ..checks import as_float_array
from ..tutorial.conv_gif import conv_gif
from ..tutorial.explain import (ACTIVATIONS, BACKWARD_FILTER, BACKWARD_INPUT, POOL_INPUT,
                                TUTORIAL_FILTER, TUTORIAL_IMAGE, explain_conv,
                                explain_conv_backward, explain_pool)
from .common import Command


def parse_array(text: str, name: str) -> np.ndarray:
    """An array given on the command line, as float64.

    ``text`` is a number (``0.5``), a nested list (``[[1, 2], [3, 4]]``, read
    with :func:`ast.literal_eval`, which evaluates literals only and never
    runs code) or the path of a ``.npy`` file (read without pickle).

    Raises:
        ValueError: malformed text, a ragged list, a file that is not a
            ``.npy`` array, an empty array, or values that are not finite.
        TypeError: values that are not real numbers.
    """
    text = text.strip()
    if text.startswith("[") or _is_number(text):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ValueError(f"{name}: expected a number or a nested list of numbers such "
                             f"as [[1, 2], [3, 4]], got {text!r}") from None
    else:
        value = _load_npy(text, name)
    try:
        np.asarray(value)
    except ValueError:
        raise ValueError(f"{name}: the rows have different lengths; every row of an array "
                         f"must hold as many numbers as the others, got {text!r}") from None
    array = as_float_array(value, name)
    if array.size == 0:
        raise ValueError(f"{name}: expected at least one number, got an empty array "
                         f"of shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: every value must be finite, got inf or nan")
    return array.astype(np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _load_npy(path: str, name: str) -> np.ndarray:
    """The array in a ``.npy`` file; a clear ValueError if it is not one."""
    if not Path(path).is_file():
        raise ValueError(f"{name}: {path!r} is neither a number, a nested list such as "
                         f"[[1, 2], [3, 4]], nor an existing .npy file")
    with open(path, "rb") as file:
        start = file.read(len(np.lib.format.MAGIC_PREFIX))
    if start[:2] == b"PK":
        raise ValueError(f"{name}: {path} is an .npz archive; expected a .npy file "
                         f"holding one array")
    if start != np.lib.format.MAGIC_PREFIX:
        raise ValueError(f"{name}: {path} is not a .npy file (it does not start "
                         f"with the .npy signature)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise ValueError(f"{name}: {path} is not a readable .npy array file ({error})") from None
    return loaded




ARRAY_HELP = ("a nested list such as '[[1, 2], [3, 4]]' or a .npy file")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the topics of ``tinyconv explain`` (conv, conv-backward, pool) to ``parser``."""
    topics = parser.add_subparsers(dest="topic", metavar="TOPIC", required=True)

    conv = topics.add_parser(
        "conv", help="a conv layer's forward pass, every value written out",
        description="A conv layer's forward pass as the tutorial writes it (eq. 4.1-4.4): "
                    "the output size, every a_{i,j} as products, sum, bias and "
                    "activation, and the feature maps. Without arguments: the tutorial's "
                    "5x5 image and 3x3 filter, bias 0, ReLU.")
    _add_conv_layer_arguments(conv, "the input: (H, W) or (D, H, W); " + ARRAY_HELP +
                              " (default: the tutorial's 5x5 image)",
                              "one filter (KH, KW) or (D, KH, KW), or several "
                              "(N, D, KH, KW); " + ARRAY_HELP +
                              " (default: the tutorial's 3x3 filter)")
    conv.add_argument("--bias", default="0", metavar="B",
                      help="a number for every filter, or one per filter such as '[0, 1]' "
                           "(default: 0)")
    conv.add_argument("--activation", choices=tuple(ACTIVATIONS), default="relu",
                      help="the activation f (default: relu)")
    conv.add_argument("--gif", type=Path, metavar="FILE",
                      help="also draw the computation as an animated GIF, one frame per "
                           "output value (needs Pillow)")
    conv.set_defaults(explain=_run_conv)

    backward = topics.add_parser(
        "conv-backward", help="δ passed back through a conv layer, and its gradients",
        description="The sensitivity map δ passed back through a conv layer as the tutorial "
                    "derives it (eq. 5.1-5.3): expanded by the stride, zero-padded, "
                    "cross-correlated with the filter rotated by 180°, summed over the "
                    "filters and cropped; then the weight and bias gradients. The "
                    "tutorial's own example (3x3 input, 2x2 filter, 2x2 δ) is drawn with "
                    "symbols only; without arguments its shapes are filled with the input "
                    "1..9, the filter [[1, 2], [3, 4]] and δ [[10, 100], [1000, 10000]].")
    source = backward.add_mutually_exclusive_group()
    _add_conv_layer_arguments(backward, "the layer's input a^{l-1}: (H, W) or (D, H, W); " +
                              ARRAY_HELP + " (default: 1..9 as 3x3)",
                              "(KH, KW), (D, KH, KW) or (N, D, KH, KW); " + ARRAY_HELP +
                              " (default: [[1, 2], [3, 4]])", input_group=source)
    backward.add_argument("--delta", metavar="ARRAY",
                          help="δ^l, the sensitivity map of the layer's output: (H2, W2) or "
                               "(N, H2, W2); " + ARRAY_HELP + " (default: the example's, "
                               "or 1, 2, 3, ... in the output's shape)")
    source.add_argument("--net", metavar="ARRAY",
                        help="instead of --input: net^{l-1}, the previous layer's net input; "
                             "the input is then a^{l-1} = f(net^{l-1}) and δ^{l-1} is "
                             "multiplied by f'(net^{l-1}) (eq. 5.2)")
    backward.add_argument("--activation", choices=("relu", "sigmoid", "tanh"),
                          default="relu",
                          help="the previous layer's activation f, with --net "
                               "(default: relu)")
    backward.set_defaults(explain=_run_conv_backward)

    pool = topics.add_parser(
        "pool", help="max and mean pooling, forward and backward",
        description="Max and mean pooling, forward and backward, window by window: where "
                    "each δ goes, and the Kronecker form δ ⊗ (1/n²) of mean pooling. "
                    "The tutorial's 4x4 example is a picture; without arguments this "
                    "uses the 4x4 input [[1,1,2,4],[5,6,7,8],[3,2,1,0],[1,2,3,4]] "
                    "and δ [[4, 8], [12, 16]].")
    pool.add_argument("--input", metavar="ARRAY",
                      help="(H, W) or (D, H, W); " + ARRAY_HELP + " (default: the 4x4 example)")
    pool.add_argument("--size", type=int, default=2, metavar="N",
                      help="the window is N x N (default: 2)")
    pool.add_argument("--stride", type=int, metavar="S",
                      help="(default: the window size, so the windows tile the input)")
    pool.add_argument("--delta", metavar="ARRAY",
                      help="δ^l of the pooled output: (H2, W2) or (D, H2, W2); " + ARRAY_HELP +
                           " (default: the example's, or 1, 2, 3, ...)")
    pool.set_defaults(explain=_run_pool)


def _add_conv_layer_arguments(parser, input_help: str, filter_help: str,
                              input_group=None) -> None:
    (input_group or parser).add_argument("--input", metavar="ARRAY", help=input_help)
    parser.add_argument("--filter", "--filters", dest="filters", metavar="ARRAY",
                        help=filter_help)
    parser.add_argument("--stride", type=int, default=1, metavar="S", help="(default: 1)")
    parser.add_argument("--padding", type=int, default=0, metavar="P",
                        help="rings of zeros around the input (default: 0)")


def run(args: argparse.Namespace) -> int:
    """Run ``tinyconv explain TOPIC``: print the explanation (and write the GIF)."""
    print(args.explain(args), end="")
    return 0


def _given(text, name: str, default):
    return default if text is None else parse_array(text, name)


def _run_conv(args) -> str:
    x = _given(args.input, "--input", TUTORIAL_IMAGE)
    filters = _given(args.filters, "--filter", TUTORIAL_FILTER)
    bias = parse_array(args.bias, "--bias")
    # The explanation first: it checks every argument before the GIF is drawn.
    text = explain_conv(x, filters, bias, args.stride, args.padding, args.activation)
    if args.gif is not None:
        frames = conv_gif(args.gif, x, filters, bias, args.stride, args.padding,
                          args.activation)
        text += f"\nWrote {args.gif} ({frames} frames)\n"
    return text


def _run_conv_backward(args) -> str:
    filters = _given(args.filters, "--filter", BACKWARD_FILTER)
    delta = _given(args.delta, "--delta", None)
    if args.net is None:
        x = _given(args.input, "--input", BACKWARD_INPUT)
        return explain_conv_backward(x, filters, delta, args.stride, args.padding)
    net = parse_array(args.net, "--net")
    f, _ = ACTIVATIONS[args.activation]
    return explain_conv_backward(f(net), filters, delta, args.stride, args.padding,
                                 net_prev=net, activation=args.activation)


def _run_pool(args) -> str:
    x = _given(args.input, "--input", POOL_INPUT)
    delta = _given(args.delta, "--delta", None)
    return explain_pool(x, args.size, args.stride, delta)


COMMAND = Command("explain", "the tutorial's computations written out, on its numbers or yours",
                  "Show a computation of the tutorial step by step: every number as the "
                  "tutorial writes it, computed by the reference module.",
                  add_arguments, run)
