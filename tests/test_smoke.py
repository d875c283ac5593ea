

from pimcast.cli import main


def test_cli_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "verilog" in out and "verify-fp" in out


def test_cli_unknown_command(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
