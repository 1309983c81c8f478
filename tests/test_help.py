"""--help documents the exit statuses the commands use."""
from click.testing import CliRunner

from cli import main


def help_text(command):
    r = CliRunner().invoke(main, [command, "--help"])
    assert r.exit_code == 0
    return " ".join(r.output.split())


def test_exit_statuses_are_listed():
    assert "130 interrupted (Ctrl-C" in help_text("preprocess")
    train = help_text("train")
    assert "2 usage error" in train and "3 disk full" in train and "--resume" in train
