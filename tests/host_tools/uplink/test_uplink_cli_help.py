"""Every option of the uplink host tools has a help text, and an optional one says its default
(what an operator sees in --help; the tools' rule, broker.py)."""

import argparse

import pytest

from host_tools.uplink import monitor, pumpctl, pumplog, recorder, replay


def parsers(p: argparse.ArgumentParser, name: str):
    yield name, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


def undocumented(p: argparse.ArgumentParser) -> list[str]:
    missing = []
    for action in p._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = "/".join(action.option_strings) or action.dest
        if not action.help:
            missing.append(f"{name}: no help")
        elif (
            action.option_strings
            and not action.required
            and not isinstance(action, argparse._StoreTrueAction)
            and "default" not in action.help
        ):
            missing.append(f"{name}: no default in {action.help!r}")
    return missing


TOOLS = {
    "pumpctl": pumpctl.parser,
    "pumplog": pumplog.parser,
    "pumpreplay": replay.parser,
    "pumprecord": recorder.parser,
    "pumpmon": monitor.parser,
}


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_option_has_help_and_its_default(tool):
    problems = [f"{name}: {m}" for name, p in parsers(TOOLS[tool](), tool) for m in undocumented(p)]
    assert problems == []
