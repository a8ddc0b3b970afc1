"""The CLI's start-up stays light: ``--help`` and a bad argument of any command import no torch.

The commands live at module level in ``convscope.commands.*``; those modules import torch and
the library only inside the command bodies, so parsing (and rejecting) arguments is fast.
"""

import subprocess
import sys

from helpers import run_cli

# One process runs `convscope ARGS` for every case and reports, per case, the exit code and
# whether torch got imported (it never is: a case that imported it would leave it imported).
PROBE = """
import json, sys
from convscope.cli import COMMANDS, feature_commands, main

cases = [["--help"], ["attack", "x", "--eps", "abc"], ["train", "digits", "--eps", "eight"]]
for name, (module, _) in COMMANDS.items():
    command = feature_commands(module)[name]
    subs = list(getattr(command, "commands", {})) or [None]
    cases += [[name, sub, "--no-such-option"] if sub else [name, "--no-such-option"] for sub in subs]
found = []
for args in cases:
    sys.argv = ["convscope", *args]
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code
    found.append((args, code, "torch" in sys.modules))
print("RESULT " + json.dumps(found))
"""


def test_help_and_argument_errors_import_no_torch():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    import json

    line = [text for text in result.stdout.splitlines() if text.startswith("RESULT ")]
    assert line, result.stdout[-500:] + result.stderr[-1000:]
    found = json.loads(line[0][len("RESULT ") :])
    assert len(found) > 30  # every command (and the segment subcommands) was tried
    assert [args for args, _, torch in found if torch] == []
    assert [args for args, code, _ in found if code != (0 if args == ["--help"] else 2)] == []
    assert "No such option" in result.stderr and "8/255" in result.stderr and "Traceback" not in result.stderr


def test_a_command_is_a_module_level_function(capsys):
    from convscope.commands.basics import models_command

    models_command()
    assert "efficientnet_lite0" in capsys.readouterr().out


def test_a_commands_help_lists_its_familys_names(monkeypatch, capsys):
    # the names are read from the registry when the help is shown (NamesHelp), not at import
    code, out, _ = run_cli(monkeypatch, capsys, "attack", "--help")
    assert code == 0 and "pgd_l2" in out and "{attacks}" not in out
    code, out, _ = run_cli(monkeypatch, capsys, "defenses", "--help")
    assert code == 0 and "bit_depth" in out and "{defenses}" not in out
