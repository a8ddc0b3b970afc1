"""The CLI's commands, one module per feature.

Each module defines its commands at module level on its own ``app = typer.Typer()`` (so a
command can be imported and tested alone) and imports torch and the library only inside the
command bodies: ``convscope.cli`` lists them from its lazy table and loads a module when one
of its commands runs. :mod:`.common` and :mod:`.data_options` hold the shared options.
"""
