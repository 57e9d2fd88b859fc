"""The ``segkit`` command line: a thin click layer over one library function per command.

This package holds the ``segkit`` group itself (global ``--version``, ``--debug`` and ``-v``, the
one-line ``error: <what>: <why>`` handling of :class:`~segkit.errors.SegkitError`, and the console-script
entry point :func:`main`); the commands live by stage in :mod:`segkit.cli.data` (synth, anonymize,
keygen, convert, augment, preview, info, export) and :mod:`segkit.cli.model` (train, ablate, evaluate,
predict, demo) and are added here in the order of the data flow.  Heavy modules (pydicom, highdicom,
zarr, TensorFlow) are imported inside the commands, so ``segkit --help`` starts fast and the DICOM
commands never load TensorFlow.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from segkit._version import __version__
from segkit.cli.data import anonymize, augment, convert, export, info, keygen, preview, synth
from segkit.cli.model import ablate, demo, evaluate, predict, train
from segkit.errors import SegkitError
from segkit.logsetup import configure_logging

log = logging.getLogger("segkit")


class SegkitGroup(click.Group):
    """A click group that turns :class:`SegkitError` into ``error: <what>: <why>``.

    Commands are listed in the order of the data flow, not alphabetically.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SegkitError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"error: {exc.what}: {exc.why}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted: stopped by the user; rerun the same command to resume", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - last line of defence, no PHI in the message
            if ctx.params.get("debug"):
                raise
            click.echo(
                f"error: internal: unexpected {type(exc).__name__} (rerun with --debug for the traceback)",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=SegkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="segkit")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-v", "--verbose", count=True, help="More detail on stderr.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int) -> None:
    """segkit: raw MRI DICOM → de-identified, provenance-tracked training set → hybrid
    U-Net/Transformer tumour segmentation.  Runs offline; nothing is downloaded.

    \b
    Data flow:
      anonymize  raw DICOM      -> de-identified DICOM (+ audit, leak check)
      convert    DICOM + RTSTRUCT/SEG -> slices.zarr (masks, provenance, split)
      augment    slices.zarr    -> augmented.zarr (reproducible)
      train      *.zarr         -> run dir (checkpoints, history, best weights)
      evaluate   run + *.zarr   -> metrics, tables, pictures
      predict    run + series   -> DICOM SEG
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    configure_logging(logging.DEBUG if verbose else logging.INFO)


#: ``segkit --help`` lists the commands in this order (the data flow), not alphabetically.
for _command in (synth, anonymize, keygen, convert, augment, preview, train, ablate, evaluate, predict, info, export,
                 demo):
    cli.add_command(_command)
del _command


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="segkit")
