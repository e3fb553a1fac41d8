"""The rule language of settings schemas, and checking a config against a schema.

A schema (config_schema.py assembles the train config's) mirrors the config: a dict per group, nested dicts for
sub-groups, `Variants` for groups whose keys depend on an option (deformation.name), and a
`Rule` per setting. Values are read with their interpolations resolved, one key at a time,
so a broken interpolation is one problem line instead of a traceback that hides the others.

Values arrive as OmegaConf parsed them from YAML or the command line: `iterations=abc` is
the str 'abc', `1e4` a float, `10000` an int, `true` a bool. The rules check Python types
strictly (a bool is not a number, a float is not an integer), because the code that reads
a setting does: torch wants int sizes, and `if settings.pad:` takes 'no' as true.
"""

import re

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import first_line


class Rule:
    """What one setting accepts. `describe` completes "must be ..." in a problem line.

    A rule overrides `accepts`, or `reason` when it can say more precisely what is wrong.
    """

    describe: str

    def accepts(self, value) -> bool:
        return self.reason(value) is None

    def reason(self, value) -> str | None:
        """Why `value` is invalid (one line), or None when it is valid."""
        return None if self.accepts(value) else f"must be {self.describe}"


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _range(min=None, max=None, above=None, below=None) -> str:
    """The range part of a description: ' >= 1', ' in (0, 180)', ' in [0, 1)', or ''."""
    low = (f"[{min}", f">= {min}") if min is not None else (f"({above}", f"> {above}") if above is not None else None
    high = (f"{max}]", f"<= {max}") if max is not None else (f"{below})", f"< {below}") if below is not None else None
    if low and high:
        return f" in {low[0]}, {high[0]}"
    return f" {(low or high)[1]}" if low or high else ""


class Number(Rule):
    """An int or a float (not a bool) within inclusive `min`/`max` or exclusive `above`/`below` bounds."""

    def __init__(self, min=None, max=None, *, above=None, below=None):
        self.min, self.max, self.above, self.below = min, max, above, below
        self.describe = "a number" + _range(min, max, above, below)

    def accepts(self, value) -> bool:
        return (
            _is_number(value)
            and (self.min is None or value >= self.min)
            and (self.max is None or value <= self.max)
            and (self.above is None or value > self.above)
            and (self.below is None or value < self.below)
        )


class Integer(Rule):
    """An int (not a bool, and not a float such as 1e4: the code uses it as a size or a count)."""

    def __init__(self, min=None, max=None, *, odd=False):
        self.min, self.max, self.odd = min, max, odd
        self.describe = f"{'an odd' if odd else 'an'} integer" + _range(min, max)

    def accepts(self, value) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (self.min is None or value >= self.min)
            and (self.max is None or value <= self.max)
            and (not self.odd or value % 2 == 1)
        )

    def reason(self, value) -> str | None:
        if isinstance(value, float) and value.is_integer() and self.accepts(int(value)):
            return f"must be {self.describe} (write {int(value)}, not {value!r})"
        return super().reason(value)


class Boolean(Rule):
    """A real bool: YAML's true/false, not 'yes' or 1."""

    describe = "true or false"

    def accepts(self, value) -> bool:
        return isinstance(value, bool)


def _show(choice) -> str:
    """A choice as it is written in YAML or on the command line."""
    if isinstance(choice, bool):
        return "true" if choice else "false"
    return "null" if choice is None else str(choice)


class Choice(Rule):
    """One of a fixed set of values; matched on type too, so True is not 1 and 'true' is not True."""

    def __init__(self, *choices):
        self.choices = choices
        self.describe = "one of " + ", ".join(_show(choice) for choice in choices)

    def accepts(self, value) -> bool:
        return any(type(value) is type(choice) and value == choice for choice in self.choices)


class Pattern(Rule):
    """A str matching `regex` whole, for open-ended sets such as cuda:0, cuda:1, ..."""

    def __init__(self, regex: str, describe: str):
        self.regex, self.describe = re.compile(regex), describe

    def accepts(self, value) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None


class Text(Rule):
    """A non-empty str: a path, a hub id, a URL. Whether it exists is the input checks' business."""

    def __init__(self, describe: str = "a non-empty string"):
        self.describe = describe

    def accepts(self, value) -> bool:
        return isinstance(value, str) and value != ""


class AnyOf(Rule):
    """What any of `rules` accepts."""

    def __init__(self, *rules: Rule):
        self.rules = rules
        self.describe = " or ".join(rule.describe for rule in rules)

    def accepts(self, value) -> bool:
        return any(rule.accepts(value) for rule in self.rules)


class Nullable(Rule):
    """null, or what `rule` accepts; `rule` may also be a group (a schema dict), null when unused (synthetic)."""

    def __init__(self, rule):
        self.rule = rule
        self.describe = "null or " + (rule.describe if isinstance(rule, Rule) else "a group of settings")

    def accepts(self, value) -> bool:
        return value is None or self.rule.accepts(value)


class ListOf(Rule):
    """A list whose items each pass `item`; optionally of a fixed `length`, non-empty, or of distinct items."""

    def __init__(self, item: Rule, *, length: int | None = None, nonempty=False, distinct=False):
        self.item, self.length, self.nonempty, self.distinct = item, length, nonempty, distinct
        kind, count = ("a non-empty list" if nonempty else "a list"), (f" {length}" if length is not None else "")
        self.describe = f"{kind} of{count} {'distinct ' if distinct else ''}items, each {item.describe}"

    def reason(self, value) -> str | None:
        if not isinstance(value, list) or (self.nonempty and not value) or self.length not in (None, len(value)):
            return f"must be {self.describe}"
        for item in value:
            problem = self.item.reason(item)
            if problem:
                return f"item {item!r} {problem}"
        repeated = [item for index, item in enumerate(value) if item in value[:index]]
        if self.distinct and repeated:
            return f"lists {repeated[0]!r} more than once"
        return None


class Pair(ListOf):
    """[a, b], each passing `item`; `ordered`: a range, a <= b."""

    def __init__(self, item: Rule, *, ordered=False):
        super().__init__(item, length=2)
        self.ordered = ordered
        shape = "a pair [low, high] with low <= high" if ordered else "a pair [a, b]"
        self.describe = f"{shape}, each {item.describe}"

    def reason(self, value) -> str | None:
        problem = super().reason(value)
        if problem is None and self.ordered and value[0] > value[1]:
            return f"must be {self.describe}"
        return problem


class SizeSchedule(Rule):
    """DreamGaussian's growing novel views: [[from_ratio, size], ...], ratios rising from 0 within [0, 1].

    The first entry must start at 0: no size would cover the first steps otherwise
    (schedules.render_size fails there, mid-run).
    """

    describe = "a list of [from_ratio, size] pairs, ratios in [0, 1] rising from 0, sizes integers >= 8"
    ratio, size = Number(0, 1), Integer(min=8)

    def reason(self, value) -> str | None:
        if not isinstance(value, list) or not value or not all(isinstance(p, list) and len(p) == 2 for p in value):
            return f"must be {self.describe}"
        for ratio, size in value:
            if not self.ratio.accepts(ratio):
                return f"ratio {ratio!r} must be {self.ratio.describe}"
            if not self.size.accepts(size):
                return f"size {size!r} must be {self.size.describe}"
        ratios = [ratio for ratio, _ in value]
        if ratios[0] != 0:
            return f"must start at ratio 0, not {ratios[0]!r} (no size would cover the first steps)"
        if any(later <= earlier for earlier, later in zip(ratios, ratios[1:])):
            return f"ratios must increase, got {ratios}"
        return None


class Variants:
    """A group whose keys depend on its option, e.g. deformation.name: hexplane and sparse_control take others."""

    def __init__(self, selector: str, **options: dict):
        self.selector, self.choice = selector, Choice(*options)
        self.schemas = {option: {selector: self.choice, **keys} for option, keys in options.items()}


def check_settings(cfg: DictConfig, schema: dict) -> list[str]:
    """One line per problem of `cfg` against `schema` (empty when all is well); a `hydra` key is Hydra's own."""
    return _group(cfg, schema, "", ignore=("hydra",))


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _group(node, schema: dict, path: str, variants: Variants | None = None, ignore=()) -> list[str]:
    """Problems of the group `node`: each schema key's, a missing key's, and every key the schema lacks."""
    if not isinstance(node, DictConfig):
        return [_not_a_group(path, node, schema)]
    keys = list(node.keys())
    problems = []
    for key, rule in schema.items():
        full = _join(path, key)
        if key not in keys:
            problems.append(_missing(full, rule))
        else:
            problems += _entry(node, key, rule, full)
    for key in keys:
        if key not in schema and key not in ignore:
            problems.append(f"  {_join(path, key)}: {_unknown(key, schema, path, node, variants)}")
    return problems


def _unknown(key, schema: dict, path: str, node: DictConfig, variants: Variants | None) -> str:
    takes = f"(takes: {', '.join(sorted(schema))})"
    if variants is None:
        return f"unknown key {takes}"
    option, group = node[variants.selector], path.replace(".", "/")  # a nested group is chosen as dynamic/deformation=
    others = [f"{group}={other}" for other, keys in variants.schemas.items() if key in keys]
    elsewhere = f", it belongs to {' or '.join(others)}" if others else ""
    return f"unknown key for {group}={option}{elsewhere} {takes}"


def _entry(node: DictConfig, key, rule, path: str) -> list[str]:
    """Problems of `node[key]`, read with interpolations resolved, against `rule` (a Rule, group or Variants)."""
    try:
        value = node[key]
        if isinstance(value, ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
    except OmegaConfBaseException as error:  # a broken interpolation, a ??? value
        return [f"  {path}={_raw(node, key)}: cannot be resolved ({first_line(error)})"]
    if isinstance(rule, Nullable) and not isinstance(rule.rule, Rule):  # an optional group: synthetic
        if value is None:
            return []
        rule = rule.rule
    if isinstance(rule, dict | Variants):
        problems = _group(value, rule, path) if isinstance(rule, dict) else _variants(value, rule, path)
        if OmegaConf.is_interpolation(node, key):  # dynamic.sds is ${static.sds}: one mistake shows under both
            problems = [f"{line} (via {path}={_raw(node, key)})" for line in problems]
        return problems
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=False)
    problem = rule.reason(value)
    if problem is None:
        return []
    source = f" (from {_raw(node, key)})" if OmegaConf.is_interpolation(node, key) else ""
    return [f"  {path}={value!r}{source}: {problem}"]


def _variants(node, variants: Variants, path: str) -> list[str]:
    """The selector first: the group's other keys are checked against the option it names."""
    if not isinstance(node, DictConfig):
        return [_not_a_group(path, node)]
    selector = _join(path, variants.selector)
    if variants.selector not in node.keys():
        return [_missing(selector, variants.choice)]
    problems = _entry(node, variants.selector, variants.choice, selector)
    return problems or _group(node, variants.schemas[node[variants.selector]], path, variants)


def _not_a_group(path: str, value, keys=()) -> str:
    takes = f" (takes: {', '.join(sorted(keys))})" if keys else ""
    return f"  {path}={value!r}: must be a group of settings{takes}"


def _missing(path: str, rule) -> str:
    return f"  {path}: missing" + (f", must be {rule.describe}" if isinstance(rule, Rule) else "")


def _raw(node: DictConfig, key) -> str:
    """The value as written, interpolations unresolved: '${static.prior}'."""
    return str(OmegaConf.to_container(node, resolve=False)[key])


# The words the schemas share (each component's schema is written where the component is defined).
PATH = Text("a path")
MODEL = Text("a hub id or a local directory")
COUNT = Integer(min=1)
SIZE = Integer(min=8)  # pixels on a side of a render
WEIGHT = Number(min=0)  # a loss weight: 0 switches the term off
LR = Number(min=0)  # a learning rate: 0 freezes the parameter
ANGLE = Number(above=-90, below=90)  # an elevation in degrees: +-90 looks straight down and degenerates
FPS = Number(above=0)
