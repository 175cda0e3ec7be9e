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


def test_pumprecord_record_says_in_its_usage_that_a_client_id_is_required(capsys):
    with pytest.raises(SystemExit) as exit_:
        recorder.main(["record", "--log", "fleet.rplog"])
    assert exit_.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert " --client-id CLIENT_ID " in err and "[--client-id" not in err  # usage: not optional
    assert err.strip().endswith("error: the following arguments are required: --client-id")


@pytest.mark.parametrize("main", [monitor.main, pumpctl.main, replay.main])
def test_a_password_file_without_a_user_is_refused_not_ignored(main, tmp_path, capsys):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    keys = tmp_path / "keys"
    keys.write_text("jia/relay1 1 " + "ab" * 32 + "\n")
    keys.chmod(0o600)
    args = {
        monitor.main: ["--duration", "1"],
        pumpctl.main: ["--keys", str(keys), "--state-dir", str(tmp_path), "jia/relay1", "reset"],
        replay.main: [str(tmp_path / "none.rplog")],
    }[main]
    if main is replay.main:  # a log to play: the refusal must not be the missing file's
        from host_tools.uplink.logfile import LogWriter

        LogWriter(args[0]).close()
    code = main(["--port", "1", "--password-file", str(secret), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--password-file {secret} needs --user" in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_option_has_help_and_its_default(tool):
    problems = [f"{name}: {m}" for name, p in parsers(TOOLS[tool](), tool) for m in undocumented(p)]
    assert problems == []
