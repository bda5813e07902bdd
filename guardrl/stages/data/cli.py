"""``guardrl data ...``: build and inspect guardrl Parquet data (converters live in ``data_prep/``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _data_prep():
    """Import ``data_prep`` (installed with guardrl; from a checkout it sits beside ``guardrl/``)."""
    import importlib
    import sys

    try:
        return importlib.import_module("data_prep")
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parents[3]
        if not (root / "data_prep" / "__init__.py").is_file():
            raise
        sys.path.insert(0, str(root))
        return importlib.import_module("data_prep")


app = typer.Typer(add_completion=False, no_args_is_help=True, help="Convert public data sets to guardrl Parquet; inspect outputs.")


@app.command("list")
def list_converters() -> None:
    """List the converters."""
    for name, (_, desc) in sorted(_data_prep().CONVERTERS.items()):
        typer.echo(f"{name:28s} {desc}")


@app.command("convert")
def convert(
    name: str = typer.Argument(..., help="converter name (see `guardrl data list`)"),
    src: Path = typer.Option(..., "--src", help="local copy of the data set (file or folder)"),
    out: Path = typer.Option(..., "--out", help="output folder (replaced atomically)"),
    on_bad: str = typer.Option("error", "--on-bad", help="error | skip (skips are counted in the manifest)"),
    limit: int | None = typer.Option(None, "--limit", help="convert only the first N source rows"),
    images: Path | None = typer.Option(None, "--images", help="image folder (the rewriter's sources: vlguard_train, "
                                       "vlsbench, spa_vl_train)"),
) -> None:
    """Run one converter: the same as ``python -m data_prep.NAME --src SRC --out OUT``."""
    try:
        mod = _data_prep().get_converter(name)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0])) from exc
    extra = {"images": images} if images is not None else {}
    path = mod.convert(src, out, on_bad=on_bad, limit=limit, **extra)
    typer.echo(f"wrote {path}")


@app.command("guard-mini")
def guard_mini(
    out: Path = typer.Option(Path("outputs/data/guard-mini"), "--out", help="output split dir (train/, dev/)"),
    src: Path | None = typer.Option(None, "--src", help="guard-mini folder (default: the bundled data/guard-mini)"),
    on_bad: str = typer.Option("error", "--on-bad"),
) -> None:
    """Build the bundled corpus (train/dev, text + typographic image + text-image, synthetic targets)."""
    _data_prep()
    from data_prep import guard_mini as gm

    path = gm.convert(src or gm.DEFAULT_SRC, out, on_bad=on_bad)
    typer.echo(f"wrote {path}")


@app.command("inspect")
def inspect(
    path: Path = typer.Argument(..., help="a shard dir or split dir"),
    no_hashes: bool = typer.Option(False, "--no-hashes", help="skip sha256 checks"),
) -> None:
    """Verify an output against its manifest and print its counts."""
    from guardrl.core.shards import read_manifest, split_names, verify

    dirs = [path / s for s in split_names(path)] or [path]
    for d in dirs:
        m = verify(d, check_hashes=not no_hashes)
        typer.echo(f"{d}: {m['num_rows']} rows in {len(m['shards'])} shard(s), skipped {m['skipped']['total']}, "
                   f"stage {m['stage']}, code {m['code_version']}")
        typer.echo(json.dumps({"counts": m["counts"], "skipped": m["skipped"]["by_reason"]}, indent=1))
    if len(dirs) > 1:
        read_manifest(path)
