"""Every command has a description and every option says what it does (issue #23, item 13)."""
import argparse
import re
import subprocess
import sys

import pytest

from xnorflow.cli import build_parser

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices.items())


COMMANDS = _subcommands()


@pytest.mark.parametrize("name, parser", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_has_a_description(name, parser):
    assert parser.description and len(parser.description) > 30, name


@pytest.mark.parametrize("name, parser", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_option_says_what_it_does_and_its_default(name, parser):
    missing, no_default = [], []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        opt = action.option_strings[-1]
        text = action.help or ""
        if len(text) < 8:
            missing.append(opt)
            continue
        takes_value = action.nargs != 0 and not isinstance(
            action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                     argparse.BooleanOptionalAction))
        # an option with a value either is required, lists its choices, or names its default
        if takes_value and not action.required and not action.choices:
            if not re.search(r"default|%\(default\)s", text):
                no_default.append(opt)
    assert not missing, f"{name}: options without a help text: {missing}"
    assert not no_default, f"{name}: options whose help does not name the default: {no_default}"


def test_version():
    out = subprocess.run([sys.executable, "-m", "xnorflow.cli", "--version"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert re.fullmatch(r"xnorflow \d+\.\d+\.\d+\S*\n", out), out
