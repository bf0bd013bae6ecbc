"""The presets: named models, each with the recipe that trains it and the
result that recipe promises.

One entry holds all three, so a preset cannot have an architecture without
a recipe. ``tinyconv train --arch NAME`` and :func:`tinyconv.train` start
from :attr:`Preset.recipe`; each option given overrides one setting. A spec
given as text (no preset) trains with :data:`CUSTOM_RECIPE`. The promises
are measured, and benchmarks/RESULTS.md records the runs.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

from .spec import Element, format_spec, parse

__all__ = ["Recipe", "Preset", "PRESETS", "CUSTOM_RECIPE", "resolve", "preset_name",
           "fit_to_data"]


@dataclass(frozen=True)
class Recipe:
    """The training settings recommended for a model.

    ``schedule`` is "none", "step" (lr / 10 after each third of the epochs)
    or "cosine" (annealed to 0); ``val_fraction`` of the training images is
    held out for validation; ``augment`` draws random flips and shifts of up
    to ``max_shift`` pixels (0: flips only).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    epochs: int = 5
    weight_decay: float = 0.0
    schedule: str = "none"
    augment: bool = False
    max_shift: int = 2
    val_fraction: float = 0.1

    def overridden(self, **settings) -> dict:
        """The recipe as a dict, with every setting given (not None) in its place."""
        recipe = asdict(self)
        unknown = set(settings) - set(recipe)
        if unknown:
            raise TypeError(f"unknown training settings {sorted(unknown)}; "
                            f"a recipe has {sorted(recipe)}")
        recipe.update({name: value for name, value in settings.items() if value is not None})
        return recipe


@dataclass(frozen=True)
class Preset:
    """A named model: its spec, its recipe, and what that recipe reaches."""

    name: str
    spec: str
    recipe: Recipe
    promise: str


#: The recipe of a spec given as text.
CUSTOM_RECIPE = Recipe()

#: The presets, for 1x28x28 images and 10 classes (MNIST, Fashion-MNIST).
PRESETS = {preset.name: preset for preset in (
    # Figure 1 of the tutorial: CONV(3 filters) -> POOL -> CONV(5 filters) -> POOL -> FC -> FC.
    Preset("tutorial",
           "INPUT(1,28,28) -> CONV(3,5,pad=2) -> MAXPOOL(2) -> CONV(5,5,pad=2) -> "
           "MAXPOOL(2) -> FC(32) -> FC(10)",
           Recipe(optimizer="adam", lr=3e-3, epochs=5),
           "trains in under a minute and reports its accuracy (about 87%)"),
    # LeNet-5's shape with ReLU and max pooling: 61,706 parameters.
    Preset("lenet5",
           "INPUT(1,28,28) -> CONV(6,5,pad=2) -> MAXPOOL(2) -> CONV(16,5) -> MAXPOOL(2) -> "
           "FC(120) -> FC(84) -> FC(10)",
           Recipe(optimizer="adam", lr=2e-3, epochs=5, schedule="cosine"),
           "at least 89% test accuracy after 5 epochs"),
    Preset("default",
           "INPUT(1,28,28) -> [CONV(16,3,pad=1) -> BN -> MAXPOOL(2)] -> "
           "[CONV(32,3,pad=1) -> BN -> MAXPOOL(2)] -> FC(128) -> FC(10)",
           Recipe(optimizer="adam", lr=1e-3, epochs=5, schedule="cosine"),
           "at least 91% test accuracy within 5 minutes"),
    # Flips and shifts of one pixel, for the many epochs that every core
    # (--workers) fits in 20 minutes; it learns from every image.
    Preset("strong",
           "INPUT(1,28,28) -> [CONV(32,3,pad=1) -> BN -> MAXPOOL(2)] -> "
           "[CONV(64,3,pad=1) -> BN -> MAXPOOL(2)] -> FC(256) -> DROPOUT(0.5) -> FC(10)",
           Recipe(optimizer="adam", lr=1e-3, epochs=45, schedule="cosine", augment=True,
                  max_shift=1, val_fraction=0.0),
           "at least 93.5% test accuracy within 20 minutes on 2 cores with 2 workers"),
)}


def preset_name(arch: str) -> str | None:
    """The preset that ``arch`` names (in any case), or None for spec text."""
    name = arch.strip().lower() if isinstance(arch, str) else None
    return name if name in PRESETS else None


def resolve(arch: str) -> str:
    """The canonical spec text for a preset name or for spec text.

    Preset names are matched in any case. Anything else must parse as a
    spec (:class:`~tinyconv.models.spec.SpecError` otherwise); a bare word
    that is no preset says which presets exist.
    """
    if not isinstance(arch, str):
        raise TypeError(f"arch must be a preset name or spec text, got {type(arch).__name__}")
    name = preset_name(arch)
    if name is not None:
        return format_spec(PRESETS[name].spec)
    if re.fullmatch(r"[a-z0-9_-]+", arch.strip().lower()) and arch.strip().lower() != "input":
        raise ValueError(f"unknown preset {arch.strip()!r}; presets: {', '.join(PRESETS)} "
                         f"(or a spec such as {PRESETS['tutorial'].spec!r})")
    return format_spec(arch)


def fit_to_data(spec: str, *, channels: int | None = None, size: tuple[int, int] | None = None,
                classes: int | None = None) -> str:
    """A preset's spec fitted to the data, as torchvision's ``num_classes`` does.

    ``channels`` and ``size`` (H, W) replace INPUT's; ``classes`` becomes the
    number of units of the last layer, a fully connected one in every preset.
    What is None stays as it is.
    """
    parsed = parse(spec)
    head = dict(parsed.input.args)
    if channels is not None:
        head["channels"] = channels
    if size is not None:
        head["height"], head["width"] = size
    body = list(parsed.body)
    if classes is not None:
        last = body[-1]
        if not (isinstance(last, Element) and last.kind == "FC"):
            raise ValueError(f"cannot fit {spec!r} to {classes} classes: it does not end "
                             f"with a fully connected layer")
        body[-1] = replace(last, args=tuple((name, classes if name == "units" else value)
                                            for name, value in last.args))
    return format_spec(replace(parsed, input=replace(parsed.input, args=tuple(head.items())),
                               body=tuple(body)))
