"""Recipes: YAML files read safely, with ``a.b.c=value`` overrides from the command line.

Every stage reads its recipe through :func:`load_recipe`; a stage then checks
the fields it needs with :func:`require`. YAML is parsed by OmegaConf's safe
loader (no Python object construction).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the field."""


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a YAML recipe and apply dotted overrides (``optim.lr=1e-5``).

    Raises:
        RecipeError: missing file, invalid YAML, or a malformed override.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:  # yaml / omegaconf parse errors
        raise RecipeError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(cfg, DictConfig):
        raise RecipeError(f"{path}: a recipe must be a mapping at the top level")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise RecipeError(f"override(s) {bad} are not of the form key.path=value")
    if overrides:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        except Exception as exc:
            raise RecipeError(f"{path}: bad override {list(overrides)}: {exc}") from exc
    OmegaConf.set_struct(cfg, False)
    cfg["_recipe_path"] = str(path)
    return cfg


def require(cfg: DictConfig, *keys: str) -> None:
    """Raise a :class:`RecipeError` naming the recipe file for any missing dotted key."""
    missing = [k for k in keys if OmegaConf.select(cfg, k, default=None) is None]
    if missing:
        raise RecipeError(f"{cfg.get('_recipe_path', '<recipe>')}: missing field(s) {missing}")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """Plain dict (interpolations resolved) for manifests and wandb."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


RECIPE_SUFFIXES = (".yaml", ".yml")


def split_args(args: Sequence[str] | None, recipe_option: str | Path | None = None, *,
               positionals: Sequence[str] = (), recipe_required: bool = True
               ) -> tuple[Path | None, list[str], list[str]]:
    """The one command grammar of every stage: ``guardrl <stage> run|config [RECIPE] [ARG ...] [k=v ...]``.

    ``args`` are the command's free arguments; ``key.path=value`` ones are overrides. With no other
    ``positionals`` the first remaining argument is the recipe; a stage that also takes positionals
    (``eval run [MODEL]``, ``export run [CHECKPOINT [OUT]]``) finds its recipe as the first argument
    ending in ``.yaml``/``.yml``. ``recipe_option`` is the old ``--recipe`` spelling, kept as an alias.

    Returns:
        ``(recipe or None, positionals, overrides)``.

    Raises:
        RecipeError: a recipe given twice, too many arguments, no recipe where one is required, or
            overrides without a recipe.
    """
    args = list(args or [])
    overrides = [a for a in args if "=" in a]
    rest = [a for a in args if "=" not in a]
    if positionals:
        found = [a for a in rest if a.endswith(RECIPE_SUFFIXES)][:1]
        rest = [a for a in rest if a not in found]
    else:
        found, rest = rest[:1], rest[1:]
    if found and recipe_option is not None:
        raise RecipeError(f"recipe given twice: {found[0]} and --recipe {recipe_option}")
    recipe = Path(found[0]) if found else (Path(recipe_option) if recipe_option is not None else None)
    if len(rest) > len(positionals):
        usage = " ".join(["[RECIPE]", *(f"[{p}]" for p in positionals), "[key=value ...]"])
        raise RecipeError(f"unexpected argument(s) {rest[len(positionals):]} (usage: {usage})")
    if recipe is None and (recipe_required or overrides):
        raise RecipeError(f"overrides {overrides} need a RECIPE" if overrides and not recipe_required
                          else "missing RECIPE (a YAML file, e.g. recipes/tiny/<stage>.yaml)")
    return recipe, rest, overrides


def stage_section(recipe: str | Path, overrides: Sequence[str], section: str) -> dict[str, Any]:
    """The ``section:`` mapping of a recipe after overrides, as a plain dict.

    Raises:
        RecipeError: the recipe cannot be read or has no such mapping.
    """
    cfg = to_container(load_recipe(recipe, overrides))
    if not isinstance(cfg.get(section), dict):
        raise RecipeError(f"{recipe}: missing the `{section}:` section")
    return cfg[section]


def config_yaml(obj: Any) -> str:
    """A resolved stage config (dataclass, mapping, DictConfig) as YAML, for ``guardrl <stage> config``."""
    import dataclasses
    import json

    def to_plain(o: Any) -> Any:  # nested dataclasses, Paths, enums -> YAML-able values
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        return str(o)

    if isinstance(obj, DictConfig):
        obj = to_container(obj)
    plain = json.loads(json.dumps(obj, default=to_plain))
    return OmegaConf.to_yaml(OmegaConf.create(plain))
