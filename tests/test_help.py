"""`kdlab --help`, bare `kdlab` and every command's `--help` print their help (argparse %-formats help strings:
a bare % in one of them crashed the top-level help)."""
import subprocess
import sys

import pytest

from kdlab import cli


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out
    assert "95%" in out   # the study line, printed (not a format error)


def test_bare_kdlab_prints_the_help(capsys):
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([name, "--help"])
    assert e.value.code == 0
    assert f"kdlab {name}" in capsys.readouterr().out


def test_python_m_kdlab_help_in_a_process():
    r = subprocess.run([sys.executable, "-m", "kdlab", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "study" in r.stdout
