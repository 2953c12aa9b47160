# SPDX-License-Identifier: GPL-2.0-or-later
"""docs/ci: the GitHub Actions workflow and the GitLab CI file have the jobs a
user expects (an audit publishing JUnit and KTAP even when it fails, the matrix
as one job per lab kernel and a merge job after them), and every ``drgn-p2p``
command line in them parses with the real click command line."""

import click
import pytest
from ci_files import GITHUB, GITLAB, argv, drgn_p2p_lines, github_scripts, gitlab_scripts, load

from drgn_p2p.cli import cli
from drgn_p2p.lab.kernels import manifest


def parse(args):
    """*args* parsed by drgn-p2p's click commands (group by group), as ``main`` would before running one."""
    cmd, parent, name = cli, None, "drgn-p2p"
    while True:
        ctx = cmd.make_context(name, list(args), parent=parent)
        if not isinstance(cmd, click.Group):
            return ctx
        # click 8.2+ keeps the subcommand's name in _protected_args (protected_args is deprecated).
        rest = [*vars(ctx).get("_protected_args", ()), *ctx.args]
        name, cmd, args = cmd.resolve_command(ctx, rest)
        parent = ctx


def test_parse_helper_rejects_a_wrong_command_line() -> None:
    with pytest.raises(click.UsageError):
        parse(["lab", "matrix", "--kernle", "newest"])
    with pytest.raises(click.UsageError):
        parse(["lab", "runn"])
    assert parse(["lab", "run", "--kernel", "newest", "--format", "ktap"]).params["kernel_name"] == "newest"


def _lab_kernel_names():
    return set(manifest())


def test_github_workflow() -> None:
    doc = load(GITHUB)
    jobs = doc["jobs"]
    assert set(jobs) == {"audit", "matrix", "matrix-merge"}
    assert set(jobs["matrix"]["strategy"]["matrix"]["kernel"]) <= _lab_kernel_names()
    assert len(jobs["matrix"]["strategy"]["matrix"]["kernel"]) == 3
    assert jobs["matrix-merge"]["needs"] == "matrix"
    uploads = [s for s in jobs["audit"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert len(uploads) == 1 and uploads[0]["if"] == "always()"
    assert set(uploads[0]["with"]["path"].split()) == {"drgn-p2p-audit.xml", "drgn-p2p-audit.ktap"}
    scripts = github_scripts(doc)
    audit = drgn_p2p_lines(scripts["audit"])
    assert [argv(line, {"KERNEL": "newest"})[:2] for line in audit] == [["lab", "run"]] * 2
    assert {parse(argv(line, {"KERNEL": "newest"})).params["vias"] for line in audit} == {("qemu",)}
    assert drgn_p2p_lines(scripts["matrix"]) and drgn_p2p_lines(scripts["matrix-merge"])


def test_gitlab_ci() -> None:
    doc = load(GITLAB)
    jobs = gitlab_scripts(doc)
    assert set(jobs) == {"drgn-p2p-audit", "drgn-p2p-matrix", "drgn-p2p-matrix-merge"}
    audit = doc["drgn-p2p-audit"]
    assert audit["artifacts"]["when"] == "always" and audit["artifacts"]["reports"]["junit"] == "drgn-p2p-audit.xml"
    assert set(audit["artifacts"]["paths"]) == {"drgn-p2p-audit.xml", "drgn-p2p-audit.ktap"}
    kernels = doc["drgn-p2p-matrix"]["parallel"]["matrix"][0]["KERNEL"]
    assert len(kernels) == 3 and set(kernels) <= _lab_kernel_names()
    assert doc["drgn-p2p-matrix-merge"]["needs"] == ["drgn-p2p-matrix"]
    stages = doc["stages"]
    assert stages.index(doc["drgn-p2p-matrix"]["stage"]) < stages.index(doc["drgn-p2p-matrix-merge"]["stage"])


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_every_drgn_p2p_command_parses(path) -> None:
    scripts = github_scripts(load(path)) if path == GITHUB else gitlab_scripts(load(path))
    lines = [line for job in scripts.values() for line in drgn_p2p_lines(job)]
    assert len(lines) == 4  # the audit's two reports, the matrix of one kernel, the merge
    for line in lines:
        args = argv(line, {"KERNEL": "6.12"})
        ctx = parse(args)
        if args[:2] == ["lab", "run"]:  # the audit's options, passed on: parsed by the audit itself
            parse(["audit", *ctx.params["audit_args"]])
        if args[:2] == ["lab", "matrix"] and ctx.params["merge"]:
            assert ctx.params["merge_paths"] == ("matrix-*.json",)
