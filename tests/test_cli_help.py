"""`hil --help` and every command's `--help` print (a newcomer's first commands)."""

import pytest

from tools.cli import build_parser, main


def commands() -> list[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]  # noqa: SLF001 - argparse's
    return sorted(sub.choices)


@pytest.mark.parametrize("argv", [[]] + [[command] for command in commands()])
def test_help_prints_for_hil_and_every_command(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    assert "usage: hil" in capsys.readouterr().out
